"""Helpers for driving the simulator with the real google-genai SDK."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

from google import genai
from google.genai import types

from simulator import RunningSimulator, SimulatorConfig, start_simulator
from simulator.audio import MODEL_RATE

LIVE_MODEL = "gemini-3.8-live"
LIVE_MODEL_2_5 = "gemini-2.5-flash-native-audio-preview-12-2025"
EXTRACTION_MODEL = "gemini-3.8-flash"
CHUNK_BYTES = 3200  # 100 ms of 16 kHz PCM16


@contextmanager
def running_simulator(**overrides: object) -> Iterator[RunningSimulator]:
    config = SimulatorConfig.model_validate({"time_scale": 0.02, **overrides})
    with start_simulator(config) as sim:
        yield sim


def http_options(sim: RunningSimulator) -> types.HttpOptions:
    ctx = sim.client_ssl_context()
    # "ssl" reaches the Live websocket (wss://); "verify" the httpx clients for generateContent.
    return types.HttpOptions(
        base_url=sim.base_url,
        async_client_args={"ssl": ctx, "verify": ctx},
        client_args={"verify": ctx},
    )


@asynccontextmanager
async def sdk_client(sim: RunningSimulator, api_key: str) -> AsyncIterator[genai.Client]:
    client = genai.Client(api_key=api_key, http_options=http_options(sim))
    try:
        yield client
    finally:
        await client.aio.aclose()
        client.close()


def live_config(
    *,
    resume_handle: str | None = None,
    resumption: bool = True,
    with_tool: bool = True,
    manual_activity: bool = False,
) -> types.LiveConnectConfig:
    tools = [types.Tool(function_declarations=[types.FunctionDeclaration(name="complete_intake")])]
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        tools=tools if with_tool else None,
        session_resumption=(types.SessionResumptionConfig(handle=resume_handle) if resumption else None),
        context_window_compression=types.ContextWindowCompressionConfig(sliding_window=types.SlidingWindow()),
        realtime_input_config=(
            types.RealtimeInputConfig(
                automatic_activity_detection=types.AutomaticActivityDetection(disabled=True)
            )
            if manual_activity
            else None
        ),
    )


async def speak(session: genai.live.AsyncSession, pcm: bytes) -> None:
    for offset in range(0, len(pcm), CHUNK_BYTES):
        chunk = pcm[offset : offset + CHUNK_BYTES]
        await session.send_realtime_input(audio=types.Blob(data=chunk, mime_type="audio/pcm;rate=16000"))


@dataclass
class TurnLog:
    """What the client saw, in order, until the model's turn completed."""

    events: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    input_text: str = ""
    output_text: str = ""
    tool_calls: list[types.FunctionCall] = field(default_factory=list)
    cancelled_ids: list[str] = field(default_factory=list)
    handles: list[str] = field(default_factory=list)
    # sessionResumptionUpdate{resumable: false} while the model generated or ran a call.
    not_resumable: int = 0
    waiting_for_input: bool = False
    usage: list[types.UsageMetadata] = field(default_factory=list)

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / 2 / MODEL_RATE


async def collect_turn(
    session: genai.live.AsyncSession,
    *,
    answer_tool_calls: bool = True,
    on_audio: Callable[[], Awaitable[None]] | None = None,
    respond: Callable[[types.FunctionCall], types.FunctionResponse] | None = None,
) -> TurnLog:
    """Reads until turnComplete, answering complete_intake (with `respond`'s answer if given),
    calling `on_audio` at first audio."""
    log = TurnLog()
    async for message in session.receive():
        content = message.server_content
        if content is not None:
            if content.input_transcription and content.input_transcription.text:
                log.events.append("input_transcription")
                log.input_text += content.input_transcription.text
            if content.output_transcription and content.output_transcription.text:
                log.events.append("output_transcription")
                log.output_text += content.output_transcription.text
            if content.model_turn and content.model_turn.parts:
                for part in content.model_turn.parts:
                    assert part.inline_data is not None and part.inline_data.data is not None
                    assert part.inline_data.mime_type == "audio/pcm;rate=24000"
                    log.audio += part.inline_data.data
                log.events.append("audio")
                if on_audio is not None:
                    starter, on_audio = on_audio, None
                    await starter()
            if content.interrupted:
                log.events.append("interrupted")
            if content.generation_complete:
                log.events.append("generation_complete")
            if content.turn_complete:
                log.events.append("turn_complete")
                log.waiting_for_input = bool(content.waiting_for_input)
        if message.usage_metadata is not None:
            log.usage.append(message.usage_metadata)
        if message.session_resumption_update is not None:
            update = message.session_resumption_update
            if update.resumable:
                assert update.new_handle
                log.handles.append(update.new_handle)
            else:
                assert not update.new_handle
                log.not_resumable += 1
        if message.tool_call is not None and message.tool_call.function_calls:
            log.events.append("tool_call")
            log.tool_calls.extend(message.tool_call.function_calls)
            if answer_tool_calls:
                call = message.tool_call.function_calls[0]
                answer = (
                    respond(call)
                    if respond is not None
                    else types.FunctionResponse(id=call.id, name=call.name, response={"status": "saved"})
                )
                await session.send_tool_response(function_responses=[answer])
        if message.tool_call_cancellation is not None:
            log.events.append("tool_call_cancellation")
            log.cancelled_ids.extend(message.tool_call_cancellation.ids or [])
    return log


async def next_message(session: genai.live.AsyncSession) -> types.LiveServerMessage:
    messages = session.receive()
    try:
        return await anext(messages)
    finally:
        await messages.aclose()


async def wait_for(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    assert predicate(), "condition not met in time"


def session_stats(sim: RunningSimulator, index: int = -1) -> dict[str, object]:
    sessions = sim.stats()["sessions"]
    assert sessions, "no sessions recorded"
    summary: dict[str, object] = sessions[index]
    return summary
