"""A Live conversation after setup: reads the client, detects turns, speaks, injects faults.

Four jobs share one task group (client reader, agent, goAway timer, drop timer); the first
to finish decides how the connection ends and cancels the rest.
"""

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.websockets import WebSocket, WebSocketDisconnect

from simulator import protocol
from simulator.agent import Action, CallTool, CancelTool, EndTurn, IntakeAgent, Say, Transcribe
from simulator.audio import ASSISTANT_PITCH_HZ, MODEL_RATE, synth_voice
from simulator.hub import SimulatorHub
from simulator.options import SessionOptions
from simulator.protocol import ClientMessage, JsonObject, ProtocolError, RealtimeInput
from simulator.setup import Setup
from simulator.stats import SessionStats
from simulator.vad import VadEvent, VoiceActivityDetector

CHUNK_SECONDS = 0.08
DEADLINE_EXPIRED = "Deadline expired before operation could complete."
# A handful of turns at most are ever pending; when full the reader waits, which pushes
# back on the client rather than queueing without limit.
MAX_PENDING_EVENTS = 8


@dataclass(frozen=True)
class ClientGone:
    code: int


@dataclass(frozen=True)
class Close:
    code: int
    reason: str


@dataclass(frozen=True)
class Abort:
    pass


Ending = ClientGone | Close | Abort


@dataclass(frozen=True)
class UserTurn:
    typed: str | None = None


@dataclass(frozen=True)
class StartRequest:
    typed: str


@dataclass(frozen=True)
class ToolAnswer:
    responses: dict[str, JsonObject]
    silent: bool = False


AgentEvent = UserTurn | StartRequest | ToolAnswer


class _PeerGone(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Reply:
    scope: anyio.CancelScope
    done: anyio.Event


class Conversation:
    def __init__(
        self,
        websocket: WebSocket,
        hub: SimulatorHub,
        *,
        agent: IntakeAgent,
        setup: Setup,
        options: SessionOptions,
        record: SessionStats,
    ) -> None:
        self._ws = websocket
        self._hub = hub
        self._agent = agent
        self._setup = setup
        self._options = options
        self._record = record
        self._send_lock = anyio.Lock()
        self._ending: Ending | None = None
        self._reply: _Reply | None = None
        self._vad: VoiceActivityDetector | None = None
        # Index of the last client message read on this connection; setup was 0.
        self._consumed = 0
        self._interrupted_reply = False
        self._patient_turns = 0
        # Replies a frozen model holds back until a clientContent turn nudges it.
        self._held: list[Action] | None = None

    async def run(self) -> Ending:
        try:
            await self.send(protocol.setup_complete())
        except _PeerGone as gone:
            return ClientGone(gone.code)
        options = self._options
        send_events, receive_events = anyio.create_memory_object_stream[AgentEvent](MAX_PENDING_EVENTS)
        async with send_events, receive_events, anyio.create_task_group() as group:
            self._start(group, "reader", lambda: self._read(send_events))
            self._start(group, "agent", lambda: self._act(receive_events))
            # Faults fire once per conversation: a resumed connection is the recovery being tested.
            fresh = not self._record.resumed
            if options.goaway_after is not None and fresh:
                after, left = options.goaway_after, options.goaway_time_left
                self._start(group, "goaway", lambda: self._go_away(after, left))
            if options.drop_after is not None and fresh:
                drop_after = options.drop_after
                self._start(group, "drop", lambda: self._drop(drop_after))
        self.sync_record()
        return self._ending or ClientGone(1005)

    def _start(self, group: TaskGroup, name: str, job: Callable[[], Awaitable[Ending | None]]) -> None:
        group.start_soon(self._until_first_ends, group, job, name=f"live-{name}")

    async def _until_first_ends(self, group: TaskGroup, job: Callable[[], Awaitable[Ending | None]]) -> None:
        try:
            ending = await job()
        except _PeerGone as gone:
            ending = ClientGone(gone.code)
        if self._ending is None:
            self._ending = ending
        group.cancel_scope.cancel()

    async def send(self, message: JsonObject) -> None:
        async with self._send_lock:
            try:
                await self._ws.send_bytes(protocol.encode(message))
            except WebSocketDisconnect as gone:
                raise _PeerGone(gone.code) from gone

    def sync_record(self) -> None:
        self._record.frozen = self._held is not None
        self._record.script_position = self._agent.state.position
        self._record.phase = self._agent.state.phase.value

    async def _read(self, events: MemoryObjectSendStream[AgentEvent]) -> Ending:
        while True:
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return ClientGone(int(message.get("code", 1005)))
            try:
                parsed = protocol.parse_client_message(payload(message))
                self._consumed += 1
                await self._dispatch(parsed, events)
            except ProtocolError as exc:
                return Close(1007, str(exc))

    async def _dispatch(self, message: ClientMessage, events: MemoryObjectSendStream[AgentEvent]) -> None:
        if message.setup is not None:
            raise ProtocolError("setup must be the first message and sent only once.")
        if message.realtime_input is not None:
            await self._realtime(message.realtime_input, events)
        elif message.client_content is not None:
            self._count("clientContent")
            content = message.client_content
            if content.turn_complete:
                await self._barge_in()
                await events.send(StartRequest(" ".join(turn.text for turn in content.turns)))
        elif message.tool_response is not None:
            self._count("toolResponse")
            answers = [r for r in message.tool_response.function_responses if r.id is not None]
            ids = [r.id for r in answers if r.id is not None]
            self._hub.stats.tool_responses_received.extend(ids)
            self._record.tool_response_ids.extend(ids)
            scheduling = {r.scheduling or "WHEN_IDLE" for r in answers}
            self._record.tool_response_scheduling.extend(r.scheduling or "" for r in answers)
            silent = False
            if self._agent.async_calls:
                # Blocking calls ignore scheduling, as Google's do.
                if "INTERRUPT" in scheduling:
                    await self._barge_in()
                silent = scheduling == {"SILENT"}
            responses = {r.id: r.response or {} for r in answers if r.id is not None}
            await events.send(ToolAnswer(responses, silent))

    async def _realtime(self, realtime: RealtimeInput, events: MemoryObjectSendStream[AgentEvent]) -> None:
        for kind in protocol.realtime_kinds(realtime):
            self._count(kind)
        blobs = [realtime.audio] if realtime.audio else []
        for blob in blobs + (realtime.media_chunks or []):
            rate = blob.sample_rate
            pcm = blob.decoded()
            if rate is None:
                continue
            self._record.audio_bytes_received += len(pcm)
            if not self._setup.automatic_activity_detection:
                continue
            for vad_event in self._detector(rate).feed(pcm):
                if vad_event is VadEvent.SPEECH_STARTED:
                    await self._barge_in()
                else:
                    await self._user_turn(events)
        if realtime.activity_start is not None:
            await self._barge_in()
        if realtime.text is not None:
            await self._barge_in()
            await self._user_turn(events, typed=realtime.text)
        if realtime.activity_end is not None:
            await self._user_turn(events)
        if realtime.audio_stream_end and self._vad is not None and self._vad.end_of_stream():
            await self._user_turn(events)

    def _detector(self, rate: int) -> VoiceActivityDetector:
        if self._vad is None or self._vad.rate != rate:
            self._vad = VoiceActivityDetector(rate, self._options.vad_threshold, self._options.silence_ms)
        return self._vad

    async def _user_turn(self, events: MemoryObjectSendStream[AgentEvent], typed: str | None = None) -> None:
        self._record.user_turns += 1
        await events.send(UserTurn(typed))

    async def _barge_in(self) -> None:
        reply = self._reply
        if reply is None:
            return
        self._interrupted_reply = True
        reply.scope.cancel()
        # The reply stops before `interrupted` goes out, so no audio follows it.
        await reply.done.wait()
        await self.send(protocol.interrupted())

    async def _act(self, events: MemoryObjectReceiveStream[AgentEvent]) -> None:
        owed = self._agent.state.owed_reply
        if owed is not None:
            # Resumed from a handle taken between the patient's turn and the reply.
            await self._perform([Say(owed)])
        async for event in events:
            match event:
                case UserTurn(typed=typed):
                    actions = self._on_user_turn(typed)
                case StartRequest(typed=typed):
                    actions = self._on_start_request(typed)
                case ToolAnswer(responses=responses, silent=silent):
                    actions = self._agent.on_tool_response(responses, silent=silent)
            await self._perform(actions)
            self.sync_record()

    def _on_user_turn(self, typed: str | None) -> list[Action]:
        if self._held is not None:
            return []  # frozen: the model ignores speech until it is nudged
        self._patient_turns += 1
        actions = self._agent.on_user_turn(typed)
        options = self._options
        freeze = (options.freeze_after_interrupt and self._interrupted_reply) or (
            options.freeze_on_turn == self._patient_turns
        )
        self._interrupted_reply = False
        if not freeze:
            return actions
        self._record.freezes += 1
        self._held = [a for a in actions if not isinstance(a, Transcribe)]
        self._record.frozen = True
        return [a for a in actions if isinstance(a, Transcribe)]

    def _on_start_request(self, typed: str) -> list[Action]:
        held = self._held
        if held is None:
            return self._agent.on_start_request(typed)
        self._record.nudges += 1
        if self._options.ignore_nudge:
            return []
        self._held = None
        return held

    async def _perform(self, actions: list[Action]) -> None:
        if self._options.late_transcription:
            actions = transcription_after_call(actions)
        for index, action in enumerate(actions):
            match action:
                case Transcribe(text=text):
                    if self._setup.input_audio_transcription is not None:
                        for piece in split_pieces(text, 3):
                            await self.send(protocol.input_transcription(piece))
                    following = actions[index + 1] if index + 1 < len(actions) else None
                    if isinstance(following, Say):
                        # The patient's turn is in the state now: a handle mid-turn.
                        self._agent.state.owed_reply = following.text
                        await self._resumption_update()
                case Say(text=text):
                    await self._say(text)
                case CallTool(call_id=call_id, name=name, args=args):
                    await self.send(protocol.tool_call(call_id, name, args))
                    self._record.tool_call_ids.append(call_id)
                    self._hub.stats.tool_calls_sent.append(call_id)
                    # A function call is running: no resumption until its turn ends.
                    await self._resumption_update(resumable=False)
                case CancelTool(call_id=call_id):
                    await self.send(protocol.tool_call_cancellation([call_id]))
                    self._record.cancelled_call_ids.append(call_id)
                case EndTurn():
                    await self._complete_turn(response_chars=0)

    async def _say(self, text: str) -> None:
        spoken: list[str] = []
        reply = _Reply(anyio.CancelScope(), anyio.Event())
        self._reply = reply
        await self._resumption_update(resumable=False)
        with reply.scope:
            try:
                await self._stream_speech(text, spoken)
            finally:
                self._reply = None
                reply.done.set()
        self._agent.state.owed_reply = None
        if reply.scope.cancel_called:
            self._agent.on_reply_spoken("".join(spoken), interrupted=True)
            self._record.replies_interrupted += 1
            return
        self._agent.on_reply_spoken(text, interrupted=False)
        self._record.replies_completed += 1
        await self.send(protocol.generation_complete())
        await self._complete_turn(response_chars=len(text), question=text.rstrip().endswith("?"))

    async def _stream_speech(self, text: str, spoken: list[str]) -> None:
        if self._options.slow_reply:
            await anyio.sleep(self._options.slow_reply)
        pcm = synth_voice(text, MODEL_RATE, ASSISTANT_PITCH_HZ)
        chunk_bytes = int(MODEL_RATE * CHUNK_SECONDS) * 2
        count = max(1, math.ceil(len(pcm) / chunk_bytes))
        pieces = split_pieces(text, count, spread=True)
        transcribe = self._setup.output_audio_transcription is not None
        start = anyio.current_time()
        for index in range(count):
            await anyio.sleep_until(start + index * CHUNK_SECONDS * self._options.time_scale)
            if pieces[index]:
                if transcribe:
                    await self.send(protocol.output_transcription(pieces[index]))
                spoken.append(pieces[index])
            chunk = pcm[index * chunk_bytes : (index + 1) * chunk_bytes]
            await self.send(protocol.audio_chunk(chunk))

    async def _complete_turn(self, response_chars: int, *, question: bool = False) -> None:
        prompt_tokens = sum(len(entry.text) for entry in self._agent.state.transcript) // 4
        await self.send(
            protocol.turn_complete(prompt_tokens, response_chars // 4, waiting_for_input=question)
        )
        await self._resumption_update()

    async def _resumption_update(self, *, resumable: bool = True) -> None:
        if self._setup.session_resumption is None:
            return
        handle = self._hub.resumption.save(self._agent.snapshot()) if resumable else None
        last = self._consumed if self._setup.transparent_resumption else None
        await self.send(protocol.resumption_update(handle, last_consumed=last))

    async def _go_away(self, after: float, time_left: float) -> Ending:
        await anyio.sleep(after)
        await self.send(protocol.go_away(time_left))
        self._record.go_away_sent = True
        await anyio.sleep(time_left)
        return Close(1011, DEADLINE_EXPIRED)

    async def _drop(self, after: float) -> Ending:
        await anyio.sleep(after)
        return Abort()

    def _count(self, kind: str) -> None:
        self._hub.stats.messages_received[kind] += 1


def transcription_after_call(actions: list[Action]) -> list[Action]:
    """Google does not order transcription against the model's turn: the patient's words may
    arrive after the function call they led to (and before anything the model says next)."""
    calls = [i for i, action in enumerate(actions) if isinstance(action, CallTool)]
    if not calls:
        return actions
    words: list[Action] = [a for a in actions if isinstance(a, Transcribe)]
    rest: list[Action] = [a for a in actions if not isinstance(a, Transcribe)]
    at = rest.index(actions[calls[0]]) + 1
    return rest[:at] + words + rest[at:]


def split_pieces(text: str, count: int, *, spread: bool = False) -> list[str]:
    """Splits `text` after whole words into `count` pieces that join back to `text`.

    With `spread`, piece i holds the words that end in the i-th share of the text, so the
    pieces line up with equal slices of audio (some may be empty)."""
    words = re.findall(r"\S+\s*", text)
    if not spread:
        per_piece = max(1, math.ceil(len(words) / count))
        grouped = ["".join(words[i : i + per_piece]) for i in range(0, len(words), per_piece)]
        return grouped or [text]
    pieces = [""] * count
    end = 0
    for word in words:
        end += len(word)
        pieces[min(count - 1, (end - 1) * count // max(len(text), 1))] += word
    return pieces


def payload(message: Mapping[str, object]) -> str | bytes:
    if message:
        text = message.get("text")
        if isinstance(text, str):
            return text
        data = message.get("bytes")
        if isinstance(data, bytes):
            return data
    raise ProtocolError("Invalid JSON payload received. Empty message.")
