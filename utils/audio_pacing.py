"""Paces one session's microphone audio to about real time before it goes upstream.

Upstream audio is billed by the second, and a browser can send silence far faster than it can
be spoken. A token bucket counted in audio seconds lets a short burst through (a page catching up
after a hiccup), then at most `rate` × real time; the rest is dropped, never queued. Frames under
`min_frame_seconds` are joined so a stream of tiny frames is not one upstream message each.
"""

import time
from collections.abc import Callable
from typing import NamedTuple

from utils.audio_processing import bytes_per_second

TOO_FAST_MESSAGE = "Audio is arriving faster than real time; the excess was not heard."


class PacedAudio(NamedTuple):
    # What to send upstream now (None: nothing yet, or all of it was dropped).
    audio: bytes | None
    # True on the first drop of a burst: tell the page once, not for every frame.
    too_fast: bool = False


class AudioPacer:
    def __init__(
        self,
        *,
        sample_rate: int = 16000,
        rate: float = 1.2,
        burst_seconds: float = 0.5,
        min_frame_seconds: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bytes_per_second = bytes_per_second(sample_rate)
        self._rate = rate
        # A burst is `burst_seconds` of wall time at the allowed rate (0.6 s of audio at 1.2x).
        self._capacity = burst_seconds * max(1.0, rate)
        self._min_bytes = int(min_frame_seconds * self._bytes_per_second) // 2 * 2
        self._clock = clock
        self._tokens = self._capacity
        self._last = clock()
        self._pending = bytearray()
        self._dropping = False
        self.dropped_seconds = 0.0

    def admit(self, frame: bytes) -> PacedAudio:
        if not self._pending and len(frame) >= self._min_bytes:
            return self._spend(frame)  # the usual frame: nothing to join, so no copy
        self._pending += frame
        if len(self._pending) < self._min_bytes:
            return PacedAudio(None)
        return self._spend(self._take())

    def flush(self) -> PacedAudio:
        """What is still being joined, e.g. when the microphone stops."""
        return self._spend(self._take()) if self._pending else PacedAudio(None)

    def _take(self) -> bytes:
        chunk = bytes(self._pending)
        self._pending.clear()
        return chunk

    def _spend(self, chunk: bytes) -> PacedAudio:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= self._capacity:
            # The sender slowed down long enough to refill the bucket: a later excess is news.
            self._dropping = False
        seconds = len(chunk) / self._bytes_per_second
        if seconds <= self._tokens:
            self._tokens -= seconds
            return PacedAudio(chunk)
        self.dropped_seconds += seconds
        first = not self._dropping
        self._dropping = True
        return PacedAudio(None, too_fast=first)
