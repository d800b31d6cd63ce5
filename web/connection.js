// One WebSocket session with the intake server: PCM16 audio as binary frames both ways,
// and the JSON messages of schemas.py as text frames.

// Speech that arrives late is worse than speech that is lost: once a second of audio waits
// in the socket's send buffer, new frames are dropped (and counted) instead of piling up delay.
const MAX_BUFFERED_BYTES = 32000;

export function sessionUrl({ apiKey, token } = {}) {
  const url = new URL('/ws', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  if (apiKey) url.searchParams.set('api_key', apiKey);
  if (token) url.searchParams.set('token', token);
  return url.href;
}

export class IntakeConnection {
  // first: a message that must be the first thing the server reads (a resume).
  constructor(url, { onMessage, onAudio, onClose, first = null }) {
    this.opened = false;
    this.socket = new WebSocket(url);
    this.socket.binaryType = 'arraybuffer';
    this.socket.onopen = () => {
      this.opened = true;
      if (first) this.send(first);
    };
    this.socket.onmessage = ({ data }) => {
      if (typeof data !== 'string') {
        onAudio(data);
        return;
      }
      let message;
      try {
        message = JSON.parse(data);
      } catch {
        console.warn('ignored a text frame that is not JSON');
        return;
      }
      onMessage(message);
    };
    this.socket.onclose = ({ code, reason }) => onClose({ code, reason, opened: this.opened });
  }

  get isOpen() {
    return this.socket.readyState === WebSocket.OPEN;
  }

  // Returns whether the frame went out.
  sendAudio(buffer) {
    if (!this.isOpen || this.socket.bufferedAmount > MAX_BUFFERED_BYTES) return false;
    this.socket.send(buffer);
    return true;
  }

  send(message) {
    if (this.isOpen) this.socket.send(JSON.stringify(message));
  }

  close() {
    this.socket.close(1000);
  }

  // Sends end_session; resolves once the server has closed the socket, or after timeoutMs.
  end(timeoutMs) {
    if (!this.isOpen) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.close();
        resolve();
      }, timeoutMs);
      this.socket.addEventListener('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.send({ type: 'end_session' });
    });
  }
}
