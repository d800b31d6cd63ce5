"""One browser connection relayed to one Gemini Live session: four tasks, two queues."""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from google.genai import errors, types
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import InvalidStatus, WebSocketException

from config import Settings
from schemas import (
    ErrorCode,
    ErrorMessage,
    ExtractedDataMessage,
    IntakeCompleteMessage,
    InterruptedMessage,
    Role,
    SessionState,
    StatusMessage,
    TranscriptMessage,
    TurnCompleteMessage,
)
from services.conversation_log import ConversationLog
from services.extraction import Extractor
from services.gemini_client import LiveConnector, LiveUpstream, UpstreamKind
from services.intake_recorder import IntakeRecorder
from services.live_config import COMPLETE_INTAKE, live_connect_config
from services.resumable_audio import ResumableAudio
from services.session_records import ConversationStore, SessionAudit
from utils.audio_pacing import TOO_FAST_MESSAGE, AudioPacer
from utils.audio_processing import INPUT_MIME, bytes_per_second
from utils.browser_input import AudioStreamEnd, BrowserInput, read_browser_input

logger = logging.getLogger(__name__)

# 5 chunks of 100 ms: enough to absorb jitter, and a stalled upstream pushes back on the
# browser within half a second because the reader blocks on a full queue.
INBOUND_QUEUE_CHUNKS = 5
# The model's audio arrives in bursts faster than real time. 512 chunks (tens of seconds of
# speech) bounds memory if the browser stalls; a full queue blocks the upstream reader.
OUTBOUND_QUEUE_ITEMS = 512
HISTORY_TURNS = 500
# While the upstream reconnects, the first 2 s of the patient's speech are held and sent
# once it is back; anything beyond is dropped with a notice rather than delayed further.
HOLD_BYTES = int(2.0 * bytes_per_second(16000))
# Audio sent since the newest resumption handle is not in the state that handle restores, so it
# is kept (up to 30 s) and sent again after resuming; a new handle makes it redundant.
REPLAY_BYTES = int(30.0 * bytes_per_second(16000))
# Put on the inbound queue after a reconnect so held audio goes out without waiting for more;
# the browser never sends an empty frame (the edge rejects it), so it cannot be confused with audio.
_WAKE_SENDER = b""
# Close codes after which retrying cannot help: the key or the request was refused.
_FATAL_UPSTREAM_CODES = {1007, 1008, 400, 401, 403, 404}

Outbound = (
    bytes
    | StatusMessage
    | TranscriptMessage
    | TurnCompleteMessage
    | InterruptedMessage
    | ExtractedDataMessage
    | IntakeCompleteMessage
    | ErrorMessage
)


GREETING_CUE = types.Content(
    role="user",
    parts=[types.Part(text="The patient has joined the call. Greet them and begin the intake.")],
)


class SessionEnded(Exception):
    def __init__(self, reason: str, *, close_code: int = 1000, error: ErrorMessage | None = None):
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code
        self.error = error


def _upstream_failure(code: ErrorCode, message: str) -> SessionEnded:
    return SessionEnded("upstream_failed", close_code=1011, error=ErrorMessage(code=code, message=message))


@dataclass(frozen=True)
class SessionDeps:
    settings: Settings
    connector: LiveConnector
    extractor: Extractor
    upstream_kind: UpstreamKind
    store: ConversationStore | None
    audit: SessionAudit
    release: Callable[[], Awaitable[None]] | None = None


class IntakeSession:
    def __init__(self, websocket: WebSocket, deps: SessionDeps) -> None:
        self.id = deps.audit.session_id
        self._ws = websocket
        self._deps = deps
        self._settings = deps.settings
        self._inbound: asyncio.Queue[BrowserInput] = asyncio.Queue(INBOUND_QUEUE_CHUNKS)
        self._outbound: asyncio.Queue[Outbound] = asyncio.Queue(OUTBOUND_QUEUE_ITEMS)
        # Set while a Live connection is open and set up; None while (re)connecting.
        self._upstream: LiveUpstream | None = None
        self._resume_handle: str | None = None
        self._audio = ResumableAudio(hold_bytes=HOLD_BYTES, replay_bytes=REPLAY_BYTES)
        self._pacer = AudioPacer(rate=deps.settings.MAX_AUDIO_SPEED)
        self.state: SessionState = "connecting"
        self.conversation = ConversationLog(HISTORY_TURNS)
        self._muted = False
        self._model_speaking = False
        self._connected_once = False
        self.recorder = IntakeRecorder(
            self.id,
            self.conversation,
            extractor=deps.extractor,
            audit=deps.audit,
            store=deps.store,
            emit=self._emit,
            fallback_every=deps.settings.FALLBACK_EXTRACTION_TURNS,
            live_every=deps.settings.LIVE_EXTRACTION_TURNS,
        )
        self._finished = False
        self._closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self._stop_reason: str | None = None

    async def run(self) -> SessionEnded:
        await self._deps.audit.record("session_start", upstream=self._deps.upstream_kind)
        tasks: list[tuple[str, Callable[[], Awaitable[None]], str]] = [
            ("browser-reader", self._receive_from_browser, "browser_closed"),
            ("gemini-sender", self._send_to_gemini, "sender_stopped"),
            ("gemini-receiver", self._receive_from_gemini, "upstream_closed"),
            ("browser-writer", self._send_to_browser, "browser_closed"),
        ]
        running = [
            asyncio.create_task(self._until_end(body, reason), name=f"{name}:{self.id}")
            for name, body, reason in tasks
        ]
        self._reader = running[0]
        if self._stop_reason is not None:
            self._reader.cancel()
        outcome = SessionEnded("cancelled")
        try:
            # The first task to end ends the session: the others are cancelled and awaited, so
            # none outlives it. (asyncio.TaskGroup would do the same but, on 3.11, leaves the
            # handler's task marked as cancelling, which breaks the server's own cancel scopes.)
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            first = next(iter(done)).exception()
            if not isinstance(first, SessionEnded):
                raise first or RuntimeError("a session task returned without ending the session")
            outcome = first
        finally:
            for task in running:
                task.cancel()
            await asyncio.wait(running)
            await self.finish(outcome.reason)
        return outcome

    async def _until_end(self, body: Callable[[], Awaitable[None]], reason: str) -> None:
        try:
            await body()
        except asyncio.CancelledError:
            if self._stop_reason is None or asyncio.current_task() is not self._reader:
                raise
            raise SessionEnded(
                self._stop_reason,
                close_code=1001,
                error=ErrorMessage(
                    code="server_shutdown", message="The server is restarting; your answers so far are saved."
                ),
            ) from None
        raise SessionEnded(reason)

    def request_stop(self, reason: str) -> None:
        """End the session from outside (server shutdown); teardown runs as for any other end."""
        if self._stop_reason is None:
            self._stop_reason = reason
            if self._reader is not None:
                self._reader.cancel()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def _emit(self, item: Outbound) -> None:
        if not self._finished:
            await self._outbound.put(item)

    async def _status(self, state: SessionState, message: str) -> None:
        self.state = state
        await self._emit(
            StatusMessage(state=state, message=message, upstream=self._deps.upstream_kind, session_id=self.id)
        )

    async def _receive_from_browser(self) -> None:
        limits = self._settings
        while True:
            try:
                async with asyncio.timeout(limits.IDLE_TIMEOUT_SECONDS):
                    raw = await self._ws.receive()
            except TimeoutError:
                raise SessionEnded(
                    "idle_timeout",
                    error=ErrorMessage(
                        code="idle_timeout",
                        message=f"No audio or message for {limits.IDLE_TIMEOUT_SECONDS:g} s; session ended.",
                    ),
                ) from None
            if raw["type"] == "websocket.disconnect":
                return
            parsed = read_browser_input(
                raw, max_binary=limits.MAX_BINARY_FRAME_BYTES, max_text=limits.MAX_TEXT_FRAME_BYTES
            )
            match parsed:
                case ErrorMessage():
                    await self._emit(parsed)
                case bytes():
                    paced = self._pacer.admit(parsed)
                    if paced.too_fast:
                        await self._emit(ErrorMessage(code="audio_too_fast", message=TOO_FAST_MESSAGE))
                    if paced.audio:
                        await self._inbound.put(paced.audio)
                case AudioStreamEnd():
                    if rest := self._pacer.flush().audio:
                        await self._inbound.put(rest)
                    await self._inbound.put(parsed)
                case "interrupt":
                    await self._interrupt_playback()
                case "end_session":
                    raise SessionEnded("end_session")
                case "start":
                    await self._status(self.state, "Session is open.")

    async def _send_to_gemini(self) -> None:
        while True:
            item = await self._inbound.get()
            upstream = self._upstream
            if upstream is None:
                await self._hold(item)
                continue
            try:
                while (waiting := self._audio.waiting) is not None:
                    await self._send_input(upstream, waiting)
                    self._audio.sent_waiting()
                if item != _WAKE_SENDER:
                    await self._send_input(upstream, item)
                    self._audio.sent(item)
            except (errors.APIError, WebSocketException, OSError):
                # The receiver sees the same broken connection and reconnects; keep this chunk.
                await self._hold(item)

    @staticmethod
    async def _send_input(upstream: LiveUpstream, item: BrowserInput) -> None:
        if isinstance(item, AudioStreamEnd):
            await upstream.send_realtime_input(audio_stream_end=True)
        else:
            await upstream.send_realtime_input(audio=types.Blob(data=item, mime_type=INPUT_MIME))

    async def _hold(self, item: BrowserInput) -> None:
        if item != _WAKE_SENDER and self._audio.hold(item) == "first_drop":
            await self._emit(
                ErrorMessage(
                    code="audio_dropped",
                    message="The assistant is reconnecting; speech beyond 2 s was not heard.",
                )
            )

    async def _receive_from_gemini(self) -> None:
        failures = 0
        while True:
            if self._connected_once:
                await self._status("reconnecting", "Reconnecting to the assistant…")
            else:
                await self._status("connecting", "Connecting to the assistant…")
            handle_before = self._resume_handle
            config = live_connect_config(self._settings, resume_handle=handle_before)
            try:
                async with self._deps.connector.connect(config) as upstream:
                    self._upstream = upstream
                    if self._connected_once:
                        self._audio.resume()
                    self._connected_once = True
                    await self._deps.audit.record(
                        "upstream_connected", resumed=self._resume_handle is not None
                    )
                    if handle_before is None:
                        # A conversation the upstream has never seen: the model speaks only when
                        # spoken to, so this asks it to open the interview.
                        await upstream.send_client_content(turns=GREETING_CUE, turn_complete=True)
                    await self._status("ready", self._ready_text())
                    self._inbound_kick()
                    why = await self._pump(upstream)
            except errors.APIError as exc:
                why = f"closed ({exc.code})"
                if exc.code in _FATAL_UPSTREAM_CODES:
                    raise _upstream_failure("upstream_auth", _refusal_text(exc)) from exc
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in _FATAL_UPSTREAM_CODES:
                    raise _upstream_failure(
                        "upstream_auth", f"The assistant service refused the connection ({status})."
                    ) from exc
                why = f"handshake failed ({status})"
            except (WebSocketException, OSError) as exc:
                why = f"unreachable ({type(exc).__name__})"
            finally:
                self._upstream = None
            await self._deps.audit.record("upstream_lost", why=why)
            logger.warning("session %s: upstream %s", self.id, why)
            can_resume = self._resume_handle is not None or not self.conversation
            # A connection that produced a new handle made progress; one that did not (however it
            # ended, goAway included) counts against the retries, so a flapping upstream ends.
            if self._resume_handle != handle_before:
                failures = 0
                if why == "go_away":
                    continue
            failures += 1
            if not can_resume or failures > self._settings.RECONNECT_ATTEMPTS:
                raise _upstream_failure("upstream_error", "The connection to the assistant was lost.")
            await asyncio.sleep(min(8.0, 0.25 * 2 ** (failures - 1)) * random.uniform(0.5, 1.0))

    def _ready_text(self) -> str:
        if self._deps.upstream_kind == "simulator":
            return "Connected to the local Gemini simulator (no API key configured): replies are scripted."
        return "Connected to the assistant."

    def _inbound_kick(self) -> None:
        if self._audio.waiting is not None and not self._inbound.full():
            self._inbound.put_nowait(_WAKE_SENDER)

    async def _pump(self, upstream: LiveUpstream) -> str:
        try:
            while True:
                async for message in upstream.receive():
                    await self._on_upstream_message(message, upstream)
                    if message.go_away is not None:
                        return "go_away"
        except errors.APIError as exc:
            if exc.code == 1000:
                return "closed"
            raise

    async def _on_upstream_message(self, message: types.LiveServerMessage, upstream: LiveUpstream) -> None:
        update = message.session_resumption_update
        if update is not None and update.resumable and update.new_handle:
            self._resume_handle = update.new_handle
            self._audio.handle_updated()
        if message.go_away is not None:
            await self._deps.audit.record("go_away", time_left=message.go_away.time_left)
        if message.tool_call is not None:
            for call in message.tool_call.function_calls or []:
                await self._on_function_call(call, upstream)
        if message.tool_call_cancellation is not None:
            await self._on_tool_cancellation(message.tool_call_cancellation.ids or [])
        content = message.server_content
        if content is None:
            return
        if content.interrupted:
            await self._finalize_role()
            await self._interrupt_playback()
        if content.input_transcription is not None and content.input_transcription.text:
            await self._transcript("patient", content.input_transcription.text)
        if content.model_turn is not None and not self._muted:
            for part in content.model_turn.parts or []:
                if part.inline_data is not None and part.inline_data.data:
                    self._model_speaking = True
                    await self._emit(part.inline_data.data)
        if content.output_transcription is not None and content.output_transcription.text:
            await self._transcript("assistant", content.output_transcription.text)
        if content.turn_complete:
            self._muted = self._model_speaking = False
            await self._finalize_role()
            await self._emit(TurnCompleteMessage())
            self.recorder.on_turn_complete()

    async def _transcript(self, role: Role, text: str) -> None:
        if (finished := self.conversation.add(role, text)) is not None:
            await self._deps.audit.turn(finished)
        await self._emit(TranscriptMessage(role=role, text=text))

    async def _finalize_role(self) -> None:
        if (finished := self.conversation.finalize()) is not None:
            await self._deps.audit.turn(finished)

    async def _interrupt_playback(self) -> None:
        """Drop the model audio still queued and tell the browser to flush what it buffered."""
        kept = [item for item in self._drain_outbound() if not isinstance(item, bytes)]
        for item in kept:
            self._outbound.put_nowait(item)
        # The model keeps generating after a local interrupt; mute it until its turn ends.
        self._muted = self._muted or self._model_speaking
        self._model_speaking = False
        await self._emit(InterruptedMessage())

    def _drain_outbound(self) -> list[Outbound]:
        items: list[Outbound] = []
        while not self._outbound.empty():
            items.append(self._outbound.get_nowait())
        return items

    async def _on_function_call(self, call: types.FunctionCall, upstream: LiveUpstream) -> None:
        await self._deps.audit.record("function_call", name=call.name, call_id=call.id)
        if call.name != COMPLETE_INTAKE:
            await upstream.send_tool_response(
                function_responses=[
                    types.FunctionResponse(id=call.id, name=call.name, response={"error": "unknown function"})
                ]
            )
            return
        # Answer first so the model can say goodbye while the record is extracted.
        await upstream.send_tool_response(
            function_responses=[
                types.FunctionResponse(
                    id=call.id, name=call.name, response={"result": "ok", "message": "Intake recorded."}
                )
            ]
        )
        await self._finalize_role()
        self.recorder.on_complete_intake(call.id)

    async def _on_tool_cancellation(self, ids: list[str]) -> None:
        await self._deps.audit.record("tool_call_cancelled", ids=ids)
        self.recorder.cancel(ids)

    async def _send_to_browser(self) -> None:
        while True:
            item = await self._outbound.get()
            try:
                if isinstance(item, bytes):
                    await self._ws.send_bytes(item)
                else:
                    await self._ws.send_text(item.model_dump_json(exclude_none=True))
            except (WebSocketDisconnect, OSError):
                return

    async def finish(self, reason: str) -> None:
        """Idempotent teardown: let extraction in flight finish (bounded), save, audit."""
        if self._finished:
            return
        self._finished = True
        await self.recorder.drain(self._settings.SHUTDOWN_GRACE_SECONDS)
        await self._finalize_role()
        if not self.recorder.completed:
            await self.recorder.save(completed=False)
        await self._deps.audit.record(
            "session_end", reason=reason, turns=len(self.conversation), completed=self.recorder.completed
        )
        if self._deps.release is not None:
            await self._deps.release()
        self._closed.set()


def _refusal_text(exc: errors.APIError) -> str:
    if exc.code in (1007, 1008, 401, 403):
        return "The assistant service refused the API key or the request. Check the key and try again."
    return f"The assistant service refused the session ({exc.code})."
