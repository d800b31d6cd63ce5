// The intake page: wires the microphone, the server session, the transcript and the record.
import { AudioEngine } from './audio-engine.js';
import { IntakeConnection, sessionUrl } from './connection.js';
import { RecordView } from './record-view.js';
import { TranscriptView, renderTurns } from './transcript-view.js';
import {
  CONNECTION_FAILED,
  CONNECTION_LOST,
  KEY_MISSING,
  STATES,
  describeError,
  describeMicrophoneError,
  endsConversation,
} from './wording.js';

const KEY_STORAGE = 'intake.geminiApiKey';
const NOTICE_SECONDS = 8;
const END_GRACE_MS = 5000;
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
  notice: $('notice'),
  start: $('start'),
  reconnect: $('reconnect'),
  stop: $('stop'),
  end: $('end'),
  workspace: $('workspace'),
  review: $('review'),
  reviewTitle: $('review-title'),
  reviewMessage: $('review-message'),
  reviewTranscript: $('review-transcript'),
  download: $('download'),
  restart: $('restart'),
};

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
};
window.intakeDebug = debug;

const transcript = new TranscriptView($('transcript'));
const record = new RecordView($('record'));
const reviewRecord = new RecordView($('review-record'), { highlight: false, empty: 'Nothing recorded' });

// phase: idle | connecting | ready | reconnecting | done | ended | error
const session = {
  phase: 'idle',
  connection: null,
  speaking: false,
  keyRequired: false,
  endedByPatient: false,
  fatalText: null,
  latestRecord: null,
  endTimer: null,
};

const engine = new AudioEngine({
  onFrame(buffer) {
    const live = session.phase === 'ready' || session.phase === 'reconnecting';
    if (!live || !session.connection) return;
    if (session.connection.sendAudio(buffer)) {
      debug.framesSent += 1;
      debug.bytesSent += buffer.byteLength;
    } else {
      debug.framesDropped += 1;
    }
  },
  onLevel(rms) {
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

  ui.start.hidden = !(['idle', 'ended'].includes(session.phase) || (session.phase === 'ready' && !engine.micOn));
  ui.start.textContent =
    session.phase === 'ready' ? 'Resume microphone' : session.phase === 'ended' ? 'Start a new intake' : 'Start intake';
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
  const apiKey = session.keyRequired ? ui.keyInput.value.trim() : '';
  if (session.keyRequired && !apiKey) {
    showAlert(KEY_MISSING);
    ui.keyInput.focus();
    return;
  }
  showAlert('');
  session.fatalText = null;
  session.endedByPatient = false;
  setPhase('connecting');
  try {
    await engine.open();
    debug.contextSampleRate = engine.sampleRate;
    await startMicrophone();
  } catch (error) {
    console.warn('microphone did not start:', error.name);
    fail(describeMicrophoneError(error));
    return;
  }
  connect(apiKey);
}

function connect(apiKey) {
  const token = new URLSearchParams(location.search).get('token');
  session.connection = new IntakeConnection(sessionUrl({ apiKey, token }), {
    onMessage: handleMessage,
    onAudio(buffer) {
      debug.audioChunksReceived += 1;
      debug.audioBytesReceived += buffer.byteLength;
      // A PCM16 stream never splits a sample; an odd byte would shift every later sample.
      engine.play(buffer.byteLength % 2 ? buffer.slice(0, -1) : buffer);
    },
    onClose: handleClose,
  });
}

function handleMessage(message) {
  debug.messages[message.type] = (debug.messages[message.type] ?? 0) + 1;
  switch (message.type) {
    case 'status':
      onStatus(message);
      break;
    case 'transcript':
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
      if (session.phase === 'done') reviewRecord.update(message.data);
      break;
    case 'intake_complete':
      complete(message.message);
      break;
    case 'error':
      onServerError(message);
      break;
    default:
      console.warn('ignored a message of unknown type', message.type);
  }
}

function onStatus({ state, upstream, session_id: sessionId }) {
  if (sessionId) debug.sessionId = sessionId;
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
  const text = describeError(code);
  if (!endsConversation(code)) {
    showNotice(text);
    return;
  }
  session.fatalText = text;
  showAlert(text);
  if ((code === 'no_api_key' || code === 'upstream_auth') && session.keyRequired) {
    ui.keyField.hidden = false;
  }
}

function handleClose({ opened }) {
  session.connection = null;
  clearTimeout(session.endTimer);
  if (session.phase === 'done') return;
  engine.stopMic();
  if (session.endedByPatient) {
    setPhase('ended');
    return;
  }
  engine.flush();
  fail(session.fatalText ?? (opened ? CONNECTION_LOST : CONNECTION_FAILED));
  if (!ui.keyField.hidden) ui.keyInput.focus();
}

function stopMicrophone() {
  engine.stopMic();
  session.connection?.send({ type: 'control', action: 'stop' });
  render();
}

function endConversation() {
  session.endedByPatient = true;
  engine.stopMic();
  const connection = session.connection;
  if (!connection) {
    setPhase('ended');
    return;
  }
  connection.send({ type: 'end_session' });
  render();
  // The server closes the socket once it has wrapped up; do not wait on it for ever.
  session.endTimer = setTimeout(() => connection.close(), END_GRACE_MS);
}

function complete(message) {
  engine.stopMic();
  setPhase('done');
  ui.reviewMessage.textContent = message;
  if (session.latestRecord) reviewRecord.update(session.latestRecord);
  ui.download.disabled = !session.latestRecord;
  ui.workspace.hidden = true;
  ui.review.hidden = false;
  ui.reviewTitle.focus();
}

function downloadRecord() {
  const blob = new Blob([JSON.stringify(session.latestRecord, null, 2)], { type: 'application/json' });
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement('a'), {
    href: url,
    download: `intake-${new Date().toISOString().slice(0, 10)}.json`,
  });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function loadKeyStatus() {
  const token = new URLSearchParams(location.search).get('token');
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  let status;
  try {
    const response = await fetch(new URL('/api-key-status', location.href), { headers });
    if (!response.ok) return;
    status = await response.json();
  } catch (error) {
    console.warn('could not read /api-key-status:', error.message);
    return;
  }
  ui.mode.hidden = status.upstream !== 'simulator';
  session.keyRequired = status.browser_key_required === true;
  ui.keyField.hidden = !session.keyRequired;
  if (session.keyRequired) ui.keyInput.value = sessionStorage.getItem(KEY_STORAGE) ?? '';
}

ui.keyInput.addEventListener('input', () => {
  const key = ui.keyInput.value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
});
ui.start.addEventListener('click', start);
ui.reconnect.addEventListener('click', () => {
  transcript.note('Reconnected: a new conversation has started.');
  start();
});
ui.stop.addEventListener('click', stopMicrophone);
ui.end.addEventListener('click', endConversation);
ui.download.addEventListener('click', downloadRecord);
// Rendered when opened: the assistant's closing words may still be arriving after the review shows.
ui.reviewTranscript.closest('details').addEventListener('toggle', (event) => {
  if (event.target.open) renderTurns(ui.reviewTranscript, transcript.turns());
});
ui.keyField.addEventListener('submit', (event) => {
  event.preventDefault();
  start();
});
ui.restart.addEventListener('click', () => window.location.reload());

render();
loadKeyStatus();
