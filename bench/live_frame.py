"""What one 100 ms audio frame costs on the Live socket: through the SDK, and through LiveSocket.

    python -m bench.live_frame

Up: 100 ms of 16 kHz PCM16 written as a realtime-input message. Down: 100 ms of 24 kHz PCM16 in
a server message, read into bytes. The websocket is a stand-in that records and replays, so only
the Python work per frame is timed (no socket, no TLS).
"""

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable

from google.genai import live, types

from services.live_socket import LiveSocket

UP = bytes(range(256)) * 12 + bytes(128)  # 3,200 bytes
DOWN = bytes(range(256)) * 18 + bytes(192)  # 4,800 bytes
MIME = "audio/pcm;rate=16000"
ROUNDS = 5000


class StandInSocket:
    def __init__(self, incoming: bytes) -> None:
        self.incoming = incoming

    async def send(self, message: str) -> None:
        pass

    async def recv(self, decode: bool | None = None) -> bytes:
        return self.incoming


class ApiClient:
    vertexai = False


async def per_frame(step: Callable[[], Awaitable[object]]) -> float:
    for _ in range(200):
        await step()
    started = time.perf_counter()
    for _ in range(ROUNDS):
        await step()
    return (time.perf_counter() - started) / ROUNDS * 1e6


async def main() -> None:
    message = {
        "serverContent": {"modelTurn": {"parts": [{"inlineData": {"mimeType": "audio/pcm;rate=24000"}}]}}
    }
    message["serverContent"]["modelTurn"]["parts"][0]["inlineData"]["data"] = base64.b64encode(DOWN).decode()
    socket = StandInSocket(json.dumps(message).encode())
    session = live.AsyncSession(api_client=ApiClient(), websocket=socket)  # type: ignore[arg-type]
    ours = LiveSocket(session, vertexai=False)
    blob = types.Blob(data=UP, mime_type=MIME)
    stream = ours.receive()

    async def sdk_up() -> None:
        await session.send_realtime_input(audio=blob)

    async def our_up() -> None:
        await ours.send_audio(UP, MIME)

    async def sdk_down() -> object:
        return await session._receive()

    async def our_down() -> object:
        return await anext(stream)

    print(f"per 100 ms frame, {ROUNDS} frames each")
    for direction, sdk, ours_ in (("up", sdk_up, our_up), ("down", sdk_down, our_down)):
        print(
            f"{direction:<5} SDK {await per_frame(sdk):6.1f} us   LiveSocket {await per_frame(ours_):6.1f} us"
        )


if __name__ == "__main__":
    asyncio.run(main())
