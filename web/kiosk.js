// Kiosk mode, for a tablet handed from one patient to the next: the review screen clears
// itself, an idle intake asks whether anyone is still there, and leaving forgets the patient.
import { accessToken } from './access.js';
import { IDLE_PROMPT, reviewClearsIn, idleEndsIn } from './wording.js';

const NOT_KIOSK = { kiosk_mode: false, kiosk_review_seconds: 30, kiosk_idle_seconds: 90, kiosk_idle_answer_seconds: 20 };
// Microphone RMS above this counts as the patient being there (about -40 dBFS).
const PRESENCE_RMS = 0.01;

// GET /app/config; a server without it (or unreachable) means an ordinary, non-kiosk page.
export async function fetchPageConfig() {
  const token = accessToken();
  try {
    const response = await fetch(new URL('config', location.href), {
      headers: token ? { Authorization: `Bearer ${token}` } : {},
    });
    return response.ok ? { ...NOT_KIOSK, ...(await response.json()) } : NOT_KIOSK;
  } catch (error) {
    console.warn('could not read the page config:', error.message);
    return NOT_KIOSK;
  }
}

// Nothing of the patient may outlive them on a shared tablet: clear what is on screen at once,
// then load a fresh copy of the page, so no DOM node, variable or closure from this one survives.
export function forgetPatient(containers, { clearStorage }) {
  for (const container of containers) container.replaceChildren();
  if (clearStorage) {
    sessionStorage.clear();
    localStorage.clear();
  }
  location.replace(location.href);
}

export class ReviewCountdown {
  constructor(element, { seconds, onElapsed }) {
    this.element = element;
    this.seconds = seconds;
    this.onElapsed = onElapsed;
    this.timer = null;
  }

  start() {
    const endsAt = performance.now() + this.seconds * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((endsAt - performance.now()) / 1000));
      this.element.textContent = reviewClearsIn(left);
      if (left <= 0) {
        this.stop();
        this.onElapsed();
      }
    };
    this.element.hidden = false;
    tick();
    this.timer = setInterval(tick, 250);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }
}

// Mid-intake: no voice and no touch for idleSeconds shows the prompt; no answer within
// answerSeconds calls onAbandoned.
export class IdleWatch {
  constructor(prompt, { idleSeconds, answerSeconds, onAbandoned }) {
    this.prompt = prompt;
    this.question = prompt.querySelector('[data-part="question"]');
    this.countdown = prompt.querySelector('[data-part="countdown"]');
    this.button = prompt.querySelector('button');
    this.idleMs = idleSeconds * 1000;
    this.answerMs = answerSeconds * 1000;
    this.onAbandoned = onAbandoned;
    this.running = false;
    this.lastActivity = 0;
    this.askedAt = null;
    this.timer = null;
    this.question.textContent = IDLE_PROMPT.question;
    this.button.textContent = IDLE_PROMPT.answer;
    this.button.addEventListener('click', () => this.activity());
    for (const type of ['pointerdown', 'keydown']) {
      document.addEventListener(type, () => this.activity(), { capture: true, passive: true });
    }
  }

  start() {
    this.running = true;
    this.activity();
    clearInterval(this.timer);
    this.timer = setInterval(() => this.#check(), 250);
  }

  stop() {
    this.running = false;
    clearInterval(this.timer);
    this.#hide();
  }

  level(rms) {
    if (rms > PRESENCE_RMS) this.activity();
  }

  activity() {
    this.lastActivity = performance.now();
    if (this.askedAt !== null) this.#hide();
  }

  #check() {
    if (!this.running) return;
    const now = performance.now();
    if (this.askedAt === null) {
      if (now - this.lastActivity >= this.idleMs) this.#ask(now);
      return;
    }
    const left = this.answerMs - (now - this.askedAt);
    this.countdown.textContent = idleEndsIn(Math.max(0, Math.ceil(left / 1000)));
    if (left <= 0) {
      this.stop();
      this.onAbandoned();
    }
  }

  #ask(now) {
    this.askedAt = now;
    this.countdown.textContent = idleEndsIn(Math.ceil(this.answerMs / 1000));
    this.prompt.hidden = false;
    this.button.focus();
  }

  #hide() {
    this.askedAt = null;
    this.prompt.hidden = true;
  }
}
