"""Runs the simulator on its own thread and event loop, so its pacing is its own."""

import asyncio
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import uvicorn
from pydantic import BaseModel, ConfigDict, Field, field_validator
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request as HandshakeRequest

from simulator.app import create_app
from simulator.hub import Defaults, SimulatorHub
from simulator.live import ABORT_EXTENSION
from simulator.options import SessionOptions
from simulator.scenarios import DEFAULT_SCENARIO, load_scenario
from simulator.tls import TlsFiles, client_context, make_tls_files

logger = logging.getLogger(__name__)

T = TypeVar("T")

STARTUP_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0
SHUTDOWN_ABORT_SECONDS = 0.3


class SimulatorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    tls: bool = True
    scenario: str = DEFAULT_SCENARIO
    time_scale: float = Field(1.0, gt=0, le=100)
    # Simulator-wide defaults for faults and pacing; a `sim:` key overrides them per connection.
    options: SessionOptions = Field(default_factory=SessionOptions)
    # The HTTP control endpoints (/_stats, /_reset, /_defaults): for a simulator on its own.
    controls: bool = False
    # None leaves the process's logging alone, as an embedding server wants; the CLI sets one.
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] | None = None

    @field_validator("scenario")
    @classmethod
    def _known_scenario(cls, name: str) -> str:
        load_scenario(name)
        return name


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """Hands the app a way to drop the TCP connection without a close frame."""

    def handle_connect(self, event: HandshakeRequest) -> None:
        super().handle_connect(event)
        if self.response.status_code == 101:
            extensions = self.scope.setdefault("extensions", {})
            # ASGI extension values are dicts.
            extensions[ABORT_EXTENSION] = {"abort": self.transport.abort}

    def shutdown(self) -> None:
        super().shutdown()
        # A TLS close waits for the peer's close_notify, which a peer that has stopped
        # reading never sends; shutting the socket down ends that wait.
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            self.loop.call_later(SHUTDOWN_ABORT_SECONDS, _shut_down_socket, sock)


def _shut_down_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed, as it is when the peer answered the close


class RunningSimulator:
    def __init__(
        self,
        server: uvicorn.Server,
        thread: threading.Thread,
        loop: asyncio.AbstractEventLoop,
        hub: SimulatorHub,
        base_url: str,
        tls: TlsFiles | None,
    ) -> None:
        self._server = server
        self._thread = thread
        self._loop = loop
        self._hub = hub
        self.base_url = base_url
        self._tls = tls
        self._final_stats: dict[str, Any] | None = None

    @property
    def ca_file(self) -> Path | None:
        return self._tls.ca_file if self._tls else None

    def client_ssl_context(self) -> ssl.SSLContext | None:
        return client_context(self._tls.ca_file) if self._tls else None

    def stats(self) -> dict[str, Any]:
        if self._final_stats is not None:
            return self._final_stats
        return self._on_loop(self._hub.stats.snapshot)

    def reset_stats(self) -> None:
        self._on_loop(self._hub.stats.reset)

    def stop(self) -> None:
        if self._final_stats is not None:
            return
        self._server.should_exit = True
        self._thread.join(STOP_TIMEOUT_SECONDS)
        if self._thread.is_alive():
            logger.warning("the simulator did not stop within %g s", STOP_TIMEOUT_SECONDS)
        # Its loop has finished, so reading the statistics from here no longer races it.
        self._final_stats = self._hub.stats.snapshot()
        if self._tls:
            self._tls.remove()

    def __enter__(self) -> "RunningSimulator":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _on_loop(self, call: Callable[[], T]) -> T:
        async def run() -> T:
            return call()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(STOP_TIMEOUT_SECONDS)


def start_simulator(config: SimulatorConfig | None = None) -> RunningSimulator:
    config = config or SimulatorConfig()
    options = config.options.model_copy(update={"time_scale": config.time_scale})
    hub = SimulatorHub(Defaults(scenario=config.scenario, options=options))
    tls = make_tls_files(config.host) if config.tls else None
    sock = _listening_socket(config.host, config.port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(hub, controls=config.controls),
            host=config.host,
            port=port,
            ssl_certfile=str(tls.server_pem) if tls else None,
            ssl_keyfile=str(tls.server_pem) if tls else None,
            ws=AbortableWebSocketProtocol,
            lifespan="off",
            log_config=LOGGING_CONFIG if config.log_level else None,
            log_level=config.log_level,
            timeout_graceful_shutdown=2,
        )
    )
    loop_ready: list[asyncio.AbstractEventLoop] = []
    failure: list[BaseException] = []

    async def serve() -> None:
        loop_ready.append(asyncio.get_running_loop())
        await server.serve(sockets=[sock])

    def run() -> None:
        try:
            asyncio.run(serve())
        except Exception as exc:
            logger.exception("the simulator stopped with an error")
            failure.append(exc)

    thread = threading.Thread(target=run, name="gemini-simulator", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if failure or not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            if tls:
                tls.remove()
            cause = failure[0] if failure else None
            raise RuntimeError("the simulator did not start") from cause
        time.sleep(0.01)
    scheme = "https" if tls else "http"
    return RunningSimulator(
        server, thread, loop_ready[0], hub, f"{scheme}://{_url_host(config.host)}:{port}", tls
    )


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
