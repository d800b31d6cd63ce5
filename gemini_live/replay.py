"""Patient audio across an upstream reconnect: what waits for the upstream, and what a resumed
session has not heard yet."""

from collections import deque
from typing import Literal

from gemini_live.browser_input import BrowserInput


def _size(item: BrowserInput) -> int:
    return len(item) if isinstance(item, bytes) else 0


class _ByteBoundedQueue:
    def __init__(self) -> None:
        self.items: deque[BrowserInput] = deque()
        self.bytes = 0

    def append(self, item: BrowserInput) -> None:
        self.items.append(item)
        self.bytes += _size(item)

    def popleft(self) -> BrowserInput:
        item = self.items.popleft()
        self.bytes -= _size(item)
        return item

    def clear(self) -> None:
        self.items.clear()
        self.bytes = 0


class ResumableAudio:
    """`held`: input that arrived while no upstream was ready, up to `hold_bytes`; the rest is
    dropped. `unheard`: input sent since the newest resumption handle (up to `replay_bytes`),
    which the state that handle restores does not contain, so it is sent again on resuming."""

    def __init__(self, *, hold_bytes: int, replay_bytes: int) -> None:
        self._hold_bytes = hold_bytes
        self._replay_bytes = replay_bytes
        self._held = _ByteBoundedQueue()
        self._unheard = _ByteBoundedQueue()
        self._dropping = False

    def hold(self, item: BrowserInput) -> Literal["held", "dropped", "first_drop"]:
        """Keep `item` for later if it fits; `first_drop` is the moment to tell the patient."""
        if self._held.bytes + _size(item) <= self._hold_bytes:
            self._held.append(item)
            return "held"
        if self._dropping:
            return "dropped"
        self._dropping = True
        return "first_drop"

    @property
    def waiting(self) -> BrowserInput | None:
        return self._held.items[0] if self._held.items else None

    def sent_waiting(self) -> None:
        self.sent(self._held.popleft())
        if not self._held.items:
            self._dropping = False

    def sent(self, item: BrowserInput) -> None:
        self._unheard.append(item)
        while self._unheard.bytes > self._replay_bytes:
            self._unheard.popleft()

    def handle_updated(self) -> None:
        self._unheard.clear()

    def resume(self) -> None:
        """Put what the resumed state has not heard ahead of anything held."""
        held = list(self._held.items)
        self._held.clear()
        for item in [*self._unheard.items, *held]:
            self._held.append(item)
        self._unheard.clear()
