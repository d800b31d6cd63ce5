"""In-process stand-ins for the Gemini upstream that behave: they record and they play a script."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from google.genai import errors, types

from schemas import MedicalIntake, Turn
from services.extraction import ExtractionError


def server(**content: object) -> types.LiveServerMessage:
    return types.LiveServerMessage(server_content=types.LiveServerContent(**content))  # type: ignore[arg-type]


def audio(data: bytes) -> types.LiveServerMessage:
    blob = types.Blob(data=data, mime_type="audio/pcm;rate=24000")
    return server(model_turn=types.Content(role="model", parts=[types.Part(inline_data=blob)]))


def said(text: str) -> types.LiveServerMessage:
    return server(output_transcription=types.Transcription(text=text))


def heard(text: str) -> types.LiveServerMessage:
    return server(input_transcription=types.Transcription(text=text))


def turn_complete() -> types.LiveServerMessage:
    return server(turn_complete=True)


def interrupted() -> types.LiveServerMessage:
    return server(interrupted=True)


def tool_call(call_id: str, name: str = "complete_intake") -> types.LiveServerMessage:
    return types.LiveServerMessage(
        tool_call=types.LiveServerToolCall(
            function_calls=[types.FunctionCall(id=call_id, name=name, args={})]
        )
    )


def resumption(handle: str) -> types.LiveServerMessage:
    return types.LiveServerMessage(
        session_resumption_update=types.LiveServerSessionResumptionUpdate(new_handle=handle, resumable=True)
    )


def go_away(time_left: str = "1s") -> types.LiveServerMessage:
    return types.LiveServerMessage(go_away=types.LiveServerGoAway(time_left=time_left))


def dropped(code: int = 1011) -> errors.APIError:
    return errors.APIError(code, {"message": "connection lost"})


@dataclass
class Step:
    """Play `messages` once the fake has received `after_chunks` audio chunks in total (and, with
    `after_turns`, that many client-content turns: the greeting cue is the first)."""

    after_chunks: int
    messages: Sequence[types.LiveServerMessage | Exception]
    after_turns: int = 0


@dataclass
class FakeLiveSession:
    script: list[Step] = field(default_factory=list)
    audio_in: list[types.Blob] = field(default_factory=list)
    stream_ends: int = 0
    tool_responses: list[types.FunctionResponse] = field(default_factory=list)
    client_content: list[types.Content] = field(default_factory=list)
    closed: bool = False
    _progress: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._progress is None:
            self._progress = asyncio.Condition()
        return self._progress

    async def send_audio(self, pcm: bytes, mime_type: str) -> None:
        if self.closed:
            raise errors.APIError(1006, {"message": "closed"})
        self.audio_in.append(types.Blob(data=pcm, mime_type=mime_type))
        async with self._condition():
            self._condition().notify_all()

    async def send_audio_stream_end(self) -> None:
        if self.closed:
            raise errors.APIError(1006, {"message": "closed"})
        self.stream_ends += 1
        async with self._condition():
            self._condition().notify_all()

    async def send_tool_response(self, *, function_responses: list[types.FunctionResponse]) -> None:
        self.tool_responses.extend(function_responses)
        async with self._condition():
            self._condition().notify_all()

    async def send_client_content(
        self, *, turns: types.Content | list[types.Content], turn_complete: bool = True
    ) -> None:
        self.client_content.extend(turns if isinstance(turns, list) else [turns])
        async with self._condition():
            self._condition().notify_all()

    async def receive(self) -> AsyncIterator[types.LiveServerMessage]:
        while self.script:
            step = self.script[0]
            async with self._condition():
                await self._condition().wait_for(
                    lambda s=step: (
                        len(self.audio_in) >= s.after_chunks and len(self.client_content) >= s.after_turns
                    )
                )
            self.script.pop(0)
            for item in step.messages:
                if isinstance(item, Exception):
                    raise item
                yield item
                await asyncio.sleep(0)
        # Script done: stay open like a quiet upstream until the session closes us.
        await asyncio.Event().wait()

    async def close(self) -> None:
        self.closed = True


class FakeConnector:
    """Hands out the given sessions in order, recording each config it was asked to connect with."""

    def __init__(self, *sessions: FakeLiveSession | Exception) -> None:
        self._sessions = list(sessions)
        self.configs: list[types.LiveConnectConfig] = []

    @asynccontextmanager
    async def connect(self, config: types.LiveConnectConfig) -> AsyncIterator[FakeLiveSession]:
        self.configs.append(config)
        session = self._sessions.pop(0)
        if isinstance(session, Exception):
            raise session
        try:
            yield session
        finally:
            session.closed = True


class FakeExtractor:
    """Answers with the given records or errors in turn; remembers the conversations it saw."""

    def __init__(self, *answers: MedicalIntake | ExtractionError, delay: float = 0.0) -> None:
        self._answers = list(answers) or [ExtractionError("no record was scripted for this test")]
        self.calls: list[list[Turn]] = []
        self._delay = delay

    async def extract(self, turns: Sequence[Turn]) -> tuple[MedicalIntake, list[str]]:
        self.calls.append(list(turns))
        await asyncio.sleep(self._delay)
        answer = self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]
        if isinstance(answer, ExtractionError):
            raise answer
        return answer, []
