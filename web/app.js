// The intake page: wires the microphone, the server session, the transcript and the record.
import { KeyField, accessToken, fetchKeyStatus } from './access.js';
import { AudioEngine } from './audio-engine.js';
import { IntakeConnection, sessionUrl } from './connection.js';
import { HeldAudio } from './held-audio.js';
import { IdleWatch, ReviewCountdown, fetchPageConfig, forgetPatient } from './kiosk.js';
import { RecordView } from './record-view.js';
import { ResumeTicket, Resumption, reconcile, resumable } from './resume.js';
import { ReviewView } from './review-view.js';
import { TranscriptView } from './transcript-view.js';
import {
  CONNECTION_FAILED,
  CONNECTION_LOST,
  EMERGENCY_TITLE,
  KEY_MISSING,
  KIOSK_DONE,
  KIOSK_NOT_SET_UP,
  RECONNECT_GAVE_UP,
  RESTART,
  RESUME_REFUSED,
  STATES,
  SUPERSEDED,
  describeError,
  describeMicrophoneError,
  endsConversation,
  insecureOrigin,
} from './wording.js';

const NOTICE_SECONDS = 8;
const END_GRACE_MS = 5000;
// How long leaving the review waits for the server to acknowledge end_session.
const LEAVE_WAIT_MS = 1000;
const FLUSH_CHECK_MS = 300;

const $ = (id) => document.getElementById(id);
const ui = {
  session: document.querySelector('.session'),
  sessionActions: $('session-actions'),
  status: document.querySelector('[data-testid="status"]'),
  label: document.querySelector('.status__label'),
  hint: document.querySelector('.status__hint'),
  mode: $('mode'),
  meter: $('meter'),
  meterFill: document.querySelector('.meter__fill'),
  keyField: $('key-field'),
  keyInput: $('api-key'),
  alert: $('alert'),
  emergency: $('emergency'),
  emergencyTitle: $('emergency-title'),
  emergencyText: $('emergency-text'),
  notice: $('notice'),
  start: $('start'),
  reconnect: $('reconnect'),
  stop: $('stop'),
  end: $('end'),
  workspace: $('workspace'),
  restart: $('restart'),
  reviewCountdown: $('review-countdown'),
  idlePrompt: $('idle-prompt'),
};

// Filled from GET /app/config before Start can be pressed; ordinary page until then.
let kiosk = null;

// Read by the browser tests; never holds patient data.
const debug = {
  state: 'idle',
  states: ['idle'],
  sessionId: null,
  upstream: null,
  contextSampleRate: null,
  framesSent: 0,
  bytesSent: 0,
  framesDropped: 0,
  audioChunksReceived: 0,
  audioBytesReceived: 0,
  framesPlayed: 0,
  secondsPlayed: 0,
  lastFlushAt: null,
  interruptions: [],
  messages: {},
  errors: [],
  resume: { drops: 0, attempts: 0, outcomes: [], ignored: 0, appended: 0, completed: 0 },
  heldAudio: null,
};
window.intakeDebug = debug;

const transcript = new TranscriptView($('transcript'));
const record = new RecordView($('record'));
const apiKey = new KeyField(ui.keyField, ui.keyInput);
const review = new ReviewView($('review'), { turns: () => transcript.turns() });
const ticket = new ResumeTicket();
const held = new HeldAudio();
debug.heldAudio = held.stats;

// phase: idle | connecting | ready | reconnecting | done | ended | superseded | error
const session = {
  phase: 'idle',
  // Kept for reconnects: a resume goes to the same URL, with the same key and access token.
  url: null,
  connection: null,
  // A Resumption from a drop until the intake is picked up again or given up.
  resumption: null,
  speaking: false,
  askForKey: false,
  endedByPatient: false,
  fatalText: null,
  latestRecord: null,
  endTimer: null,
};

const engine = new AudioEngine({
  onFrame(buffer) {
    const live = session.phase === 'ready' || session.phase === 'reconnecting';
    if (!live) return;
    // Held while the socket is down, and behind the held audio until it has gone out.
    if (session.resumption || held.busy) held.hold(buffer);
    else if (session.connection) sendFrame(buffer);
  },
  onLevel(rms) {
    kiosk?.idle.level(rms);
    // -60 dBFS (quiet room) .. 0 dBFS mapped onto the meter.
    const db = rms > 0 ? 20 * Math.log10(rms) : -100;
    const level = Math.max(0, Math.min(1, (db + 60) / 60));
    ui.meterFill.style.transform = `scaleX(${level.toFixed(3)})`;
    ui.meter.setAttribute('aria-valuenow', String(Math.round(level * 10) * 10));
  },
  onPlayback(event) {
    debug.framesPlayed = event.framesPlayed;
    debug.secondsPlayed = event.framesPlayed / engine.sampleRate;
    if (event.type === 'flushed') onFlushed(event);
    if (event.type === 'speaking' || event.type === 'idle' || event.type === 'flushed') {
      session.speaking = event.type === 'speaking';
      render();
    }
  },
});

function sendFrame(buffer) {
  if (session.connection?.sendAudio(buffer)) {
    debug.framesSent += 1;
    debug.bytesSent += buffer.byteLength;
  } else {
    debug.framesDropped += 1;
  }
}

function displayState() {
  switch (session.phase) {
    case 'ready':
      if (session.speaking) return 'speaking';
      return engine.micOn ? 'listening' : 'paused';
    default:
      return session.phase;
  }
}

function render() {
  const state = displayState();
  const inSession = ['connecting', 'ready', 'reconnecting'].includes(session.phase);
  const controlsHadFocus = ui.session.contains(document.activeElement);

  ui.status.dataset.state = state;
  const [label, hint] = STATES[state];
  ui.label.textContent = label;
  ui.hint.textContent = state === 'error' ? session.fatalText ?? '' : hint;

  const over = ['ended', 'superseded'].includes(session.phase);
  ui.start.hidden = !(session.phase === 'idle' || over || (session.phase === 'ready' && !engine.micOn));
  ui.start.textContent = session.phase === 'ready' ? 'Resume microphone' : over ? RESTART : 'Start intake';
  ui.stop.hidden = !inSession || (session.phase === 'ready' && !engine.micOn);
  ui.end.hidden = !inSession;
  ui.reconnect.hidden = session.phase !== 'error';
  ui.sessionActions.hidden = [ui.start, ui.reconnect, ui.stop, ui.end].every((button) => button.hidden);
  ui.meter.classList.toggle('meter--off', !engine.micOn);
  ui.meter.hidden = session.phase === 'done';

  // A button that hid itself must not strand keyboard focus on the page body.
  if (controlsHadFocus && (document.activeElement === document.body || document.activeElement?.hidden)) {
    [ui.stop, ui.start, ui.reconnect, ui.end].find((button) => !button.hidden)?.focus();
  }

  if (debug.state !== state) {
    debug.state = state;
    debug.states.push(state);
  }
}

function setPhase(phase) {
  session.phase = phase;
  render();
}

function showAlert(text) {
  ui.alert.textContent = text;
  ui.alert.hidden = !text;
}

let noticeTimer = null;
function showNotice(text) {
  ui.notice.textContent = text;
  ui.notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    ui.notice.hidden = true;
  }, NOTICE_SECONDS * 1000);
}

function fail(text) {
  session.fatalText = text;
  showAlert(text);
  engine.stopMic();
  setPhase('error');
}

async function startMicrophone() {
  await engine.startMic();
  render();
}

async function start() {
  if (!window.isSecureContext) {
    showAlert(insecureOrigin(location.href));
    return;
  }
  if (session.phase === 'ready') {
    try {
      await startMicrophone();
    } catch (error) {
      showNotice(describeMicrophoneError(error));
      return;
    }
    session.connection?.send({ type: 'control', action: 'start' });
    return;
  }
  const key = apiKey.required ? apiKey.value : '';
  if (apiKey.required && !key) {
    showAlert(KEY_MISSING);
    apiKey.reveal();
    return;
  }
  showAlert('');
  session.fatalText = null;
  session.askForKey = false;
  session.endedByPatient = false;
  // A new intake: never resume the one before it.
  forgetIntake();
  session.url = sessionUrl({ apiKey: key, token: accessToken() });
  setPhase('connecting');
  kiosk?.idle.start();
  try {
    await engine.open();
    debug.contextSampleRate = engine.sampleRate;
    await startMicrophone();
  } catch (error) {
    console.warn('microphone did not start:', error.name);
    fail(describeMicrophoneError(error));
    return;
  }
  connect();
}

// first: the resume message, when this socket is to pick up the intake the last one held.
function connect(first = null) {
  // Events of a socket the page has already let go of must not touch the current one.
  const connection = new IntakeConnection(session.url, {
    first,
    onMessage(message) {
      if (session.connection === connection) handleMessage(message);
    },
    onAudio(buffer) {
      if (session.connection !== connection || session.resumption?.awaiting) return;
      debug.audioChunksReceived += 1;
      debug.audioBytesReceived += buffer.byteLength;
      // A PCM16 stream never splits a sample; an odd byte would shift every later sample.
      engine.play(buffer.byteLength % 2 ? buffer.slice(0, -1) : buffer);
    },
    onClose(event) {
      if (session.connection === connection) handleClose(event);
    },
  });
  session.connection = connection;
}

function handleMessage(message) {
  debug.messages[message.type] = (debug.messages[message.type] ?? 0) + 1;
  if (session.resumption?.awaiting) {
    answerToResume(message);
    return;
  }
  switch (message.type) {
    case 'status':
      onStatus(message);
      break;
    case 'history':
      applyHistory(message);
      break;
    case 'transcript':
      if (message.role === 'patient') {
        kiosk?.idle.activity();
        debug.patientHeardAt = performance.now();
      }
      transcript.append(message.role, message.text);
      break;
    case 'turn_complete':
      transcript.endTurn();
      break;
    case 'interrupted':
      onInterrupted();
      break;
    case 'extracted_data':
      session.latestRecord = message.data;
      record.update(message.data);
      if (session.phase === 'done') review.update(message.data);
      break;
    case 'intake_complete':
      complete(message.message);
      break;
    case 'emergency':
      showEmergency(message);
      break;
    case 'error':
      onServerError(message);
      break;
    default:
      console.warn('ignored a message of unknown type', message.type);
  }
}

// Stays on screen for the rest of this visit: it is cleared only with the page (Start a new intake).
function showEmergency({ instructions }) {
  debug.emergencyAfterPatientMs = performance.now() - (debug.patientHeardAt ?? performance.now());
  ui.emergencyTitle.textContent = EMERGENCY_TITLE;
  ui.emergencyText.textContent = instructions;
  ui.emergency.hidden = false;
}

function onStatus(message) {
  const { state, upstream, session_id: sessionId } = message;
  if (sessionId) debug.sessionId = sessionId;
  // The token rotates on every resume: only the newest one works.
  if (state === 'ready') ticket.remember(message);
  if (upstream) {
    debug.upstream = upstream;
    ui.mode.hidden = upstream !== 'simulator';
  }
  if (session.phase === 'done' || session.phase === 'ended') return;
  if (state === 'ready') setPhase('ready');
  else if (state === 'reconnecting') setPhase('reconnecting');
  else if (state === 'connecting') setPhase('connecting');
}

function onInterrupted() {
  const entry = {
    receivedAt: performance.now(),
    chunksAtInterrupt: debug.audioChunksReceived,
    flushedAt: null,
    flushMs: null,
    droppedSeconds: null,
    framesAtFlush: null,
    framesAfterCheck: null,
    chunksAfterCheck: null,
  };
  debug.interruptions.push(entry);
  engine.flush();
  transcript.endTurn({ interrupted: true });
  setTimeout(() => {
    entry.framesAfterCheck = debug.framesPlayed;
    entry.chunksAfterCheck = debug.audioChunksReceived;
  }, FLUSH_CHECK_MS);
}

function onFlushed({ droppedSeconds, framesPlayed }) {
  const now = performance.now();
  debug.lastFlushAt = now;
  const entry = debug.interruptions.findLast((item) => item.flushedAt === null);
  if (!entry) return;
  Object.assign(entry, {
    flushedAt: now,
    flushMs: now - entry.receivedAt,
    droppedSeconds,
    framesAtFlush: framesPlayed,
  });
}

function onServerError({ code, message }) {
  debug.errors.push(code);
  console.info(`server error ${code}: ${message}`);
  // A restart: the 1001 close that follows is picked up again like a drop.
  if (code === 'server_shutdown' && ticket.held) return;
  const text = describeError(code);
  if (!endsConversation(code)) {
    showNotice(text);
    return;
  }
  session.fatalText = text;
  showAlert(text);
  // The patient's own key is missing or refused: ask again once the socket closes.
  if (!kiosk && (code === 'no_api_key' || (code === 'upstream_auth' && apiKey.required))) {
    apiKey.required = true;
    session.askForKey = true;
  }
}

function handleClose({ opened, code, reason }) {
  session.connection = null;
  clearTimeout(session.endTimer);
  if (session.phase === 'done') return;
  // The server ends a finished intake itself; that is the normal end, not a lost connection.
  if (code === 1000 && reason === 'intake_complete') {
    engine.stopMic();
    setPhase('ended');
    return;
  }
  if (session.endedByPatient) {
    forgetIntake();
    engine.stopMic();
    setPhase('ended');
    return;
  }
  const resumption = session.resumption;
  if (resumption && resumable(code)) {
    resumption.retry();
    return;
  }
  if (!resumption && resumable(code) && ticket.held && !session.fatalText) {
    startResuming();
    return;
  }
  forgetIntake();
  engine.stopMic();
  engine.flush();
  if (code === 4409) {
    superseded();
    return;
  }
  // The socket that was to pick the intake up was refused (a busy or unauthorized server).
  if (resumption) {
    fail(resumption.lastError ? describeError(resumption.lastError) : RECONNECT_GAVE_UP);
    return;
  }
  fail(session.fatalText ?? (opened ? CONNECTION_LOST : CONNECTION_FAILED));
  if (session.askForKey) apiKey.reveal();
}

// The socket dropped mid-intake: keep the transcript, the record and the microphone, and try again.
function startResuming() {
  session.resumption = new Resumption({
    attempt() {
      debug.resume.attempts += 1;
      connect(ticket.message());
    },
    giveUp() {
      forgetIntake();
      engine.stopMic();
      engine.flush();
      fail(RECONNECT_GAVE_UP);
    },
  });
  debug.resume.drops += 1;
  held.stop();
  transcript.endTurn();
  setPhase('reconnecting');
  session.resumption.retry();
}

// Until the server answers the resume, whatever else it sends belongs to no intake of this page.
function answerToResume(message) {
  if (message.type === 'status' && message.state === 'ready' && message.resumed === true) {
    endResumption('resumed');
    onStatus(message);
    held.release(sendFrame);
  } else if (message.type === 'error' && message.code === 'resume_refused') {
    console.info(`resume refused: ${message.message}`);
    // The server carries on with a fresh intake on this socket; its own `ready` follows (or came
    // just before the refusal, while the page was still waiting).
    const fresh = session.resumption.freshReady;
    endResumption('refused');
    ticket.forget();
    held.clear();
    transcript.clear();
    record.clear();
    session.latestRecord = null;
    transcript.note(RESUME_REFUSED);
    showNotice(RESUME_REFUSED);
    if (fresh) onStatus(fresh);
  } else {
    debug.resume.ignored += 1;
    if (message.type === 'error') session.resumption.lastError = message.code;
    if (message.type === 'status' && message.state === 'ready') session.resumption.freshReady = message;
  }
}

// Appends only what the page does not show yet: turns it never received during the drop.
function applyHistory({ turns = [], record: latest = null }) {
  const { complete, append } = reconcile(transcript.turns(), turns);
  for (const { index, text } of complete) transcript.complete(index, text);
  for (const { role, text } of append) {
    transcript.append(role, text);
    transcript.endTurn();
  }
  debug.resume.completed += complete.length;
  debug.resume.appended += append.length;
  if (latest?.data) {
    session.latestRecord = latest.data;
    record.update(latest.data);
  }
}

function endResumption(outcome) {
  if (!session.resumption) return;
  session.resumption.cancel();
  session.resumption = null;
  debug.resume.outcomes.push(outcome);
}

// After this the page never resumes the current intake: it ended, moved on, or went elsewhere.
function forgetIntake() {
  endResumption('cancelled');
  ticket.forget();
  held.clear();
}

function superseded() {
  kiosk?.idle.stop();
  showAlert(SUPERSEDED);
  setPhase('superseded');
}

function stopMicrophone() {
  engine.stopMic();
  session.connection?.send({ type: 'control', action: 'stop' });
  render();
}

function endConversation() {
  session.endedByPatient = true;
  engine.stopMic();
  held.clear();
  const connection = session.connection;
  // An open socket that is resuming still ends the intake: the server reads `resume` first.
  if (!connection?.isOpen) {
    forgetIntake();
    session.connection = null;
    connection?.close();
    setPhase('ended');
    return;
  }
  connection.send({ type: 'end_session' });
  render();
  // The server closes the socket once it has wrapped up; do not wait on it for ever.
  session.endTimer = setTimeout(() => connection.close(), END_GRACE_MS);
}

function complete(message) {
  forgetIntake();
  engine.stopMic();
  setPhase('done');
  ui.workspace.hidden = true;
  review.show(message, session.latestRecord);
  kiosk?.idle.stop();
  kiosk?.countdown.start();
}

// Leaving the review (or an abandoned kiosk intake): tell the server, then forget the patient.
let leaving = false;
async function leave() {
  if (leaving) return;
  leaving = true;
  kiosk?.countdown.stop();
  kiosk?.idle.stop();
  session.endedByPatient = true;
  engine.stopMic();
  // A pending reconnect must never pick this patient's intake up for the next one.
  forgetIntake();
  await session.connection?.end(LEAVE_WAIT_MS);
  // The ordinary page keeps the patient's own key for this tab; a kiosk keeps nothing.
  const shown = [$('transcript'), $('record'), $('review-record'), $('review-transcript'), $('review-message')];
  forgetPatient(shown, { clearStorage: kiosk !== null });
}

async function loadSetup() {
  const [config, status] = await Promise.all([fetchPageConfig(), fetchKeyStatus()]);
  if (config.kiosk_mode) {
    kiosk = {
      countdown: new ReviewCountdown(ui.reviewCountdown, { seconds: config.kiosk_review_seconds, onElapsed: leave }),
      idle: new IdleWatch(ui.idlePrompt, {
        idleSeconds: config.kiosk_idle_seconds,
        answerSeconds: config.kiosk_idle_answer_seconds,
        onAbandoned: leave,
      }),
    };
    ui.restart.textContent = KIOSK_DONE;
    document.body.dataset.kiosk = 'true';
  }
  ui.start.disabled = false;
  if (!window.isSecureContext) showAlert(insecureOrigin(location.href));
  if (!status) return;
  ui.mode.hidden = status.upstream !== 'simulator';
  if (status.browser_key_required !== true) return;
  // A shared tablet never asks a patient for a key.
  if (kiosk) showAlert(KIOSK_NOT_SET_UP);
  else apiKey.require();
}

window.addEventListener('online', () => session.resumption?.now());
ui.start.addEventListener('click', start);
ui.reconnect.addEventListener('click', () => {
  transcript.note('Reconnected: a new conversation has started.');
  start();
});
ui.stop.addEventListener('click', stopMicrophone);
ui.end.addEventListener('click', () => (kiosk ? leave() : endConversation()));
ui.keyField.addEventListener('submit', (event) => {
  event.preventDefault();
  start();
});
ui.restart.textContent = RESTART;
ui.restart.addEventListener('click', leave);

ui.start.disabled = true;
render();
loadSetup();
