// The page's audio: one AudioContext holding a capture worklet (microphone -> 16 kHz PCM16
// frames of 100 ms) and a playback worklet (24 kHz PCM16 from the server -> speakers).

const MICROPHONE = {
  audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
};

export class AudioEngine {
  constructor({ onFrame, onLevel, onPlayback }) {
    this.handlers = { onFrame, onLevel, onPlayback };
    this.context = null;
    this.stream = null;
    this.source = null;
  }

  get sampleRate() {
    return this.context?.sampleRate ?? null;
  }

  get micOn() {
    return this.stream !== null;
  }

  // Call from a click handler: browsers only let a page start audio after a user gesture.
  async open() {
    if (!this.context) {
      this.context = new AudioContext({ latencyHint: 'interactive' });
      this.ready = this.#build(this.context);
    }
    await this.context.resume();
    await this.ready;
  }

  async #build(context) {
    await Promise.all([
      context.audioWorklet.addModule(new URL('./capture-worklet.js', import.meta.url)),
      context.audioWorklet.addModule(new URL('./playback-worklet.js', import.meta.url)),
    ]);
    // No outputs: the capture node is pulled by the graph without reaching the speakers.
    this.capture = new AudioWorkletNode(context, 'capture-processor', {
      numberOfInputs: 1,
      numberOfOutputs: 0,
      channelCount: 1,
      channelCountMode: 'explicit',
    });
    this.capture.port.onmessage = ({ data }) => {
      if (data.type === 'frame') this.handlers.onFrame(data.buffer);
      else if (data.type === 'level') this.handlers.onLevel(data.rms);
    };
    this.playback = new AudioWorkletNode(context, 'playback-processor', {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [1],
    });
    this.playback.port.onmessage = ({ data }) => this.handlers.onPlayback(data);
    this.playback.connect(context.destination);
  }

  async startMic() {
    if (this.stream) return;
    if (!navigator.mediaDevices?.getUserMedia) {
      throw Object.assign(new Error('getUserMedia is unavailable'), { name: 'NotSupportedError' });
    }
    const stream = await navigator.mediaDevices.getUserMedia(MICROPHONE);
    this.stream = stream;
    this.source = this.context.createMediaStreamSource(stream);
    this.capture.port.postMessage({ type: 'reset' });
    this.source.connect(this.capture);
  }

  stopMic() {
    this.source?.disconnect();
    this.stream?.getTracks().forEach((track) => track.stop());
    this.source = null;
    this.stream = null;
    this.handlers.onLevel(0);
  }

  play(buffer) {
    this.playback?.port.postMessage({ type: 'pcm', buffer }, [buffer]);
  }

  flush() {
    this.playback?.port.postMessage({ type: 'flush' });
  }
}
