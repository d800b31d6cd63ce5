// Microphone capture: mono input at the context rate -> 16 kHz PCM16 frames of 100 ms,
// posted to the page as transferable ArrayBuffers, plus a level reading for the meter.
import { floatToPcm16 } from './pcm.js';
import { Resampler } from './resampler.js';

const TARGET_RATE = 16000;
const FRAME_SAMPLES = TARGET_RATE / 10;
const LEVEL_INTERVAL_SECONDS = 0.05;

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.resampler = new Resampler(sampleRate, TARGET_RATE);
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
    this.levelSum = 0;
    this.levelPeak = 0;
    this.levelCount = 0;
    this.levelEvery = Math.round(LEVEL_INTERVAL_SECONDS * sampleRate);
    this.port.onmessage = ({ data }) => {
      // A new microphone stream must not be glued onto the tail of the previous one.
      if (data.type === 'reset') {
        this.resampler.reset();
        this.filled = 0;
      }
    };
  }

  process(inputs) {
    const channel = inputs[0]?.[0];
    if (!channel) return true;
    this.#measure(channel);
    const resampled = this.resampler.process(channel);
    for (let i = 0; i < resampled.length; i++) {
      this.frame[this.filled++] = floatToPcm16(resampled[i]);
      if (this.filled === FRAME_SAMPLES) {
        this.port.postMessage({ type: 'frame', buffer: this.frame.buffer }, [this.frame.buffer]);
        this.frame = new Int16Array(FRAME_SAMPLES);
        this.filled = 0;
      }
    }
    return true;
  }

  #measure(channel) {
    for (let i = 0; i < channel.length; i++) {
      const v = channel[i];
      this.levelSum += v * v;
      const magnitude = Math.abs(v);
      if (magnitude > this.levelPeak) this.levelPeak = magnitude;
    }
    this.levelCount += channel.length;
    if (this.levelCount >= this.levelEvery) {
      const rms = Math.sqrt(this.levelSum / this.levelCount);
      this.port.postMessage({ type: 'level', rms, peak: this.levelPeak });
      this.levelSum = 0;
      this.levelPeak = 0;
      this.levelCount = 0;
    }
  }
}

registerProcessor('capture-processor', CaptureProcessor);
