"""The only owner of the Live connection: connect, reconnect, handles, held and replayed input.

Two tasks run here. The receiver connects, reads, and reconnects; the sender is the only one that
writes to the connection and the only one that touches the replay buffer. The receiver tells
the sender about connections and handles through the sender's mailbox."""

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol

from google.genai import errors, types
from websockets.exceptions import InvalidStatus, WebSocketException

from gemini_live.browser_input import AudioStreamEnd
from gemini_live.queues import SenderMailbox
from gemini_live.records import SessionRecords
from gemini_live.replay import ClientTurn, Outgoing, ReplayBuffer, ToolResponse
from schemas import ErrorCode, ErrorMessage, SessionState
from services import metrics
from services.gemini_client import LiveConnector, LiveUpstream
from services.live_socket import ModelAudio
from services.storage.resumption import RestoredIntake
from utils.audio_processing import INPUT_MIME, bytes_per_second

logger = logging.getLogger(__name__)

# 5 chunks of 100 ms: enough to absorb jitter, and a stalled upstream pushes back on the
# browser within half a second because the reader blocks on a full mailbox.
INBOUND_CHUNKS = 5
# Audio queued in the mailbox is sent as one message of up to 200 ms (browser frames are 100 ms;
# smaller ones, or a backlog, are joined without waiting for more).
JOIN_INPUT_BYTES = int(0.2 * bytes_per_second(16000))
# While the upstream reconnects, the first 2 s of the patient's speech are held and sent once it
# is back; anything beyond is dropped with a notice rather than delayed further.
HOLD_BYTES = int(2.0 * bytes_per_second(16000))
# Input the upstream has not confirmed (30 s at most) is sent again after resuming.
REPLAY_BYTES = int(30.0 * bytes_per_second(16000))
# A session that has never reached the upstream gives up after this long.
FIRST_CONNECT_SECONDS = 3.0
# A reconnect attempt (handshake and setup) that takes longer than this is abandoned.
CONNECT_SECONDS = 10.0
# On goAway, the reply in progress may finish until this long before the connection is cut.
GO_AWAY_MARGIN_SECONDS = 1.0
_AUTH_CODES = {1008, 401, 403}
_REFUSED_CODES = {1007, 400, 404}

UpstreamOutcome = Literal["unknown", "ok", "unreachable", "auth_failed"]


@dataclass
class UpstreamHealth:
    """The last connect outcome of any session, for /health and GET /."""

    outcome: UpstreamOutcome = "unknown"
    at: datetime | None = None

    def record(self, outcome: UpstreamOutcome) -> None:
        self.outcome = outcome
        self.at = datetime.now(UTC)

    def as_dict(self) -> dict[str, str | None]:
        return {"last_connect": self.outcome, "last_connect_at": self.at.isoformat() if self.at else None}


class SessionEnded(Exception):
    def __init__(
        self,
        reason: str,
        *,
        close_code: int = 1000,
        error: ErrorMessage | None = None,
        resume: RestoredIntake | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code
        self.error = error
        # Set when the browser's first message resumed an earlier intake: the socket carries on with it.
        self.resume = resume


def upstream_failure(code: ErrorCode, message: str) -> SessionEnded:
    return SessionEnded("upstream_failed", close_code=1011, error=ErrorMessage(code=code, message=message))


class LinkListener(Protocol):
    """What the session does with what the link sees."""

    async def on_model_audio(self, data: bytes) -> None: ...

    async def on_message(self, message: types.LiveServerMessage) -> None: ...

    def on_link_state(self, state: SessionState) -> None: ...

    def opening_turns(self) -> list[types.Content]: ...

    def on_audio_dropped(self) -> None: ...

    def on_handle(self, handle: str) -> None: ...


@dataclass(frozen=True)
class _Connected:
    upstream: LiveUpstream
    resumed: bool
    first: ClientTurn | None


@dataclass(frozen=True)
class _Disconnected:
    pass


@dataclass(frozen=True)
class _Consumed:
    index: int


@dataclass(frozen=True)
class _HandleRenewed:
    pass


LinkEvent = _Connected | _Disconnected | _Consumed | _HandleRenewed | ToolResponse | ClientTurn


def _seconds(duration: str | None) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", duration or "")
    return float(match.group(1)) if match else 0.0


@dataclass
class UpstreamLink:
    connector: LiveConnector
    config_for: Callable[[str | None], types.LiveConnectConfig]
    listener: LinkListener
    records: SessionRecords
    health: UpstreamHealth
    reconnect_attempts: int
    mailbox: SenderMailbox[LinkEvent, Outgoing] = field(default_factory=lambda: SenderMailbox(INBOUND_CHUNKS))
    handle: str | None = None
    connected: bool = False
    # A model reply is being generated (audio or its transcript) and has not ended yet.
    in_reply: bool = False
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    # When the browser frame being timed was handed over (0.0: none being timed).
    _probe_at: float = 0.0

    def __post_init__(self) -> None:
        self._replay = ReplayBuffer(hold_bytes=HOLD_BYTES, replay_bytes=REPLAY_BYTES)
        self._connected_once = False

    async def put(self, item: bytes | AudioStreamEnd) -> None:
        # Only a frame that finds the mailbox empty is timed: it is the next one the sender sends.
        if not self._probe_at and not len(self.mailbox):
            self._probe_at = time.perf_counter()
        await self.mailbox.put(item)

    def send_tool_response(self, *responses: types.FunctionResponse) -> None:
        self.mailbox.post(ToolResponse(responses))

    def send_client_turn(self, *turns: types.Content) -> None:
        self.mailbox.post(ClientTurn(turns))

    async def run_sender(self) -> None:
        upstream: LiveUpstream | None = None
        index = -1
        while True:
            item = await self.mailbox.get()
            match item:
                case _Connected():
                    upstream, index = item.upstream, -1
                    if item.resumed:
                        self._replay.resumed()
                    else:
                        self._replay.started_fresh()
                    if item.first is not None:
                        self._replay.hold_again(item.first)
                    while upstream is not None and (held := self._replay.take_held()) is not None:
                        if await self._send(upstream, held):
                            index += 1
                            self._replay.sent(index, held)
                        else:
                            self._replay.hold_again(held)
                            upstream = None
                case _Disconnected():
                    upstream = None
                case _Consumed():
                    self._replay.consumed(item.index)
                case _HandleRenewed():
                    self._replay.handle_renewed()
                case _ if upstream is None:
                    self._hold(item)
                case _:
                    if isinstance(item, bytes):
                        item = self.mailbox.join_queued(item, JOIN_INPUT_BYTES)
                    if await self._send(upstream, item):
                        index += 1
                        self._replay.sent(index, item)
                        if isinstance(item, bytes):
                            self._audio_sent()
                    else:
                        # The receiver sees the same broken connection and reconnects.
                        self._replay.hold_again(item)
                        upstream = None

    def _audio_sent(self) -> None:
        metrics.FRAMES_UP.inc()
        if self._probe_at:
            metrics.RELAY_UP.observe(time.perf_counter() - self._probe_at)
            self._probe_at = 0.0

    def _hold(self, item: Outgoing) -> None:
        self._probe_at = 0.0
        held = self._replay.hold(item)
        if held != "held" and isinstance(item, bytes):
            metrics.DROPPED_RECONNECT.inc(len(item))
        if held == "first_drop":
            self.listener.on_audio_dropped()

    @staticmethod
    async def _send(upstream: LiveUpstream, item: Outgoing) -> bool:
        try:
            match item:
                case bytes():
                    await upstream.send_audio(item, INPUT_MIME)
                case AudioStreamEnd():
                    await upstream.send_audio_stream_end()
                case ToolResponse():
                    await upstream.send_tool_response(function_responses=list(item.responses))
                case ClientTurn():
                    turns: list[types.Content | types.ContentDict] = list(item.turns)
                    await upstream.send_client_content(turns=turns, turn_complete=True)
        except (errors.APIError, WebSocketException, OSError):
            return False
        return True

    async def run_receiver(self) -> None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + FIRST_CONNECT_SECONDS
        failures = 0
        while True:
            self.listener.on_link_state("reconnecting" if self._connected_once else "connecting")
            handle_before = self.handle
            limit = CONNECT_SECONDS if self._connected_once else max(0.1, give_up_at - loop.time())
            try:
                why = await self._connect_and_pump(handle_before, limit)
            except errors.APIError as exc:
                why = f"closed ({exc.code})"
                if exc.code in _REFUSED_CODES and handle_before is not None:
                    # An expired or unknown handle: start a new upstream conversation that is
                    # given the conversation so far, rather than ending the patient's intake.
                    self.handle = None
                    self.records.event("resume_refused", code=exc.code)
                    metrics.RECONNECTS.labels("resume_refused").inc()
                    logger.warning("upstream refused to resume (%s); starting afresh", exc.code)
                    continue
                if exc.code in _AUTH_CODES or exc.code in _REFUSED_CODES:
                    if exc.code in _AUTH_CODES:
                        self.health.record("auth_failed")
                    raise upstream_failure("upstream_auth", _refusal_text(exc.code)) from exc
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in _AUTH_CODES or status in _REFUSED_CODES:
                    self.health.record("auth_failed")
                    raise upstream_failure(
                        "upstream_auth", f"The assistant service refused the connection ({status})."
                    ) from exc
                why = f"handshake failed ({status})"
            except (TimeoutError, WebSocketException, OSError) as exc:
                why = f"unreachable ({type(exc).__name__})"
                if not self._connected_once:
                    self.health.record("unreachable")
            self.records.event("upstream_lost", why=why)
            if self._connected_once:
                metrics.RECONNECTS.labels(metrics.reconnect_cause(why)).inc()
            logger.warning("upstream %s", why)
            if not self._connected_once:
                if loop.time() >= give_up_at:
                    raise upstream_failure(
                        "upstream_unreachable",
                        "The assistant service could not be reached. Please try again in a moment.",
                    )
                await self.sleep(0.2)
                continue
            # A connection that produced a new handle made progress; one that did not (however it
            # ended, goAway included) counts against the retries, so a flapping upstream ends.
            if self.handle is not None and self.handle != handle_before:
                failures = 0
                if why == "go_away":
                    continue
            failures += 1
            if failures > self.reconnect_attempts:
                raise upstream_failure("upstream_error", "The connection to the assistant was lost.")
            await self.sleep(min(8.0, 0.25 * 2 ** (failures - 1)) * random.uniform(0.5, 1.0))

    async def _connect_and_pump(self, handle: str | None, limit: float) -> str:
        async with AsyncExitStack() as stack:
            async with asyncio.timeout(limit):
                upstream = await stack.enter_async_context(self.connector.connect(self.config_for(handle)))
            resumed = handle is not None
            self._connected_once = self.connected = True
            self.health.record("ok")
            self.records.event("upstream_connected", resumed=resumed)
            first = None if resumed else ClientTurn(tuple(self.listener.opening_turns()))
            self.mailbox.post(_Connected(upstream, resumed, first))
            try:
                self.listener.on_link_state("ready")
                return await self._pump(upstream)
            finally:
                self.connected = self.in_reply = False
                self.mailbox.post(_Disconnected())
        raise AssertionError("unreachable")  # pragma: no cover - the block always returns

    async def _pump(self, upstream: LiveUpstream) -> str:
        loop = asyncio.get_running_loop()
        leaving = False
        try:
            async with asyncio.timeout(None) as deadline:
                while True:
                    async for message in upstream.receive():
                        if isinstance(message, ModelAudio):
                            self.in_reply = True
                            await self.listener.on_model_audio(message.data)
                            continue
                        self._track(message)
                        await self.listener.on_message(message)
                        if message.go_away is not None and not leaving:
                            leaving = True
                            left = _seconds(message.go_away.time_left)
                            self.records.event("go_away", time_left=left)
                            deadline.reschedule(loop.time() + max(0.0, left - GO_AWAY_MARGIN_SECONDS))
                        if leaving and not self.in_reply:
                            return "go_away"
        except TimeoutError:
            return "go_away"
        except errors.APIError as exc:
            if exc.code == 1000:
                return "closed"
            raise

    def _track(self, message: types.LiveServerMessage) -> None:
        update = message.session_resumption_update
        if update is not None and update.resumable and update.new_handle:
            self.handle = update.new_handle
            self.listener.on_handle(update.new_handle)
            if update.last_consumed_client_message_index is not None:
                self.mailbox.post(_Consumed(update.last_consumed_client_message_index))
            else:
                self.mailbox.post(_HandleRenewed())
        content = message.server_content
        if content is None:
            return
        if content.model_turn is not None or content.output_transcription is not None:
            self.in_reply = True
        if content.turn_complete or content.interrupted:
            self.in_reply = False


def _refusal_text(code: int | None) -> str:
    if code in _AUTH_CODES:
        return "The assistant service refused the API key. Check the key and try again."
    return f"The assistant service refused the session request ({code})."
