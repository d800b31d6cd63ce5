"""One browser connection relayed to one Gemini Live session: four tasks, two queues."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from google.genai import types
from starlette.websockets import WebSocket, WebSocketDisconnect

from config import Settings
from gemini_live.alerts import ClinicAlerts, Emergency, EmergencySource, NoAlerts
from gemini_live.browser_input import AudioStreamEnd, read_browser_input
from gemini_live.queues import BrowserOutbox
from gemini_live.recorder import IntakeRecorder, Outcome
from gemini_live.records import SessionInfo, SessionRecords, StorageError
from gemini_live.red_flags import RedFlagMatcher
from gemini_live.resume import ResumeDesk
from gemini_live.transcript import ConversationLog, FinalTurn
from gemini_live.upstream import SessionEnded, UpstreamHealth, UpstreamLink
from schemas import (
    ConversationState,
    EmergencyMessage,
    ErrorMessage,
    ExtractedDataMessage,
    HistoryMessage,
    InterruptedMessage,
    ResumeMessage,
    Role,
    ServerMessage,
    SessionState,
    StatusMessage,
    TranscriptMessage,
    Turn,
    TurnCompleteMessage,
)
from services import metrics
from services.extraction import Extractor
from services.gemini_client import LiveConnector, UpstreamKind
from services.live_config import COMPLETE_INTAKE, FLAG_EMERGENCY, function_response, live_connect_config
from services.storage.resumption import RestoredIntake, new_token
from utils.audio_pacing import TOO_FAST_MESSAGE, AudioPacer

logger = logging.getLogger(__name__)

HISTORY_TURNS = 500
# A session that ends this way stays resumable (the page reconnects); any other end is final.
RESUMABLE = frozenset({"browser_closed", "server_shutdown", "superseded"})

GREETING_CUE = types.Content(
    role="user",
    parts=[types.Part(text="The patient has joined the call. Greet them and begin the intake.")],
)
NUDGE = types.Content(
    role="user",
    parts=[types.Part(text="(The patient has finished speaking and is waiting. Please reply and continue.)")],
)
RESUME_CUE = (
    "(The connection dropped and this is the conversation so far. Continue the intake from where it "
    "stopped, without greeting the patient again.)"
)

_LINK_TEXT: dict[SessionState, str] = {
    "connecting": "Connecting to the assistant…",
    "reconnecting": "Reconnecting to the assistant…",
}
_CONVERSATION_TEXT: dict[ConversationState, str] = {
    "listening": "Listening.",
    "speaking": "The assistant is speaking.",
    "processing": "Saving your answers.",
    "idle": "The conversation has ended.",
}


@dataclass(frozen=True)
class SessionDeps:
    settings: Settings
    connector: LiveConnector
    extractor: Extractor
    upstream_kind: UpstreamKind
    records: SessionRecords
    health: UpstreamHealth
    session_id: str
    client: str = "unknown"
    release: Callable[[], Awaitable[None]] | None = None
    alerts: ClinicAlerts = NoAlerts()
    # Set when a dropped connection leaves the intake resumable (RESUME_GRACE_SECONDS > 0).
    resumes: ResumeDesk | None = None
    # An intake picked up again: its turns, record and upstream handle.
    restored: RestoredIntake | None = None


def _answers_later(config: types.LiveConnectConfig) -> bool:
    """Whether the model runs complete_intake asynchronously, so its answer can wait for the outcome."""
    for tool in config.tools or []:
        if not isinstance(tool, types.Tool):
            continue
        for declaration in tool.function_declarations or []:
            if declaration.name == COMPLETE_INTAKE:
                return declaration.behavior == types.Behavior.NON_BLOCKING
    return False


class IntakeSession:
    def __init__(self, websocket: WebSocket, deps: SessionDeps) -> None:
        self.id = deps.session_id
        self._ws = websocket
        self._deps = deps
        self._settings = settings = deps.settings
        self._records = deps.records
        self._out = BrowserOutbox()
        self.state: SessionState = "connecting"
        self.conversation_state: ConversationState = "idle"
        self.conversation = ConversationLog(HISTORY_TURNS)
        restored = deps.restored
        self.generation = restored.generation if restored else 0
        self._resume_token: str | None = None
        self._token_hash: str | None = None
        if deps.resumes is not None:
            if restored is not None:
                self._resume_token = restored.token
            else:
                self._resume_token, self._token_hash = new_token()
        # Only the first message of a socket may resume an earlier intake.
        self._first_message = True
        self._history_owed = restored is not None
        self._answers_later = _answers_later(live_connect_config(settings, resume_handle=None))
        self._link = UpstreamLink(
            connector=deps.connector,
            config_for=lambda handle: live_connect_config(settings, resume_handle=handle),
            listener=self,
            records=deps.records,
            health=deps.health,
            reconnect_attempts=settings.RECONNECT_ATTEMPTS,
            handle=restored.handle if restored else None,
        )
        self.recorder = IntakeRecorder(
            self.id,
            self.conversation,
            extractor=deps.extractor,
            records=deps.records,
            model=settings.GEMINI_EXTRACTION_MODEL,
            emit=self._out.message,
            answer=self._answer_intake,
            on_completed=self._intake_saved,
            fallback_every=settings.FALLBACK_EXTRACTION_TURNS,
            live_every=settings.LIVE_EXTRACTION_TURNS,
        )
        # Owned by the browser reader: audio goes upstream at most MAX_AUDIO_SPEED x real time.
        self._pacer = AudioPacer(rate=settings.MAX_AUDIO_SPEED)
        # Browser `interrupt`: the rest of the model's current generation is not played.
        self._muted = False
        self._patient_spoke_while_muted = False
        self._speaking = False
        self._stall: asyncio.TimerHandle | None = None
        self._nudged = False
        self._end_timer: asyncio.TimerHandle | None = None
        self._end_after_turn = False
        # Owned by the browser reader: when the browser last sent anything (loop time).
        self._browser_heard_at = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._ending: SessionEnded | None = None
        self._finished = False
        self._closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        # perf_counter stamps for the metrics (0.0: nothing being timed): the patient's last words
        # heard, the reply audio they led to, and a model audio chunk waiting in an empty outbox.
        self._heard_at = 0.0
        self._reply_at = 0.0
        self._down_at = 0.0
        self._red_flags = RedFlagMatcher(settings.RED_FLAG_PHRASES)
        self.emergency: Emergency | None = None
        if restored is not None:
            self.conversation.restore([(t.index, Turn(role=t.role, text=t.text)) for t in restored.turns])
            self.recorder.restore(restored.record)
            match restored.emergency:
                case "model" | "server" as source:
                    self.emergency = Emergency(source, "flagged before the connection dropped")

    def queue_depths(self) -> tuple[int, int, int]:
        return len(self._link.mailbox), self._out.audio_bytes, self._out.queued_messages

    async def run(self) -> SessionEnded:
        if self._deps.restored is None:
            self._records.started(
                SessionInfo(
                    session_id=self.id,
                    started_at=datetime.now(UTC),
                    upstream=self._deps.upstream_kind,
                    live_model=self._settings.GEMINI_LIVE_MODEL,
                    practice=self._deps.upstream_kind == "simulator",
                    client=self._deps.client,
                    resume_token_hash=self._token_hash,
                )
            )
            self._records.event("session_start", upstream=self._deps.upstream_kind)
        else:
            self._records.event(
                "session_resumed", generation=self.generation, handle=self._link.handle is not None
            )
        if self._deps.resumes is not None:
            self._deps.resumes.attach(self)
        tasks: list[tuple[str, Callable[[], Awaitable[None]], str]] = [
            ("browser-reader", self._receive_from_browser, "browser_closed"),
            ("gemini-sender", self._link.run_sender, "sender_stopped"),
            ("gemini-receiver", self._link.run_receiver, "upstream_closed"),
            ("browser-writer", self._send_to_browser, "browser_closed"),
        ]
        running = [
            asyncio.create_task(self._until_end(body, reason), name=f"{name}:{self.id}")
            for name, body, reason in tasks
        ]
        self._reader = running[0]
        if self._ending is not None:
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
            if self._ending is None or asyncio.current_task() is not self._reader:
                raise
            raise self._ending from None
        raise SessionEnded(reason)

    def _end(self, outcome: SessionEnded) -> None:
        """End the session from a timer or from outside; teardown runs as for any other end."""
        if self._ending is None:
            self._ending = outcome
            if self._reader is not None:
                self._reader.cancel()

    def request_stop(self, reason: str) -> None:
        self._end(
            SessionEnded(
                reason,
                close_code=1001,
                error=ErrorMessage(
                    code="server_shutdown", message="The server is restarting; your answers so far are saved."
                ),
            )
        )

    def supersede(self) -> None:
        """Another socket resumed this intake: this one closes, and its teardown hands over."""
        self._end(
            SessionEnded(
                "superseded",
                close_code=4409,
                error=ErrorMessage(
                    code="superseded", message="This conversation continued on another connection."
                ),
            )
        )

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _status(self, state: SessionState, message: str, *, resumed: bool | None = None) -> None:
        self._out.message(
            StatusMessage(
                state=state,
                message=message,
                upstream=self._deps.upstream_kind,
                session_id=self.id,
                conversation=self.conversation_state,
                resume_token=self._resume_token if state == "ready" else None,
                resumed=resumed,
            )
        )

    def _converse(self, state: ConversationState) -> None:
        # Sent as its own status so that clients written against the tutorial, which read the
        # conversation from `state`, follow it too; `conversation` carries it for everyone.
        if state != self.conversation_state:
            self.conversation_state = state
            # In line with the audio, like turn_complete: the heading follows what is heard.
            self._out.after_audio(
                StatusMessage(
                    state=state,
                    message=_CONVERSATION_TEXT[state],
                    upstream=self._deps.upstream_kind,
                    session_id=self.id,
                    conversation=state,
                )
            )

    def on_link_state(self, state: SessionState) -> None:
        self.state = state
        if state == "ready":
            if self._history_owed:
                self._history_owed = False
                self._status("ready", "Connected again: the conversation goes on.", resumed=True)
                self._send_history()
            else:
                self._status("ready", self._ready_text())
            if self.conversation_state == "idle":
                self._converse("listening")
        else:
            self._disarm_stall()
            self._status(state, _LINK_TEXT[state])

    def _send_history(self) -> None:
        record = self.recorder.record
        self._out.message(
            HistoryMessage(
                turns=[TranscriptMessage(role=turn.role, text=turn.text) for turn in self.conversation.turns],
                record=ExtractedDataMessage(data=record, final=False) if record is not None else None,
            )
        )
        if self.emergency is not None:
            self._out.message(
                EmergencyMessage(
                    source=self.emergency.source, instructions=self._settings.EMERGENCY_INSTRUCTIONS
                )
            )

    def on_handle(self, handle: str) -> None:
        self._records.handle(handle)

    async def _resume(self, request: ResumeMessage, *, first: bool) -> None:
        desk = self._deps.resumes
        if desk is None or not first:
            why = "resuming is off on this server" if desk is None else "it must be the first message"
            self._out.message(ErrorMessage(code="resume_refused", message=f"Cannot resume: {why}."))
            return
        restored = await desk.resume(request.session_id, request.resume_token)
        if isinstance(restored, str):
            logger.info("session %s: resume refused: %s", request.session_id[:64], restored)
            self._records.event("resume_refused", why=restored)
            self._out.message(
                ErrorMessage(
                    code="resume_refused",
                    message=f"The earlier conversation cannot be picked up ({restored}); a new one starts.",
                )
            )
            return
        raise SessionEnded("resumed", resume=restored)

    def _ready_text(self) -> str:
        if self._deps.upstream_kind == "simulator":
            return "Connected to the local Gemini simulator (no API key configured): replies are scripted."
        return "Connected to the assistant."

    def opening_turns(self) -> list[types.Content]:
        """What a new upstream conversation is told first: a greeting cue, or what was said so far."""
        self._arm_stall()
        if not self.conversation.turns:
            # The model speaks only when spoken to, so this asks it to open the interview.
            return [GREETING_CUE]
        history = [
            types.Content(
                role="user" if turn.role == "patient" else "model", parts=[types.Part(text=turn.text)]
            )
            for turn in self.conversation.turns
        ]
        return [*history, types.Content(role="user", parts=[types.Part(text=RESUME_CUE)])]

    def on_audio_dropped(self) -> None:
        self._out.message(
            ErrorMessage(
                code="audio_dropped",
                message="The assistant is reconnecting; speech beyond 2 s was not heard.",
            )
        )

    async def _receive_from_browser(self) -> None:
        limits = self._settings
        loop = asyncio.get_running_loop()
        self._browser_heard_at = loop.time()
        self._watch_idle()
        while True:
            raw = await self._ws.receive()
            self._browser_heard_at = loop.time()
            if raw["type"] == "websocket.disconnect":
                return
            parsed = read_browser_input(
                raw, max_binary=limits.MAX_BINARY_FRAME_BYTES, max_text=limits.MAX_TEXT_FRAME_BYTES
            )
            first, self._first_message = self._first_message, False
            match parsed:
                case ResumeMessage():
                    await self._resume(parsed, first=first)
                case ErrorMessage():
                    self._out.message(parsed)
                case bytes():
                    paced = self._pacer.admit(parsed)
                    if paced.too_fast:
                        self._out.message(ErrorMessage(code="audio_too_fast", message=TOO_FAST_MESSAGE))
                    if paced.audio:
                        await self._link.put(paced.audio)
                case AudioStreamEnd():
                    if rest := self._pacer.flush().audio:
                        await self._link.put(rest)
                    await self._link.put(parsed)
                case "interrupt":
                    self._interrupt_from_browser()
                case "end_session":
                    raise SessionEnded("end_session")
                case "start":
                    self._status(self.state, "Session is open.")
                    if self.state == "ready":
                        # A tutorial client reads `state`: give it back the conversation's.
                        self._status(self.conversation_state, _CONVERSATION_TEXT[self.conversation_state])

    async def on_message(self, message: types.LiveServerMessage) -> None:
        if message.tool_call is not None:
            self._disarm_stall()
            for call in message.tool_call.function_calls or []:
                self._on_function_call(call)
        if message.tool_call_cancellation is not None:
            ids = message.tool_call_cancellation.ids or []
            self._records.event("tool_call_cancelled", ids=ids)
            self.recorder.cancel(ids)
        content = message.server_content
        if content is None:
            return
        if content.interrupted:
            self._interrupted_upstream()
        if content.input_transcription is not None and content.input_transcription.text:
            self._patient_spoke(content.input_transcription.text)
        if content.model_turn is not None:
            for part in content.model_turn.parts or []:
                if part.inline_data is not None and part.inline_data.data:
                    await self.on_model_audio(part.inline_data.data)
        if content.output_transcription is not None and content.output_transcription.text:
            self._disarm_stall()
            self._transcript("assistant", content.output_transcription.text)
        if content.turn_complete:
            self._turn_complete()

    def _patient_spoke(self, text: str) -> None:
        if self._muted:
            self._patient_spoke_while_muted = True
        self._postpone_end()
        self._heard_at = time.perf_counter()
        self._transcript("patient", text)
        self._arm_stall()

    async def on_model_audio(self, data: bytes) -> None:
        self._disarm_stall()
        self._postpone_end()
        if self._muted:
            if not self._patient_spoke_while_muted:
                return
            # A new model turn after new patient speech: the interrupted generation is over.
            self._muted = False
        if not self._speaking:
            self._speaking = True
            self._reply_at, self._heard_at = self._heard_at, 0.0
            self._converse("speaking")
        if not self._down_at and not self._out.audio_bytes:
            self._down_at = time.perf_counter()
        await self._out.audio(data)

    def _turn_complete(self) -> None:
        self._muted = self._speaking = False
        self._record_turn(self.conversation.finalize())
        self._out.after_audio(TurnCompleteMessage())
        if not self.recorder.busy:
            self._converse("listening")
        self.recorder.on_turn_complete()
        if self._end_after_turn:
            self._arm_end()

    def _interrupted_upstream(self) -> None:
        """Gemini heard the patient over its reply: drop what is queued, and play what comes next."""
        metrics.DROPPED_BARGE_IN.inc(self._out.drop_audio())
        self._down_at = 0.0
        self._out.message(InterruptedMessage())
        if self.conversation.speaking == "assistant":
            self._record_turn(self.conversation.finalize(interrupted=True))
        self._muted = self._speaking = False
        self._converse("listening")

    def _interrupt_from_browser(self) -> None:
        metrics.DROPPED_BARGE_IN.inc(self._out.drop_audio())
        self._down_at = 0.0
        if self._speaking or self._link.in_reply:
            # The model keeps generating after a local interrupt; the rest of that generation is
            # not played. It ends at turn_complete, interrupted, or a new turn after new speech.
            self._muted = True
            self._patient_spoke_while_muted = False
        self._speaking = False
        self._out.message(InterruptedMessage())
        self._converse("listening")

    def _transcript(self, role: Role, text: str) -> None:
        self._record_turn(self.conversation.add(role, text))
        self._out.message(TranscriptMessage(role=role, text=text))

    def _record_turn(self, final: FinalTurn | None) -> None:
        if final is None:
            return
        self._records.turn(
            final.index,
            final.turn,
            interrupted=final.interrupted,
            started_at=final.started_at,
            ended_at=final.ended_at,
        )
        if final.turn.role == "patient" and self.emergency is None:
            # The safety net: raised here only if the model has not flagged it already.
            if found := self._red_flags.find(final.turn.text):
                self._raise_emergency("server", "red-flag phrase in the patient's words", found)

    def _raise_emergency(self, source: EmergencySource, reason: str, symptoms: list[str]) -> None:
        first = self.emergency is None
        self._records.event("emergency", source=source, first=first, phrases=len(symptoms))
        if not first:
            return
        self.emergency = Emergency(source, reason, symptoms)
        self._records.flag_emergency(source=source)
        self._out.message(EmergencyMessage(source=source, instructions=self._settings.EMERGENCY_INSTRUCTIONS))
        self._deps.alerts.emergency(self.id, self.emergency, self.recorder.record)
        logger.warning("session %s: emergency flagged (%s)", self.id, source)

    def _on_flag_emergency(self, call: types.FunctionCall) -> None:
        args = call.args or {}
        reason = str(args.get("reason") or "not given")[:500]
        raw_symptoms = args.get("symptoms")
        symptoms = [str(s)[:200] for s in raw_symptoms[:20]] if isinstance(raw_symptoms, list) else []
        # Answered before the turn is finalized, so the safety net sees the model's flag.
        self._raise_emergency("model", reason, symptoms)
        self._link.send_tool_response(
            function_response(
                self._settings,
                call,
                {
                    "status": "flagged",
                    "message": "The clinic staff are alerted and the patient's screen shows: "
                    + self._settings.EMERGENCY_INSTRUCTIONS
                    + " Tell the patient this now, in plain words.",
                },
            )
        )
        self._record_turn(self.conversation.finalize())

    def _on_function_call(self, call: types.FunctionCall) -> None:
        self._records.event("function_call", function=call.name, call_id=call.id)
        if call.name == FLAG_EMERGENCY:
            self._on_flag_emergency(call)
            return
        if call.name != COMPLETE_INTAKE:
            self._link.send_tool_response(
                function_response(self._settings, call, {"error": "unknown function"})
            )
            return
        self._record_turn(self.conversation.finalize())
        self._converse("processing")
        if not self._answers_later:
            # A blocking call holds the model silent until answered, so it is answered at once;
            # the outcome reaches the patient through the page.
            self._link.send_tool_response(
                function_response(
                    self._settings, call, {"status": "received", "message": "Recording the intake."}
                )
            )
        self.recorder.on_complete_intake(call)

    def _answer_intake(self, call: types.FunctionCall, outcome: Outcome) -> None:
        self._records.event("intake_outcome", status=outcome["status"])
        if self._answers_later:
            self._link.send_tool_response(function_response(self._settings, call, outcome))
        if not self._speaking:
            self._converse("listening")

    def _intake_saved(self) -> None:
        if self.recorder.record is not None:
            self._deps.alerts.completed(self.id, self.recorder.record, self.emergency)
        # The session ends END_GRACE_SECONDS after the model's closing words, unless the patient
        # speaks again; speech from either side pushes the end back to after the next turn.
        self._arm_end()

    def _postpone_end(self) -> None:
        if self._end_timer is not None:
            self._end_timer.cancel()
            self._end_timer = None
            self._end_after_turn = True

    def _arm_end(self) -> None:
        self._end_after_turn = False
        if self._end_timer is not None:
            self._end_timer.cancel()
        self._end_timer = asyncio.get_running_loop().call_later(
            self._settings.END_GRACE_SECONDS, self._end, SessionEnded("intake_complete")
        )

    def _watch_idle(self) -> None:
        # One timer that re-arms at the last message plus the limit: a timeout around each read
        # cost a timer made and cancelled per audio frame, a few percent of the relay's CPU.
        loop = asyncio.get_running_loop()
        limit = self._settings.IDLE_TIMEOUT_SECONDS
        idle_for = loop.time() - self._browser_heard_at
        if idle_for < limit:
            self._idle_timer = loop.call_later(limit - idle_for, self._watch_idle)
            return
        self._idle_timer = None
        self._end(
            SessionEnded(
                "idle_timeout",
                error=ErrorMessage(
                    code="idle_timeout", message=f"No audio or message for {limit:g} s; session ended."
                ),
            )
        )

    def _arm_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
        self._stall = asyncio.get_running_loop().call_later(
            self._settings.STALL_TIMEOUT_SECONDS, self._stalled
        )

    def _disarm_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self._nudged = False

    def _stalled(self) -> None:
        self._stall = None
        if not self._link.connected or self.recorder.completed:
            return
        if not self._nudged:
            self._nudged = True
            self._records.event("assistant_nudged")
            logger.info("session %s: no reply from the assistant; nudging it", self.id)
            self._link.send_client_turn(NUDGE)
            self._arm_stall_again()
            return
        self._nudged = False
        self._records.event("assistant_stalled")
        logger.warning("session %s: the assistant stalled", self.id)
        self._out.message(
            ErrorMessage(
                code="assistant_stalled",
                message="The assistant is not answering. Please say that again, or press Stop, then Start.",
            )
        )

    def _arm_stall_again(self) -> None:
        self._stall = asyncio.get_running_loop().call_later(
            self._settings.STALL_TIMEOUT_SECONDS, self._stalled
        )

    async def _send_to_browser(self) -> None:
        while True:
            item: bytes | ServerMessage = await self._out.get()
            try:
                if isinstance(item, bytes):
                    await self._ws.send_bytes(item)
                    self._audio_sent()
                else:
                    await self._ws.send_text(item.model_dump_json(exclude_none=True))
            except (WebSocketDisconnect, OSError, RuntimeError):
                return

    def _audio_sent(self) -> None:
        metrics.FRAMES_DOWN.inc()
        if self._down_at or self._reply_at:
            now = time.perf_counter()
            if self._down_at:
                metrics.RELAY_DOWN.observe(now - self._down_at)
                self._down_at = 0.0
            if self._reply_at:
                metrics.REPLY_LATENCY.observe(now - self._reply_at)
                self._reply_at = 0.0

    async def finish(self, reason: str) -> None:
        """Idempotent teardown: let extraction in flight finish (bounded), save, audit, release."""
        if self._finished:
            return
        self._finished = True
        for timer in (self._stall, self._end_timer, self._idle_timer):
            if timer is not None:
                timer.cancel()
        try:
            await self.recorder.drain(self._settings.SHUTDOWN_GRACE_SECONDS)
            self._record_turn(self.conversation.finalize())
            if reason == "resumed":
                await self._records.discard()
            elif self._deps.resumes is not None and reason in RESUMABLE and not self.recorder.completed:
                # The intake waits RESUME_GRACE_SECONDS for the page to come back, on any process.
                self._records.event("session_suspended", reason=reason, turns=len(self.conversation))
                await self._records.release(handle=self._link.handle)
            else:
                status = self.recorder.status_at_end()
                metrics.INTAKES_ENDED.labels(status).inc()
                self._records.event("session_end", reason=reason, turns=len(self.conversation), status=status)
                await self._records.ended(reason=reason, status=status)
        except StorageError as exc:
            logger.error("session %s: the end of the session was not saved: %s", self.id, exc)
        finally:
            if self._deps.resumes is not None:
                self._deps.resumes.detach(self)
            try:
                if self._deps.release is not None:
                    await self._deps.release()
            except Exception:
                logger.exception("session %s: releasing the upstream client failed", self.id)
            finally:
                self._closed.set()
