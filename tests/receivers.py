"""Real receivers for staff notifications: an HTTP server and an SMTP server, each on a free port."""

import email
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    items: list[Any] = field(default_factory=list)
    failures_left: int = 0
    attempts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, within: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + within
        while True:
            with self.lock:
                if len(self.items) >= count:
                    return list(self.items)
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.items)} of {count} deliveries within {within} s")
            time.sleep(0.01)

    def take_attempt(self) -> bool:
        """Counts an attempt; False while it is one of the failures the test asked for."""
        with self.lock:
            self.attempts += 1
            if self.failures_left > 0:
                self.failures_left -= 1
                return False
            return True


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    # time.monotonic() on arrival, comparable with the test's own clock (same process).
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded


@contextmanager
def webhook_receiver(*, fail_first: int = 0) -> Iterator[tuple[str, Received]]:
    received = Received(failures_left=fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if not received.take_attempt():
                self.send_response(503)
            else:
                with received.lock:
                    received.items.append(Delivery(dict(self.headers.items()), body))
                self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def smtp_receiver(*, fail_first: int = 0) -> Iterator[tuple[str, Received]]:
    received = Received(failures_left=fail_first)

    class Handler:
        async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
            if not received.take_attempt():
                return "451 Try again later"
            content = envelope.content if isinstance(envelope.content, bytes) else b""
            message: Message = email.message_from_bytes(content)
            with received.lock:
                received.items.append((list(envelope.rcpt_tos), message))
            return "250 OK"

    port = _free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", received
    finally:
        controller.stop()
