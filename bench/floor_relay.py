"""The least a relay on this server's stack can do, for `python -m bench.relay --floor`.

Same stack as `main.py`: uvicorn (uvloop, httptools, the sansio WebSocket protocol, no deflate),
the SDK's `live.connect` with the same setup, `LiveSocket`'s audio path, and the four tasks joined
by bounded queues the server is built as. Nothing else: no validation, pacing, metrics, records,
resumption, limits or edge checks. Its CPU per session-second is the floor the server's is read
against; it is not a server for patients.
"""

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import uvicorn
from fastapi import FastAPI, WebSocket
from fastapi.responses import PlainTextResponse
from starlette.websockets import WebSocketDisconnect

from config import Settings
from services.gemini_client import UpstreamTarget
from services.live_config import live_connect_config
from services.live_socket import LiveSocket, ModelAudio

INPUT_MIME = "audio/pcm;rate=16000"
# As in the server: a full inbound queue stops the socket being read; outbound holds a reply.
INBOUND_FRAMES = 64
OUTBOUND_FRAMES = 256

settings = Settings()
key = settings.GEMINI_API_KEY.get_secret_value() if settings.GEMINI_API_KEY else ""
client = UpstreamTarget(kind="custom", base_url=settings.GEMINI_BASE_URL).client(key)
app = FastAPI()
open_sessions = 0


@app.get("/health")
async def health() -> dict[str, int]:
    return {"open_sessions": open_sessions}


@app.get("/metrics")
async def metrics() -> PlainTextResponse:
    return PlainTextResponse("")  # the bench's server-side columns print nan


@app.websocket("/ws")
async def relay(websocket: WebSocket) -> None:
    global open_sessions
    await websocket.accept()
    open_sessions += 1
    try:
        config = live_connect_config(settings, resume_handle=None)
        async with client.aio.live.connect(model=settings.GEMINI_LIVE_MODEL, config=config) as session:
            await websocket.send_json({"type": "status", "state": "ready"})
            await _run(websocket, LiveSocket(session, vertexai=False))
        await websocket.close()
    finally:
        open_sessions -= 1


async def _run(websocket: WebSocket, upstream: LiveSocket) -> None:
    inbound: asyncio.Queue[bytes] = asyncio.Queue(INBOUND_FRAMES)
    outbound: asyncio.Queue[bytes] = asyncio.Queue(OUTBOUND_FRAMES)

    async def from_browser() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes"):
                await inbound.put(message["bytes"])
            elif json.loads(message.get("text") or "{}").get("type") == "end_session":
                return

    async def to_upstream() -> None:
        while True:
            await upstream.send_audio(await inbound.get(), INPUT_MIME)

    async def from_upstream() -> None:
        async for message in upstream.receive():
            if isinstance(message, ModelAudio):
                await outbound.put(message.data)

    async def to_browser() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.send_bytes(await outbound.get())

    bodies: list[Callable[[], Awaitable[None]]] = [from_browser, to_upstream, from_upstream, to_browser]
    tasks = [asyncio.create_task(body()) for body in bodies]
    # The first to end ends the session; the others are cancelled and awaited.
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in done:
        task.result()  # an upstream error is the session's error


if __name__ == "__main__":
    uvicorn.run(
        app,
        host=settings.HOST,
        port=settings.PORT,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        ws="websockets-sansio",
        ws_per_message_deflate=False,
    )
