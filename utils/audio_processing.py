"""Arithmetic on raw PCM16 audio: format checks, duration, loudness and framing."""

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

INPUT_RATE = 16000
OUTPUT_RATE = 24000
INPUT_MIME = f"audio/pcm;rate={INPUT_RATE}"
_PCM16 = np.dtype("<i2")


def bytes_per_second(rate: int, *, channels: int = 1, sample_width: int = 2) -> int:
    return rate * channels * sample_width


class AudioFormatError(ValueError):
    pass


class AudioProcessor:
    def __init__(
        self,
        sample_rate: int = INPUT_RATE,
        channels: int = 1,
        sample_width: int = 2,
        *,
        max_chunk_bytes: int | None = None,
    ) -> None:
        if sample_width != _PCM16.itemsize:
            raise ValueError("only 16-bit PCM (sample_width=2) is supported")
        if sample_rate <= 0 or channels <= 0:
            raise ValueError("sample_rate and channels must be positive")
        if max_chunk_bytes is not None and max_chunk_bytes <= 0:
            raise ValueError("max_chunk_bytes must be positive")
        self.sample_rate = sample_rate
        self.channels = channels
        self.sample_width = sample_width
        self.max_chunk_bytes = max_chunk_bytes
        self.frame_bytes = channels * sample_width

    def validate_chunk(self, data: bytes) -> None:
        if not data:
            raise AudioFormatError("audio chunk is empty")
        if self.max_chunk_bytes is not None and len(data) > self.max_chunk_bytes:
            raise AudioFormatError(f"audio chunk is {len(data)} bytes; the limit is {self.max_chunk_bytes}")
        self._check_aligned(data)

    def _check_aligned(self, data: bytes) -> None:
        if len(data) % self.frame_bytes:
            raise AudioFormatError(
                f"audio chunk is {len(data)} bytes, not a whole number of "
                f"{self.frame_bytes}-byte PCM16 frames"
            )

    def _samples(self, data: bytes) -> npt.NDArray[np.int16]:
        self._check_aligned(data)
        return np.frombuffer(data, dtype=_PCM16)

    def duration_seconds(self, data: bytes) -> float:
        self._check_aligned(data)
        return len(data) / bytes_per_second(
            self.sample_rate, channels=self.channels, sample_width=self.sample_width
        )

    def rms(self, data: bytes) -> float:
        samples = self._samples(data)
        if samples.size == 0:
            return 0.0
        # float64 before squaring: int16 squares overflow.
        as_float = samples.astype(np.float64)
        return float(np.sqrt(np.dot(as_float, as_float) / samples.size))

    def is_silence(self, data: bytes, threshold: float = 500.0) -> bool:
        return self.rms(data) < threshold

    def frames(self, data: bytes, frame_ms: int) -> Iterator[bytes]:
        if frame_ms <= 0:
            raise ValueError("frame_ms must be positive")
        if (self.sample_rate * frame_ms) % 1000:
            raise ValueError(f"{frame_ms} ms is not a whole number of samples at {self.sample_rate} Hz")
        self._check_aligned(data)
        size = self.sample_rate * frame_ms // 1000 * self.frame_bytes
        # Checked above, not lazily; the last frame is short rather than dropped.
        return (data[start : start + size] for start in range(0, len(data), size))
