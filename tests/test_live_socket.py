"""The audio path around the SDK writes and reads exactly what the SDK itself would."""

import base64
import json
from collections import deque

import pytest
from google.genai import errors, live, types
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import Close

from services.live_socket import LiveSocket, ModelAudio

PCM = bytes(range(256)) * 25
MIME = "audio/pcm;rate=16000"


class RecordingSocket:
    """Stands in for the SDK's websocket: records what is sent, replays what it is given."""

    def __init__(self, *incoming: bytes, closed: Exception | None = None) -> None:
        self.sent: list[str] = []
        self._incoming = deque(incoming)
        self._closed = closed or ConnectionClosedOK(Close(1000, ""), Close(1000, ""), True)

    async def send(self, message: str) -> None:
        self.sent.append(message)

    async def recv(self, decode: bool | None = None) -> bytes:
        if not self._incoming:
            raise self._closed
        return self._incoming.popleft()


class ApiClient:
    def __init__(self, vertexai: bool) -> None:
        self.vertexai = vertexai


def sdk_session(socket: RecordingSocket, vertexai: bool = False) -> live.AsyncSession:
    return live.AsyncSession(api_client=ApiClient(vertexai), websocket=socket)  # type: ignore[arg-type]


def audio_part(data: str) -> dict[str, object]:
    return {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}


def audio_message(*chunks: bytes, **extra: object) -> dict[str, object]:
    parts = [audio_part(base64.b64encode(c).decode()) for c in chunks]
    return {"serverContent": {"modelTurn": {"parts": parts}, **extra}}


MESSAGES = [
    {"setupComplete": {}},
    audio_message(PCM),
    audio_message(PCM[:100], PCM[100:300]),
    {"serverContent": {"modelTurn": {"parts": [audio_part(base64.urlsafe_b64encode(PCM).decode())]}}},
    {"serverContent": {"modelTurn": {"role": "model", "parts": [audio_part("AAEC")]}}},
    # Unpadded base64: the SDK reads it.
    {"serverContent": {"modelTurn": {"parts": [audio_part("AAE")]}}},
    audio_message(PCM, turnComplete=True),
    {"serverContent": {"outputTranscription": {"text": "Hello, what brings you in?"}}},
    {"serverContent": {"inputTranscription": {"text": "a sore throat"}}},
    {"serverContent": {"interrupted": True}},
    {"serverContent": {"turnComplete": True}},
    {"serverContent": {"modelTurn": {"parts": [{"text": "thinking"}]}}},
    {"toolCall": {"functionCalls": [{"id": "c1", "name": "complete_intake", "args": {}}]}},
    {"toolCallCancellation": {"ids": ["c1"]}},
    {"goAway": {"timeLeft": "10s"}},
    {"sessionResumptionUpdate": {"newHandle": "h-2", "resumable": True}},
    {"usageMetadata": {"totalTokenCount": 12}},
    {**audio_message(PCM), "usageMetadata": {"totalTokenCount": 3}},
    {"serverContent": {"generationComplete": True}, "someFutureField": {"x": 1}},
]


@pytest.mark.parametrize("vertexai", [False, True])
async def test_an_audio_frame_is_the_json_the_sdk_sends(vertexai: bool) -> None:
    by_sdk, by_us = RecordingSocket(), RecordingSocket()
    await sdk_session(by_sdk, vertexai).send_realtime_input(audio=types.Blob(data=PCM, mime_type=MIME))
    await LiveSocket(sdk_session(by_us, vertexai), vertexai=vertexai).send_audio(PCM, MIME)
    assert json.loads(by_us.sent[0]) == json.loads(by_sdk.sent[0])


async def test_the_end_of_the_audio_stream_goes_through_the_sdk() -> None:
    socket = RecordingSocket()
    await LiveSocket(sdk_session(socket), vertexai=False).send_audio_stream_end()
    assert json.loads(socket.sent[0]) == {"realtime_input": {"audioStreamEnd": True}}


@pytest.mark.parametrize("vertexai", [False, True])
async def test_every_message_reads_as_the_sdk_reads_it(vertexai: bool) -> None:
    raw = [json.dumps(m).encode() for m in MESSAGES]
    sdk = sdk_session(RecordingSocket(*raw), vertexai)
    expected = [await sdk._receive() for _ in raw]
    ours = []
    socket = LiveSocket(sdk_session(RecordingSocket(*raw), vertexai), vertexai=vertexai)
    with pytest.raises(errors.APIError):
        async for message in socket.receive():
            ours.append(message)
    assert len(ours) == len(expected)
    fast = 0
    for got, want in zip(ours, expected, strict=True):
        if isinstance(got, ModelAudio):
            fast += 1
            assert want.server_content is not None and want.server_content.model_turn is not None
            parts = want.server_content.model_turn.parts or []
            assert got.data == b"".join(p.inline_data.data or b"" for p in parts if p.inline_data)
            assert want.server_content.turn_complete is None and want.usage_metadata is None
        else:
            assert got == want
    # The plain audio messages (one part, several parts, URL-safe, with a role, unpadded) took the
    # cheap path; an audio message that also ends the turn or carries usage did not.
    assert fast == 5


@pytest.mark.parametrize(
    ("closed", "code"),
    [
        (ConnectionClosedOK(Close(1000, "bye"), Close(1000, "bye"), True), 1000),
        (ConnectionClosedError(Close(1011, "internal"), None), 1011),
        (ConnectionClosedError(None, None), 1006),
    ],
)
async def test_a_closed_socket_ends_the_stream_with_the_sdks_error(closed: Exception, code: int) -> None:
    socket = LiveSocket(sdk_session(RecordingSocket(closed=closed)), vertexai=False)
    with pytest.raises(errors.APIError) as raised:
        async for _ in socket.receive():
            pass
    assert raised.value.code == code


async def test_a_message_that_is_not_json_is_refused() -> None:
    socket = LiveSocket(sdk_session(RecordingSocket(b"{not json")), vertexai=False)
    with pytest.raises(ValueError, match="Failed to parse response"):
        async for _ in socket.receive():
            pass
