// PCM16 little-endian <-> float conversion shared by the worklets.

export function floatToPcm16(value) {
  const clamped = value > 1 ? 1 : value < -1 ? -1 : value;
  return clamped < 0 ? Math.round(clamped * 0x8000) : Math.round(clamped * 0x7fff);
}

export function pcm16ToFloat(sample) {
  return sample / 0x8000;
}
