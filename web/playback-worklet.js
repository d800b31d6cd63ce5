// Assistant voice playback: 24 kHz PCM16 chunks from the page wait in a bounded ring and are
// resampled to the context rate on the render thread. A flush silences the output at once.
import { pcm16ToFloat } from './pcm.js';
import { Resampler } from './resampler.js';

const SOURCE_RATE = 24000;
// Gemini can send a reply faster than real time; 60 s holds any one reply. When the ring is
// full the newest audio is dropped and counted, never the audio that is about to play.
const RING_SECONDS = 60;
// A reply starts once 60 ms is queued, or once its first chunk has waited that long, so
// jitter between network chunks does not turn into audible gaps.
const PREBUFFER_SECONDS = 0.06;
// "Speaking" ends after this much silence, so the page's state does not flicker between chunks.
const IDLE_AFTER_SECONDS = 0.3;
const STATS_INTERVAL_SECONDS = 0.05;
// Source samples resampled per step: small, so a flush never has much already resampled.
const FEED_SAMPLES = 64;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ring = new Int16Array(SOURCE_RATE * RING_SECONDS);
    this.readAt = 0;
    this.queued = 0;
    this.resampler = new Resampler(SOURCE_RATE, sampleRate);
    this.feed = new Float32Array(FEED_SAMPLES);
    this.zeros = new Float32Array(this.resampler.latencySamples);
    this.pending = new Float32Array(0);
    this.pendingAt = 0;
    this.tailInResampler = false;
    this.primed = false;
    this.waitingSince = null;
    this.speaking = false;
    this.silentSince = null;
    this.lastStatsAt = 0;
    this.framesPlayed = 0;
    this.samplesDropped = 0;
    this.port.onmessage = ({ data }) => {
      if (data.type === 'pcm') this.#enqueue(new Int16Array(data.buffer));
      else if (data.type === 'flush') this.#flush();
    };
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    this.#prime();
    let written = 0;
    if (this.primed) {
      while (written < out.length) {
        if (this.pendingAt === this.pending.length && !this.#refill()) break;
        const n = Math.min(out.length - written, this.pending.length - this.pendingAt);
        out.set(this.pending.subarray(this.pendingAt, this.pendingAt + n), written);
        written += n;
        this.pendingAt += n;
      }
      if (written < out.length) this.primed = false;
    }
    out.fill(0, written);
    this.framesPlayed += written;
    this.#track(written > 0);
    return true;
  }

  #prime() {
    if (this.primed || this.queued === 0) return;
    this.waitingSince ??= currentTime;
    if (this.queued >= PREBUFFER_SECONDS * SOURCE_RATE || currentTime - this.waitingSince >= PREBUFFER_SECONDS) {
      this.primed = true;
      this.waitingSince = null;
    }
  }

  #refill() {
    let input;
    if (this.queued > 0) {
      const n = Math.min(FEED_SAMPLES, this.queued);
      for (let i = 0; i < n; i++) {
        this.feed[i] = pcm16ToFloat(this.ring[this.readAt]);
        this.readAt = (this.readAt + 1) % this.ring.length;
      }
      this.queued -= n;
      input = this.feed.subarray(0, n);
      this.tailInResampler = true;
    } else if (this.tailInResampler) {
      // The filter holds back a few samples of look-ahead; push silence to let the reply end.
      input = this.zeros;
      this.tailInResampler = false;
    } else {
      return false;
    }
    this.pending = this.resampler.process(input);
    this.pendingAt = 0;
    return true;
  }

  #enqueue(samples) {
    const accepted = Math.min(samples.length, this.ring.length - this.queued);
    let writeAt = (this.readAt + this.queued) % this.ring.length;
    for (let i = 0; i < accepted; i++) {
      this.ring[writeAt] = samples[i];
      writeAt = writeAt + 1 === this.ring.length ? 0 : writeAt + 1;
    }
    this.queued += accepted;
    this.samplesDropped += samples.length - accepted;
  }

  #flush() {
    const droppedSeconds = this.queued / SOURCE_RATE + (this.pending.length - this.pendingAt) / sampleRate;
    this.queued = 0;
    this.readAt = 0;
    this.pending = new Float32Array(0);
    this.pendingAt = 0;
    this.tailInResampler = false;
    this.resampler.reset();
    this.primed = false;
    this.waitingSince = null;
    this.speaking = false;
    this.silentSince = null;
    this.port.postMessage({ type: 'flushed', droppedSeconds, framesPlayed: this.framesPlayed });
  }

  #track(playing) {
    if (playing) {
      this.silentSince = null;
      if (!this.speaking) {
        this.speaking = true;
        this.#post('speaking');
      }
    } else if (this.speaking) {
      this.silentSince ??= currentTime;
      if (currentTime - this.silentSince >= IDLE_AFTER_SECONDS) {
        this.speaking = false;
        this.#post('idle');
      }
    }
    if (this.speaking && currentTime - this.lastStatsAt >= STATS_INTERVAL_SECONDS) this.#post('stats');
  }

  #post(type) {
    this.lastStatsAt = currentTime;
    this.port.postMessage({
      type,
      framesPlayed: this.framesPlayed,
      queuedSeconds: this.queued / SOURCE_RATE,
      samplesDropped: this.samplesDropped,
    });
  }
}

registerProcessor('playback-processor', PlaybackProcessor);
