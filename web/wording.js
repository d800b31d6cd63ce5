// Everything the patient reads about the session's state and errors, in plain words.

export const STATES = {
  idle: ['Ready to start', 'Press Start and allow the microphone when your browser asks.'],
  connecting: ['Connecting…', 'Setting up your conversation with the assistant.'],
  listening: ['Listening', 'Speak naturally. The assistant will answer when you pause.'],
  speaking: ['Assistant speaking', 'You can talk at any time to interrupt.'],
  paused: ['Microphone off', 'The assistant cannot hear you. Press Resume to talk again.'],
  reconnecting: ['Reconnecting…', 'Hold on while we restore the connection.'],
  done: ['Done', 'Your intake is complete. Thank you.'],
  ended: ['Conversation ended', 'You ended the conversation. You can start a new one.'],
  superseded: ['Continued elsewhere', 'This conversation carried on in another window or tab.'],
  error: ['Something went wrong', ''],
};

// Codes after which the conversation simply goes on.
const PASSING = new Set([
  'bad_message',
  'unknown_type',
  'frame_too_large',
  'odd_length_audio',
  'extraction_failed',
  'audio_dropped',
  'assistant_stalled',
  'save_failed',
  'audio_too_fast',
]);

const ERRORS = {
  bad_message: 'A message from this page was not understood. The conversation continues.',
  unknown_type: 'A message from this page was not understood. The conversation continues.',
  frame_too_large: 'A piece of your recording could not be sent. You may need to repeat yourself.',
  odd_length_audio: 'A piece of your recording could not be sent. You may need to repeat yourself.',
  extraction_failed: 'We could not update your form just now. Keep talking; we will try again.',
  audio_dropped: 'A moment of your speech was lost. Please repeat the last thing you said.',
  no_api_key: 'The assistant is not set up yet: it needs a Gemini API key to start.',
  upstream_error: 'The assistant is having trouble right now. Please try again in a moment.',
  upstream_auth: 'The assistant could not sign in: the API key was not accepted.',
  idle_timeout: 'The conversation ended because we did not hear anything for a while.',
  too_many_sessions: 'The assistant is busy with other patients. Please try again in a few minutes.',
  unauthorized: 'This page needs a valid link from your clinic. Please ask the front desk for a new one.',
  server_shutdown: 'The service is restarting. Please reconnect in a moment.',
  internal_error: 'Something went wrong on our side. Please try again.',
  assistant_stalled: 'The assistant did not answer. Please say that again.',
  save_failed: 'Your answers could not be saved yet. Please let the front desk know before you leave.',
  audio_too_fast: 'Your recording arrived faster than real time; part of it was skipped.',
  bad_api_key: 'The API key is not valid: check it for stray spaces or characters.',
  upstream_unreachable: 'The assistant service cannot be reached right now. Please try again in a moment.',
  superseded: 'This conversation carried on in another window or tab. You can close this one.',
};

export const CONNECTION_LOST = 'The connection to the clinic was lost.';
export const CONNECTION_FAILED = 'We could not reach the clinic. Check your internet connection and try again.';
export const RECONNECT_GAVE_UP =
  'The connection to the clinic was lost and could not be restored. Press Reconnect to start a new conversation.';
export const RESUME_REFUSED =
  'We could not pick up your earlier conversation, so a new one has started. Please tell the assistant again what you had said.';
export const SUPERSEDED = ERRORS.superseded;
export const KEY_MISSING = 'Please enter the Gemini API key to start.';
export const KIOSK_NOT_SET_UP = 'This tablet is not set up yet. Please ask the front desk for help.';

// A page opened over plain http:// from another device: browsers refuse it the microphone.
export function insecureOrigin(pageUrl) {
  const secure = new URL(pageUrl);
  secure.protocol = 'https:';
  return (
    'The microphone only works on a secure page, and this one was opened over plain http://. ' +
    `Open ${secure.origin}${secure.pathname} instead. If that address does not load, the clinic's ` +
    'server needs HTTPS turned on first (see "Waiting-room tablet" in its README).'
  );
}

export const EMERGENCY_TITLE = 'Get help now';

export const KIOSK_DONE = 'Done';
export const RESTART = 'Start a new intake';
export const IDLE_PROMPT = { question: 'Are you still there?', answer: "I'm still here" };

export function reviewClearsIn(seconds) {
  return `For your privacy this screen clears in ${seconds} s, ready for the next patient.`;
}

export function idleEndsIn(seconds) {
  return `If we do not hear from you, this intake ends and is cleared in ${seconds} s.`;
}

export function describeError(code) {
  return ERRORS[code] ?? ERRORS.internal_error;
}

export function endsConversation(code) {
  return !PASSING.has(code);
}

export function describeMicrophoneError(error) {
  switch (error?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'The microphone is blocked. Allow microphone access for this page in your browser, then try again.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No microphone was found. Connect one and try again.';
    case 'NotReadableError':
      return 'Your microphone is being used by another app. Close it and try again.';
    default:
      return 'Your browser could not start the microphone. Try again, or use a current version of Chrome, Edge, Firefox or Safari.';
  }
}
