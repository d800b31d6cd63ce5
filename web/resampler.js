// Streaming sample-rate converter for any pair of integer rates: a Kaiser-windowed sinc
// low-pass, evaluated as a polyphase FIR. Plain ES module with no DOM use, so the same
// code runs in an AudioWorklet (capture and playback) and on a test page.

// 80 dB keeps aliases of loud out-of-band content below the 16-bit noise a speech model hears.
const STOPBAND_DB = 80;
// The passband ends at 85% of the lower Nyquist and the stopband starts at that Nyquist, so
// nothing at or above it folds back: 48 kHz -> 16 kHz passes 0-6.8 kHz and stops >= 8 kHz.
const PASSBAND_FRACTION = 0.85;
// Exact phases for ratios such as 160/441 (44.1 kHz -> 16 kHz); odd device rates beyond this
// use the nearest of 512 phases, a timing error below 1/1000 of a sample.
const MAX_PHASES = 512;

function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

function besselI0(x) {
  const q = (x * x) / 4;
  let term = 1;
  let sum = 1;
  for (let k = 1; k < 64 && term > sum * 1e-12; k++) {
    term *= q / (k * k);
    sum += term;
  }
  return sum;
}

function sinc(x) {
  if (x === 0) return 1;
  const px = Math.PI * x;
  return Math.sin(px) / px;
}

// Rows of `taps` coefficients, one per output phase 0..phases (inclusive, so a rounded phase
// of 1.0 needs no special case). Tap k of a row multiplies input sample pos - half + 1 + k.
function designKernel(inRate, outRate, phases) {
  const nyquist = Math.min(inRate, outRate) / 2;
  const passEdge = nyquist * PASSBAND_FRACTION;
  const cutoff = (passEdge + nyquist) / 2 / inRate;
  const transition = (nyquist - passEdge) / inRate;
  const beta = 0.1102 * (STOPBAND_DB - 8.7);
  const length = Math.ceil((STOPBAND_DB - 7.95) / (2.285 * 2 * Math.PI * transition)) + 1;
  const half = Math.ceil(length / 2);
  const taps = 2 * half;
  const table = new Float32Array((phases + 1) * taps);
  const i0Beta = besselI0(beta);
  for (let p = 0; p <= phases; p++) {
    const frac = p / phases;
    let sum = 0;
    for (let k = 0; k < taps; k++) {
      const t = frac - (k - half + 1);
      const ratio = t / half;
      const window = Math.abs(ratio) >= 1 ? 0 : besselI0(beta * Math.sqrt(1 - ratio * ratio)) / i0Beta;
      const value = 2 * cutoff * sinc(2 * cutoff * t) * window;
      table[p * taps + k] = value;
      sum += value;
    }
    // Unity gain at DC for every phase, so no phase-dependent ripple in level.
    for (let k = 0; k < taps; k++) table[p * taps + k] /= sum;
  }
  return { table, taps, half };
}

export class Resampler {
  constructor(inRate, outRate) {
    if (!Number.isInteger(inRate) || !Number.isInteger(outRate) || inRate <= 0 || outRate <= 0) {
      throw new RangeError(`sample rates must be positive integers, got ${inRate} and ${outRate}`);
    }
    this.inRate = inRate;
    this.outRate = outRate;
    const divisor = gcd(inRate, outRate);
    this.up = outRate / divisor;
    this.down = inRate / divisor;
    this.phases = Math.min(this.up, MAX_PHASES);
    Object.assign(this, designKernel(inRate, outRate, this.phases));
    this.buffer = new Float32Array(this.taps + 4096);
    this.output = new Float32Array(4096);
    this.reset();
  }

  // Input samples of look-ahead the filter needs before it can emit an output sample.
  get latencySamples() {
    return this.half;
  }

  reset() {
    // History starts as silence, so the first output lines up with the first input sample.
    this.buffer.fill(0);
    this.length = this.half - 1;
    this.pos = this.half - 1;
    this.phase = 0;
  }

  // Returns a view of an internal buffer, valid until the next call.
  process(input) {
    this.#reserveInput(input.length);
    this.buffer.set(input, this.length);
    this.length += input.length;
    this.#reserveOutput(Math.ceil(((this.length - this.pos) * this.up) / this.down) + 2);

    const { buffer, output, table, taps, half, up, down, phases } = this;
    let { pos, phase } = this;
    let count = 0;
    while (pos + half < this.length) {
      const row = phases === up ? phase : Math.round((phase * phases) / up);
      const base = row * taps;
      const start = pos - half + 1;
      let acc = 0;
      for (let k = 0; k < taps; k++) acc += buffer[start + k] * table[base + k];
      output[count++] = acc;
      phase += down;
      if (phase >= up) {
        const step = Math.floor(phase / up);
        pos += step;
        phase -= step * up;
      }
    }
    this.phase = phase;

    const consumed = pos - (half - 1);
    if (consumed > 0) {
      buffer.copyWithin(0, consumed, this.length);
      this.length -= consumed;
      pos -= consumed;
    }
    this.pos = pos;
    return output.subarray(0, count);
  }

  #reserveInput(extra) {
    if (this.length + extra <= this.buffer.length) return;
    const grown = new Float32Array(this.length + extra + this.taps);
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
  }

  #reserveOutput(size) {
    if (size > this.output.length) this.output = new Float32Array(size);
  }
}
