"""A real server on a free loopback port, relaying to a real simulator, and a browser-like client."""

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from config import Settings
from main import IntakeServer, Upstream, create_app
from services.gemini_client import UpstreamTarget
from simulator import RunningSimulator

CHUNK = 3200  # 100 ms of 16 kHz PCM16


@dataclass
class LiveServer:
    base_url: str
    ws_url: str
    app: Any


@contextmanager
def live_server(settings: Settings, sim: RunningSimulator, *, server_key: str | None = None) -> Iterator[LiveServer]:
    upstream = Upstream(UpstreamTarget("simulator", sim.base_url, sim.ca_file), server_key, "simulator")
    app = create_app(settings, upstream=upstream)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws_ping_interval=None)
    server = IntakeServer(config, app)
    thread = threading.Thread(target=server.run, name="intake-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the intake server did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws", app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


class BrowserClient:
    """Plays the browser: a reader task logs every frame with its arrival time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._arrived = asyncio.Event()
        self.closed: asyncio.Future[tuple[int | None, str | None]] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(), name="browser-client")

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                message = {"type": "audio", "size": len(raw)} if isinstance(raw, bytes) else json.loads(raw)
                self.events.append((time.monotonic(), message))
                self._arrived.set()
        except ConnectionClosed:
            pass  # the close code and reason are what the tests look at
        finally:
            if not self.closed.done():
                self.closed.set_result((self.ws.close_code, self.ws.close_reason))
            self._arrived.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for _, m in self.events if m["type"] == kind]

    def kinds(self) -> list[str]:
        return [m["type"] for _, m in self.events]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while len(self.of_type(kind)) < count:
            if self.closed.done():
                raise AssertionError(f"closed {self.closed.result()} before {kind!r} #{count}: {self.kinds()}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind!r} #{count} within {timeout} s: {self.kinds()[-20:]}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                continue
        return self.of_type(kind)[count - 1]

    async def speak(self, pcm: bytes, pace: float = 0.005) -> None:
        """Send speech in 100 ms frames, faster than real time (the simulator's VAD counts audio time)."""
        for start in range(0, len(pcm), CHUNK):
            await self.ws.send(pcm[start : start + CHUNK])
            await asyncio.sleep(pace)

    async def close(self) -> None:
        await self.ws.close()
        await self._reader
