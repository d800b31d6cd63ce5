"""The two queues between the session's tasks, each with a bound and a policy."""

import asyncio
import logging
from collections import deque
from typing import Any, Generic, TypeVar

from schemas import ServerMessage, TranscriptMessage

logger = logging.getLogger(__name__)

Event = TypeVar("Event")
Item = TypeVar("Item")


class SenderMailbox(Generic[Event, Item]):
    """Browser input for the upstream sender, plus the link's own events for it.

    Input is bounded by count and a full mailbox blocks the browser reader (backpressure: the
    socket stops being read and TCP pushes back). Events (a connection up or down, a handle, a
    tool response) come from the receiver a few at a time; they never wait and go first."""

    def __init__(self, max_items: int) -> None:
        self._max = max_items
        self._items: deque[Item] = deque()
        self._events: deque[Event] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    async def put(self, item: Item) -> None:
        while len(self._items) >= self._max:
            self._writable.clear()
            await self._writable.wait()
        self._items.append(item)
        self._readable.set()

    def full(self) -> bool:
        return len(self._items) >= self._max

    def __len__(self) -> int:
        return len(self._items)

    def post(self, event: Event) -> None:
        self._events.append(event)
        self._readable.set()

    async def get(self) -> Event | Item:
        while not (self._events or self._items):
            self._readable.clear()
            await self._readable.wait()
        if self._events:
            return self._events.popleft()
        item = self._items.popleft()
        self._writable.set()
        return item

    def join_queued(self, first: bytes, max_bytes: int) -> bytes:
        """`first` with the audio queued right behind it, up to `max_bytes`: one upstream message
        instead of several when the browser sends small frames or the sender fell behind.
        Nothing waits for more; with an event pending, the event goes first as usual."""
        if self._events or not self._items or not isinstance(self._items[0], bytes):
            return first
        joined, _ = _join_front(self._items, first, max_bytes)
        self._writable.set()
        return joined


# About 20 s of the model's 24 kHz PCM16: it arrives faster than real time, so this absorbs a
# whole reply while the browser plays it; a full lane blocks the upstream reader.
MAX_AUDIO_BYTES = 20 * 24000 * 2
# 200 ms of model audio: the most one browser frame carries, so a barge-in still stops playback
# within what the page has already been sent.
JOIN_AUDIO_BYTES = 24000 * 2 // 5
# Messages are small and the writer sends them first, so this fills only when the browser stops
# reading; then the oldest transcript pieces are dropped (the record and errors never are).
MAX_MESSAGES = 1024


class BrowserOutbox:
    """What goes to the browser: messages never wait behind audio; audio is bounded in bytes.

    The one exception is the end of a turn, which follows that turn's audio: a page that stops
    showing "speaking" at `turn_complete` must not get it before the last of the reply."""

    def __init__(self) -> None:
        self._audio: deque[bytes | ServerMessage] = deque()
        self._audio_bytes = 0
        self._messages: deque[ServerMessage] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._dropped_pieces = 0

    async def audio(self, data: bytes) -> None:
        while self._audio_bytes >= MAX_AUDIO_BYTES:
            self._writable.clear()
            await self._writable.wait()
        self._audio.append(data)
        self._audio_bytes += len(data)
        self._readable.set()

    def after_audio(self, message: ServerMessage) -> None:
        self._audio.append(message)
        self._readable.set()

    def message(self, message: ServerMessage) -> None:
        if len(self._messages) >= MAX_MESSAGES:
            self._drop_a_transcript_piece()
        self._messages.append(message)
        self._readable.set()

    def _drop_a_transcript_piece(self) -> None:
        for queued in self._messages:
            if isinstance(queued, TranscriptMessage):
                self._messages.remove(queued)
                if not self._dropped_pieces:
                    logger.warning("the browser is not reading: dropping transcript pieces")
                self._dropped_pieces += 1
                return

    def drop_audio(self) -> int:
        dropped = self._audio_bytes
        kept = [item for item in self._audio if not isinstance(item, bytes)]
        self._audio.clear()
        self._audio.extend(kept)
        self._audio_bytes = 0
        self._writable.set()
        return dropped

    @property
    def audio_bytes(self) -> int:
        return self._audio_bytes

    @property
    def queued_messages(self) -> int:
        return len(self._messages)

    async def get(self) -> bytes | ServerMessage:
        while not (self._messages or self._audio):
            self._readable.clear()
            await self._readable.wait()
        if self._messages:
            return self._messages.popleft()
        item = self._audio.popleft()
        if isinstance(item, bytes):
            # Audio queued behind it goes in the same frame (up to JOIN_AUDIO_BYTES): the model's
            # chunks arrive faster than real time, so a browser frame per chunk is needless work.
            item, size = _join_front(self._audio, item, JOIN_AUDIO_BYTES)
            self._audio_bytes -= size
            if self._audio_bytes < MAX_AUDIO_BYTES:
                self._writable.set()
        return item


def _join_front(queue: deque[Any], first: bytes, max_bytes: int) -> tuple[bytes, int]:
    """`first` and the bytes at the front of `queue` (taken off it) while they fit in `max_bytes`."""
    chunks = [first]
    size = len(first)
    while queue and isinstance(head := queue[0], bytes) and size + len(head) <= max_bytes:
        chunks.append(head)
        size += len(head)
        queue.popleft()
    return (first if len(chunks) == 1 else b"".join(chunks)), size
