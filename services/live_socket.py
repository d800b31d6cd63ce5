"""A google-genai Live session with a cheaper path for audio frames, the relay's per-frame work.

The SDK opens the connection (setup, resumption handles), and sends and parses everything that
is not audio. Per audio frame it builds and validates pydantic models, converts them to dicts
and back, base64-encodes through a generic walker, and on receipt builds a full
`LiveServerMessage` after a `model_dump` of an empty one: several times what the same JSON
costs written and read directly (`python -m bench.live_frame` prints both). Here an audio frame
is written as the exact JSON the SDK writes, and a server message that holds only model audio
is read into `ModelAudio`; any other message goes through the SDK's own conversion.
tests/test_live_socket.py holds both paths to the SDK's output.
"""

import binascii
import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pybase64
from google.genai import _live_converters, errors, live, types
from websockets.exceptions import ConnectionClosed
from websockets.frames import CLOSE_CODE_EXPLANATIONS, Close

_STANDARD_ALPHABET = bytes.maketrans(b"-_", b"+/")


@functools.cache
def _audio_tail(mime_type: str) -> str:
    """What follows the data in an audio frame's JSON; the same for every frame of a stream."""
    return '", "mime_type": ' + json.dumps(mime_type) + "}}}"


@dataclass(frozen=True, slots=True)
class ModelAudio:
    """A server message that held nothing but model audio (PCM16, in order)."""

    data: bytes


class LiveSocket:
    """Wraps the SDK's `AsyncSession`: its websocket carries the audio, the SDK the rest."""

    def __init__(self, session: live.AsyncSession, *, vertexai: bool) -> None:
        self._session = session
        # The SDK keeps its websocket private; it is the one the session's own sends write to,
        # so frames written here and there keep one order.
        self._ws = session._ws
        self._vertexai = vertexai

    async def send_audio(self, pcm: bytes, mime_type: str) -> None:
        # As the SDK writes it for either API: URL-safe base64 and a snake_case `mime_type`.
        # Base64 needs no JSON escaping, so the text is assembled: json.dumps scanned all of it.
        data = pybase64.urlsafe_b64encode(pcm).decode("ascii")
        await self._ws.send('{"realtime_input": {"audio": {"data": "' + data + _audio_tail(mime_type))

    async def send_audio_stream_end(self) -> None:
        await self._session.send_realtime_input(audio_stream_end=True)

    async def send_tool_response(self, *, function_responses: list[types.FunctionResponse]) -> None:
        await self._session.send_tool_response(function_responses=function_responses)

    async def send_client_content(
        self, *, turns: types.Content | list[types.Content | types.ContentDict], turn_complete: bool = True
    ) -> None:
        await self._session.send_client_content(turns=turns, turn_complete=turn_complete)

    async def receive(self) -> AsyncIterator[types.LiveServerMessage | ModelAudio]:
        while True:
            try:
                raw = await self._ws.recv(decode=False)
            except ConnectionClosed as exc:
                close = exc.rcvd or Close(1006, CLOSE_CODE_EXPLANATIONS[1006])
                errors.APIError.raise_error(close.code, close.reason, None)
                raise  # raise_error always raises
            try:
                message = json.loads(raw) if raw else {}
            except ValueError as exc:
                raise ValueError(f"Failed to parse response: {raw[:80]!r}") from exc
            audio = model_audio(message)
            yield ModelAudio(audio) if audio is not None else self._parsed(message)

    def _parsed(self, message: dict[str, object]) -> types.LiveServerMessage:
        # What the SDK's AsyncSession._receive does with a message it has read.
        if self._vertexai:
            converted = _live_converters._LiveServerMessage_from_vertex(message)
        else:
            converted = _live_converters._LiveServerMessage_from_mldev(message)
        if not converted and message:
            errors.APIError.raise_error(message.get("code"), message, None)  # type: ignore[arg-type]
        return types.LiveServerMessage._from_response(response=converted, kwargs={})

    async def close(self) -> None:
        await self._session.close()


def model_audio(message: dict[str, object]) -> bytes | None:
    """The PCM of a message that is `serverContent.modelTurn` with only inline audio parts."""
    if len(message) != 1:
        return None
    content = message.get("serverContent")
    if not isinstance(content, dict) or len(content) != 1:
        return None
    turn = content.get("modelTurn")
    if not isinstance(turn, dict) or not isinstance(parts := turn.get("parts"), list) or not parts:
        return None
    if any(key not in ("parts", "role") for key in turn):
        return None
    chunks = []
    for part in parts:
        if not isinstance(part, dict) or len(part) != 1:
            return None
        blob = part.get("inlineData")
        if not isinstance(blob, dict) or not isinstance(data := blob.get("data"), str):
            return None
        if not str(blob.get("mimeType", "")).startswith("audio/") or len(blob) != 2:
            return None
        chunks.append(_decoded(data))
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _decoded(data: str) -> bytes:
    """Base64 as the SDK's pydantic models read it. Google's JSON carries bytes in the standard
    alphabet, decoded as it is; the URL-safe one is mapped first by a byte table. pybase64's SIMD
    decoder takes a well-formed string (about 20 times binascii's speed on a 100 ms chunk);
    anything else goes to binascii's lenient decoder, with the padding the SDK does not require."""
    raw = data.encode("ascii")
    if b"-" in raw or b"_" in raw:
        raw = raw.translate(_STANDARD_ALPHABET)
    try:
        return pybase64.b64decode(raw, validate=True)
    except ValueError:
        return binascii.a2b_base64(raw + b"=" * (-len(raw) % 4))
