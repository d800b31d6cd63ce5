"""A real server on a free loopback port, relaying to a real simulator, and a browser-like client."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from bench.patient import CHUNK, BrowserClient
from config import Settings
from main import IntakeServer, Upstream, create_app
from services.gemini_client import UpstreamTarget
from simulator import RunningSimulator

__all__ = ["CHUNK", "BrowserClient", "LiveServer", "live_server"]


@dataclass
class LiveServer:
    base_url: str
    ws_url: str
    app: Any


@contextmanager
def live_server(
    settings: Settings, sim: RunningSimulator, *, server_key: str | None = None
) -> Iterator[LiveServer]:
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
