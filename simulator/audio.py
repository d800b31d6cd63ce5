"""PCM16 audio arithmetic: a synthetic voice and a band-limited resampler."""

import math
import zlib
from functools import cache

import numpy as np
import numpy.typing as npt

MODEL_RATE = 24_000
PATIENT_RATE = 16_000
SECONDS_PER_CHAR = 0.065
ASSISTANT_PITCH_HZ = 118.0
PATIENT_PITCH_HZ = 205.0

Samples = npt.NDArray[np.float64]

_SYLLABLE_S = 0.19
_PAUSE_S = 0.12
# (F1, F2, F3) in Hz, roughly the vowels of "father", "see", "go", "but", "bed".
_VOWELS = (
    (730.0, 1090.0, 2440.0),
    (270.0, 2290.0, 3010.0),
    (500.0, 900.0, 2400.0),
    (640.0, 1190.0, 2390.0),
    (530.0, 1840.0, 2480.0),
)
_FORMANT_GAINS = (1.0, 0.55, 0.25)
_FORMANT_BANDWIDTH_HZ = (90.0, 110.0, 160.0)


def speech_seconds(text: str) -> float:
    return max(len(text), 1) * SECONDS_PER_CHAR


@cache
def synth_voice(text: str, rate: int, pitch_hz: float) -> bytes:
    """A voiced buzz with vowel formants and syllables, as long as `text` would take to say."""
    total = int(speech_seconds(text) * rate)
    out = np.zeros(total)
    rng = np.random.default_rng(zlib.crc32(text.encode()))
    syllable = int(_SYLLABLE_S * rate)
    for index, start in enumerate(range(0, total, syllable)):
        length = min(syllable, total - start)
        # A gentle falling intonation across the utterance, with a little wobble per syllable.
        f0 = pitch_hz * (1.08 - 0.16 * start / max(total, 1)) * (1 + 0.03 * np.sin(index))
        pulses = np.zeros(length)
        pulses[np.arange(0.0, length, rate / f0).astype(int)] = 1.0
        vowel = _VOWELS[int(rng.integers(len(_VOWELS)))]
        voiced = np.convolve(pulses, _formant_grain(vowel, rate))[:length]
        envelope = np.sin(np.pi * (np.arange(length) + 0.5) / length) ** 0.7
        out[start : start + length] = voiced * envelope
    _insert_pauses(out, text, rate)
    peak = float(np.max(np.abs(out))) or 1.0
    return to_pcm16(out * (0.45 / peak))


def _insert_pauses(samples: Samples, text: str, rate: int) -> None:
    # Short dips after punctuation; far shorter than the 500 ms that ends a turn.
    pause = int(_PAUSE_S * rate)
    for position, char in enumerate(text):
        if char in ",.;:?!":
            start = int((position + 1) * SECONDS_PER_CHAR * rate)
            samples[start : start + pause] *= 0.0


@cache
def _formant_grain(formants: tuple[float, float, float], rate: int) -> Samples:
    t = np.arange(int(0.025 * rate)) / rate
    grain = np.zeros_like(t)
    for frequency, gain, bandwidth in zip(formants, _FORMANT_GAINS, _FORMANT_BANDWIDTH_HZ, strict=True):
        grain += gain * np.exp(-np.pi * bandwidth * t) * np.sin(2 * np.pi * frequency * t)
    return grain


def to_pcm16(samples: Samples) -> bytes:
    clipped = np.clip(samples, -1.0, 1.0)
    return (clipped * 32767.0).astype("<i2").tobytes()


def from_pcm16(pcm: bytes) -> Samples:
    usable = len(pcm) - len(pcm) % 2
    return np.frombuffer(pcm[:usable], dtype="<i2").astype(np.float64) / 32768.0


def resample(samples: Samples, source_rate: int, target_rate: int) -> Samples:
    """Kaiser-windowed sinc interpolation; the cutoff follows the lower of the two rates."""
    if source_rate == target_rate or samples.size == 0:
        return samples.copy()
    common = math.gcd(source_rate, target_rate)
    up, down = target_rate // common, source_rate // common
    cutoff = min(1.0, up / down) * 0.97
    half_width = int(np.ceil(16 / cutoff))
    offsets = np.arange(-half_width + 1, half_width + 1)
    # Output n sits at source position n*down/up, so only `up` distinct kernels exist.
    distance = (np.arange(up) / up)[:, None] - offsets[None, :]
    kernels = cutoff * np.sinc(cutoff * distance) * _kaiser(distance / half_width)
    out_len = int(round(samples.size * up / down))
    position = np.arange(out_len) * down
    base, phase = position // up, position % up
    padded = np.concatenate([np.zeros(half_width), samples, np.zeros(half_width + 1)])
    out = np.empty(out_len)
    block = 16_384
    for first in range(0, out_len, block):
        rows = slice(first, first + block)
        taps = base[rows, None] + offsets[None, :] + half_width
        out[rows] = np.sum(padded[taps] * kernels[phase[rows]], axis=1)
    return out


def _kaiser(x: Samples, beta: float = 8.6) -> Samples:
    return np.i0(beta * np.sqrt(np.clip(1 - x**2, 0, 1))) / np.i0(beta)
