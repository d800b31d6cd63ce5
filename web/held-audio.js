// Microphone audio captured while the socket was down, sent once the intake is resumed.

// About 3 s of 16 kHz PCM16: a sentence spoken across a short drop. Beyond it the oldest audio
// goes: an answer to words from long ago would confuse more than it helps.
const MAX_BYTES = 96000;
const BYTES_PER_SECOND = 32000;
// The server admits audio at MAX_AUDIO_SPEED (1.2 by default) times real time after a 0.5 s
// burst and drops the excess, so the held audio goes out just under that, ahead of live frames.
const DRAIN_RATE = 1.15;
const BURST_SECONDS = 0.5;
const TICK_MS = 50;
// About -50 dBFS. Silence at either end of the held audio is not sent: late, it would only
// delay what the patient says next.
const SILENCE_RMS = 100;

function rms(buffer) {
  const samples = new Int16Array(buffer);
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  return samples.length ? Math.sqrt(sum / samples.length) : 0;
}

export class HeldAudio {
  constructor() {
    this.frames = [];
    this.bytes = 0;
    this.timer = null;
    this.stats = { held: 0, dropped: 0, trimmed: 0, released: 0, sent: 0 };
  }

  // While true, live frames must go through hold() too, so nothing overtakes the held audio.
  get busy() {
    return this.frames.length > 0 || this.timer !== null;
  }

  hold(buffer) {
    this.frames.push(buffer);
    this.bytes += buffer.byteLength;
    this.stats.held += buffer.byteLength;
    while (this.bytes > MAX_BYTES) this.#drop('dropped');
  }

  // Starts sending through send(buffer) at a pace the server admits; live frames held meanwhile
  // follow in order.
  release(send) {
    this.#trim();
    this.stats.released = this.bytes;
    if (!this.frames.length) return;
    let tokens = BURST_SECONDS;
    let last = performance.now();
    const tick = () => {
      const now = performance.now();
      tokens = Math.min(BURST_SECONDS, tokens + ((now - last) / 1000) * DRAIN_RATE);
      last = now;
      while (this.frames.length && this.frames[0].byteLength / BYTES_PER_SECOND <= tokens) {
        const buffer = this.frames.shift();
        this.bytes -= buffer.byteLength;
        tokens -= buffer.byteLength / BYTES_PER_SECOND;
        this.stats.sent += buffer.byteLength;
        send(buffer);
      }
      if (!this.frames.length) this.stop();
    };
    this.timer = setInterval(tick, TICK_MS);
    tick();
  }

  // Stops sending and keeps what is left (the socket dropped again).
  stop() {
    clearInterval(this.timer);
    this.timer = null;
  }

  clear() {
    this.stop();
    this.frames = [];
    this.bytes = 0;
  }

  #trim() {
    while (this.frames.length && rms(this.frames[0]) < SILENCE_RMS) this.#drop('trimmed');
    while (this.frames.length && rms(this.frames.at(-1)) < SILENCE_RMS) {
      const buffer = this.frames.pop();
      this.bytes -= buffer.byteLength;
      this.stats.trimmed += buffer.byteLength;
    }
  }

  #drop(why) {
    const buffer = this.frames.shift();
    this.bytes -= buffer.byteLength;
    this.stats[why] += buffer.byteLength;
  }
}
