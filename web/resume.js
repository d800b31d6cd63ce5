// Picking an intake up again after the socket dropped: what the page keeps to resume with,
// when it tries again, and how the server's `history` meets what is already on screen.

// Quick first tries for a Wi-Fi blip, then every 5 s.
const DELAYS_MS = [500, 1000, 2000, 4000, 5000];
// The server keeps an intake resumable for RESUME_GRACE_SECONDS (120 by default); a resume
// after that is refused anyway, so the page stops trying and offers a new intake.
const GIVE_UP_MS = 120_000;

// No close frame (the network went), 1001 or 1012 (the server is restarting) and 1013 (a server
// shutting down or at its limit refused the new socket): the intake is still there to pick up.
// Every other close, including 4409 (taken over elsewhere), is final.
export function resumable(code) {
  return code === 1006 || code === 1001 || code === 1012 || code === 1013;
}

// The newest session_id and resume_token: every `ready` carries them, and a resume rotates the token.
export class ResumeTicket {
  constructor() {
    this.sessionId = null;
    this.token = null;
  }

  get held() {
    return this.token !== null;
  }

  remember({ session_id: sessionId, resume_token: token }) {
    if (!sessionId || !token) return;
    this.sessionId = sessionId;
    this.token = token;
  }

  forget() {
    this.sessionId = null;
    this.token = null;
  }

  message() {
    return { type: 'resume', session_id: this.sessionId, resume_token: this.token };
  }
}

// One drop, from the first try to reconnect until the intake is picked up again or given up.
// Tries come with backoff; `awaiting` is true while a socket has sent `resume` and waits for the
// answer, and what else that socket says is kept only as far as the page may need it.
export class Resumption {
  constructor({ attempt, giveUp }) {
    this.backoff = new Backoff();
    this.attempt = attempt;
    this.giveUp = giveUp;
    this.timer = null;
    this.awaiting = false;
    // The last error the server sent instead of an answer, for when it then closes for good.
    this.lastError = null;
    // A fresh intake's ready that came before resume_refused.
    this.freshReady = null;
  }

  retry() {
    this.awaiting = false;
    this.freshReady = null;
    const delay = this.backoff.next();
    if (delay === null) this.giveUp();
    else this.timer = setTimeout(() => this.#try(), delay);
  }

  // The browser is back online: no need to wait for the backoff.
  now() {
    if (this.awaiting) return;
    clearTimeout(this.timer);
    this.#try();
  }

  cancel() {
    clearTimeout(this.timer);
  }

  #try() {
    this.awaiting = true;
    this.attempt();
  }
}

// The delays between tries after one drop; null once the server has given the intake up.
export class Backoff {
  constructor(now = performance.now()) {
    this.startedAt = now;
    this.tries = 0;
  }

  next(now = performance.now()) {
    if (now - this.startedAt >= GIVE_UP_MS) return null;
    const delay = DELAYS_MS[Math.min(this.tries, DELAYS_MS.length - 1)];
    this.tries += 1;
    return delay;
  }
}

const words = (text) => text.replace(/\s+/g, ' ').trim();

function sameTurn(shown, kept) {
  if (shown.role !== kept.role) return false;
  const [a, b] = [words(shown.text), words(kept.text)];
  // The page's last bubble may have been cut off mid-sentence by the drop.
  return a === b || b.startsWith(a);
}

// shown: the page's turns; history: the server's. Returns the page's turns to complete (cut off by
// the drop, finished in the history) and the history's turns the page never received. The page
// is normally a prefix of the history; when the two were split into turns differently, the page's
// last turn is looked for in the history and only what follows it is new.
export function reconcile(shown, history) {
  const kept = history.filter((turn) => turn.text && (turn.role === 'patient' || turn.role === 'assistant'));
  const common = Math.min(shown.length, kept.length);
  let matched = 0;
  while (matched < common && sameTurn(shown[matched], kept[matched])) matched += 1;
  if (matched === common) {
    const complete = [];
    for (let index = 0; index < common; index += 1) {
      if (words(shown[index].text) !== words(kept[index].text)) complete.push({ index, text: kept[index].text });
    }
    return { complete, append: kept.slice(common) };
  }
  const last = shown.at(-1);
  const found = kept.findLastIndex((turn) => sameTurn(last, turn));
  if (found === -1) return { complete: [], append: [] };
  const complete =
    words(last.text) === words(kept[found].text) ? [] : [{ index: shown.length - 1, text: kept[found].text }];
  return { complete, append: kept.slice(found + 1) };
}
