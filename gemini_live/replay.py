"""What goes up to the Live session, and what a reconnect must send again.

Only the link's sender task touches a `ReplayBuffer`; the receiver tells it about new handles
and reconnects through the sender's mailbox, so no two tasks mutate it."""

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from google.genai import types

from gemini_live.browser_input import AudioStreamEnd


@dataclass(frozen=True)
class ToolResponse:
    responses: tuple[types.FunctionResponse, ...]


@dataclass(frozen=True)
class ClientTurn:
    turns: tuple[types.Content, ...]


Outgoing = bytes | AudioStreamEnd | ToolResponse | ClientTurn


def _size(item: Outgoing) -> int:
    return len(item) if isinstance(item, bytes) else 0


class _Sized:
    def __init__(self) -> None:
        self.items: deque[tuple[int, Outgoing]] = deque()
        self.bytes = 0

    def append(self, index: int, item: Outgoing) -> None:
        self.items.append((index, item))
        self.bytes += _size(item)

    def appendleft(self, index: int, item: Outgoing) -> None:
        self.items.appendleft((index, item))
        self.bytes += _size(item)

    def popleft(self) -> Outgoing:
        _, item = self.items.popleft()
        self.bytes -= _size(item)
        return item

    def clear(self) -> list[Outgoing]:
        items = [item for _, item in self.items]
        self.items.clear()
        self.bytes = 0
        return items


class ReplayBuffer:
    """`held`: what arrived while no connection was ready (audio up to `hold_bytes`, the rest
    dropped; tool responses and text turns always kept). `unconfirmed`: what was sent on the
    current connection and is not yet in a resumption state the upstream reported (up to
    `replay_bytes` of audio), sent again first after resuming."""

    def __init__(self, *, hold_bytes: int, replay_bytes: int) -> None:
        self._hold_bytes = hold_bytes
        self._replay_bytes = replay_bytes
        self._held = _Sized()
        self._unconfirmed = _Sized()
        self._dropping = False

    def hold(self, item: Outgoing) -> Literal["held", "dropped", "first_drop"]:
        """Keep `item` for the next connection if it fits; `first_drop` is when to tell the patient."""
        if not isinstance(item, bytes) or self._held.bytes + len(item) <= self._hold_bytes:
            self._held.append(-1, item)
            return "held"
        if self._dropping:
            return "dropped"
        self._dropping = True
        return "first_drop"

    def hold_again(self, item: Outgoing) -> None:
        """A send that failed: the item goes back to the front, ahead of anything held."""
        self._held.appendleft(-1, item)

    def take_held(self) -> Outgoing | None:
        if not self._held.items:
            self._dropping = False
            return None
        return self._held.popleft()

    @property
    def held_bytes(self) -> int:
        return self._held.bytes

    def sent(self, index: int, item: Outgoing) -> None:
        self._unconfirmed.append(index, item)
        while self._unconfirmed.bytes > self._replay_bytes:
            self._unconfirmed.popleft()

    def consumed(self, index: int) -> None:
        """The upstream's state includes every message up to `index` on this connection."""
        while self._unconfirmed.items and self._unconfirmed.items[0][0] <= index:
            self._unconfirmed.popleft()

    def handle_renewed(self) -> None:
        """A handle without a consumed index: assume it covers everything sent so far."""
        self._unconfirmed.clear()

    def resumed(self) -> None:
        """A resumed connection: what its state has not heard goes first, then what was held."""
        self._requeue(self._unconfirmed.clear())

    def started_fresh(self) -> None:
        """A new conversation upstream: replies to calls it never made would be refused, so only
        the patient's audio and end-of-stream marks carry over."""
        self._unconfirmed.clear()
        kept = [item for item in self._held.clear() if isinstance(item, bytes | AudioStreamEnd)]
        self._requeue(kept)

    def _requeue(self, first: Iterable[Outgoing]) -> None:
        rest = self._held.clear()
        for item in [*first, *rest]:
            self._held.append(-1, item)
