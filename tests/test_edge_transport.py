"""The server as `serve()` configures uvicorn, on a real port: no deflate, frames capped just above
the app's limits, a pong pile-up dropped, slow headers cut off, X-Forwarded-For not believed."""

import asyncio
import base64
import json
import os
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from config import Settings
from edge_transport import FRAME_MARGIN_BYTES, uvicorn_config
from main import IntakeServer
from tests.fakes import FakeConnector, FakeLiveSession
from tests.test_edge import with_settings

pytestmark = [pytest.mark.integration, pytest.mark.websocket]


@contextmanager
def serving(make_app: Any, settings: Settings, sessions: int = 4) -> Iterator[int]:
    app = make_app(FakeConnector(*(FakeLiveSession() for _ in range(sessions))), app_settings=settings)
    config = uvicorn_config(app, settings, host="127.0.0.1", port=0, log_level="warning")
    server = IntakeServer(config, app)
    thread = threading.Thread(target=server.run, name="edge-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=15)


OTHER = ("127.0.0.2", 0)  # another client's address, on loopback


async def ready(port: int, **options: Any) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{port}/ws", **options)
    while (message := json.loads(await ws.recv()))["type"] != "status" or message["state"] != "ready":
        pass
    return ws


async def refused_code(ws: ClientConnection) -> str:
    while (message := json.loads(await ws.recv()))["type"] != "error":
        pass
    return str(message["code"])


async def test_deflate_is_not_negotiated_and_an_oversized_frame_closes_only_that_socket(make_app, settings):
    with serving(make_app, settings) as port:
        ws = await ready(port, compression="deflate", max_size=None)
        assert ws.protocol.extensions == []
        limit = settings.MAX_BINARY_FRAME_BYTES
        await ws.send(bytes(limit + 2))  # within the margin: the app answers and goes on
        assert await refused_code(ws) == "frame_too_large"
        await ws.send(bytes(limit + FRAME_MARGIN_BYTES + 2))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        with pytest.raises(InvalidStatus) as refused:  # that address waits a while
            await connect(f"ws://127.0.0.1:{port}/ws")
        assert refused.value.response.status_code == 429
        again = await ready(port, local_addr=OTHER)
        await again.send(json.dumps({"type": "end_session"}))
        await again.wait_closed()
        assert again.close_code == 1000


def _handshake(port: int) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def _ping(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x89, 0x80 | len(payload)) + mask + body


async def test_a_client_that_pings_without_reading_is_dropped_and_others_are_served(make_app, settings):
    with serving(make_app, settings) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=4096)
        writer.write(_handshake(port))
        await reader.readuntil(b"\r\n\r\n")
        burst = _ping(b"p" * 125) * 512
        dropped = False
        async with asyncio.timeout(30):
            while not dropped:
                writer.write(burst)
                try:
                    await writer.drain()
                except ConnectionError:
                    dropped = True
                if writer.transport.is_closing() or reader.at_eof():
                    dropped = True
        writer.close()
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/health")).json()["status"] == "healthy"
        with pytest.raises(InvalidStatus) as refused:  # its reconnects cost a refusal, no session
            await connect(f"ws://127.0.0.1:{port}/ws")
        assert refused.value.response.status_code == 429
        ws = await ready(port, local_addr=OTHER)
        await ws.close()


async def test_a_request_whose_headers_never_finish_is_cut_off_and_the_next_is_served(make_app, settings):
    with serving(make_app, with_settings(settings, HEADER_TIMEOUT_SECONDS=0.5)) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # the server closed it
        writer.close()
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200


async def open_with_forwarded_for(port: int, address: str) -> tuple[ClientConnection, str]:
    ws = await connect(f"ws://127.0.0.1:{port}/ws", additional_headers={"X-Forwarded-For": address})
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "error":
            return ws, message["code"]
        if message.get("state") == "ready":
            return ws, "ready"


@pytest.mark.parametrize(("trusted", "admitted"), [("", 2), ("127.0.0.1", 3)])
async def test_forged_forwarded_for_moves_the_per_client_count_only_from_a_trusted_proxy(
    make_app, settings, trusted, admitted
):
    limited = with_settings(settings, MAX_SESSIONS_PER_CLIENT=2, FORWARDED_ALLOW_IPS=trusted)
    with serving(make_app, limited) as port:
        opened = [await open_with_forwarded_for(port, f"203.0.113.{n}") for n in (1, 2, 3)]
        outcomes = [code for _, code in opened]
        assert outcomes.count("ready") == admitted
        assert outcomes[admitted:] == ["too_many_sessions"] * (3 - admitted)
        for ws, _ in opened:
            await ws.close()
