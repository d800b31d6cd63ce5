"""Energy voice-activity detection over PCM16, timed by the audio itself, not the clock."""

from enum import Enum

import numpy as np

FRAME_MS = 20
# Three voiced frames in a row start speech, so a click or a pop does not barge in.
MIN_SPEECH_MS = 60


class VadEvent(Enum):
    SPEECH_STARTED = "speech_started"
    SPEECH_ENDED = "speech_ended"


class VoiceActivityDetector:
    def __init__(self, rate: int, threshold: float, silence_ms: int) -> None:
        self.rate = rate
        self._threshold = threshold
        self._frame_bytes = rate * FRAME_MS // 1000 * 2
        self._speech_frames_needed = MIN_SPEECH_MS // FRAME_MS
        self._silence_frames_needed = max(1, silence_ms // FRAME_MS)
        self._pending = b""
        self._voiced_run = 0
        self._silent_run = 0
        self.in_speech = False
        self.frames_seen = 0

    @property
    def audio_seconds(self) -> float:
        return self.frames_seen * FRAME_MS / 1000

    def feed(self, pcm: bytes) -> list[VadEvent]:
        data = self._pending + pcm
        whole = len(data) - len(data) % self._frame_bytes
        self._pending = data[whole:]
        if whole == 0:
            return []
        frames = np.frombuffer(data[:whole], dtype="<i2").astype(np.float64)
        rms = np.sqrt(np.mean(frames.reshape(-1, self._frame_bytes // 2) ** 2, axis=1))
        events: list[VadEvent] = []
        for level in rms:
            self.frames_seen += 1
            event = self._step(bool(level >= self._threshold))
            if event is not None:
                events.append(event)
        return events

    def end_of_stream(self) -> bool:
        """Ends a turn in progress; True if there was one."""
        self._pending = b""
        self._voiced_run = 0
        self._silent_run = 0
        was_speaking = self.in_speech
        self.in_speech = False
        return was_speaking

    def _step(self, voiced: bool) -> VadEvent | None:
        if voiced:
            self._voiced_run += 1
            self._silent_run = 0
        else:
            self._voiced_run = 0
            self._silent_run += 1
        if not self.in_speech and self._voiced_run >= self._speech_frames_needed:
            self.in_speech = True
            return VadEvent.SPEECH_STARTED
        if self.in_speech and self._silent_run >= self._silence_frames_needed:
            self.in_speech = False
            return VadEvent.SPEECH_ENDED
        return None
