"""uvicorn set up on purpose: WebSocket limits, a request-header deadline, no pong pile-up.

uvicorn's defaults accept 16 MiB frames with per-message deflate on (a few KB inflate to 16 MiB
on the event loop), answer every ping with a pong written without back-pressure, and wait
forever for request headers. Here deflate is off, frames are capped just above the app's own
limits, a connection whose unread pongs pile up is dropped, and headers must arrive in time.
"""

import asyncio
import logging
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from config import Settings

logger = logging.getLogger("intake.edge")

# Room above the app's own frame limits, so a slightly large frame still gets the app's
# `frame_too_large` and the session goes on; anything bigger closes the socket with 1009.
FRAME_MARGIN_BYTES = 1024
# A browser reads what it is sent; a peer that lets this much (pongs, mostly) sit unread in our
# write buffer while it keeps sending is dropped. Well above one burst of the assistant's audio.
MAX_UNREAD_BYTES = 1024 * 1024
# Browsers never ping; the websockets client pings every 20 s. A flood is dropped at once.
MAX_PINGS_PER_SECOND = 20
_FRAME_LOGGER = logging.getLogger("websockets.server")


class PenaltyBox:
    """Addresses that just abused a socket (ping flood, oversized or malformed frame) get their
    next upgrades refused before any session starts, so a reconnect loop costs next to nothing."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._until: dict[str, float] = {}

    def add(self, address: str, now: float) -> None:
        if len(self._until) > 10_000:  # bounded: forget the expired ones first
            self._until = {a: t for a, t in self._until.items() if t > now}
        self._until[address] = now + self.seconds

    def holds(self, address: str, now: float) -> bool:
        return self._until.get(address, 0.0) > now


def guarded_ws_protocol(penalties: PenaltyBox) -> type[WebSocketsSansIOProtocol]:
    class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # websockets logs every frame (and every handshake header) at DEBUG; a ping flood
            # would then be a logging flood that stalls the event loop. Frames are never logged.
            self.conn.logger = _FRAME_LOGGER
            self.conn.debug = False
            self._ping_window = 0.0
            self._pings = 0

        @property
        def _address(self) -> str:
            return self.client[0] if self.client else "unknown"

        def handle_connect(self, event: Request) -> None:
            if penalties.holds(self._address, self.loop.time()):
                self.handshake_initiated = self.handshake_complete = self.close_sent = True
                self.conn.send_response(self.conn.reject(429, "Too many bad frames; try again later.\n"))
                self.transport.write(b"".join(self.conn.data_to_send()))
                self.transport.close()
                return
            super().handle_connect(event)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            sent = self.conn.close_sent
            if sent is not None and sent.code in (1002, 1007, 1009):
                self._drop(f"closed with {sent.code}")

        def handle_ping(self) -> None:
            if self.transport.is_closing():
                return  # dropped already; the rest of this read's frames are ignored
            now = self.loop.time()
            if now - self._ping_window >= 1.0:
                self._ping_window, self._pings = now, 0
            self._pings += 1
            unread = self.transport.get_write_buffer_size()
            if self._pings > MAX_PINGS_PER_SECOND or unread > MAX_UNREAD_BYTES:
                self._drop(f"{self._pings} pings in a second, {unread} bytes of pongs unread")
                self.transport.abort()
                return
            super().handle_ping()

        def _drop(self, why: str) -> None:
            if not penalties.holds(self._address, self.loop.time()):
                logger.warning(
                    "WebSocket from %s dropped (%s); its upgrades are refused for %g s",
                    self._address,
                    why,
                    penalties.seconds,
                )
            penalties.add(self._address, self.loop.time())

    return GuardedWebSocketProtocol


def header_deadline_protocol(seconds: float) -> type[HttpToolsProtocol]:
    """httptools' protocol with a deadline on each request's headers (slow-header upgrades)."""

    class HeaderDeadlineProtocol(HttpToolsProtocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadlineProtocol


def uvicorn_config(
    app: ASGIApp, settings: Settings, *, penalty_seconds: float = 10.0, **overrides: Any
) -> uvicorn.Config:
    trusted = ",".join(settings.FORWARDED_ALLOW_IPS)
    # Behind a proxy every peer is the proxy: penalising it would refuse every patient.
    penalties = PenaltyBox(0.0 if trusted else penalty_seconds)
    options: dict[str, Any] = {
        "host": settings.HOST,
        "port": settings.PORT,
        "http": header_deadline_protocol(settings.HEADER_TIMEOUT_SECONDS),
        "ws": guarded_ws_protocol(penalties),
        "ws_per_message_deflate": False,
        "ws_max_size": max(settings.MAX_BINARY_FRAME_BYTES, settings.MAX_TEXT_FRAME_BYTES)
        + FRAME_MARGIN_BYTES,
        "ws_ping_interval": 20.0,
        "ws_ping_timeout": 20.0,
        # Without a trusted proxy, X-Forwarded-For is ignored and the peer address is the client.
        "proxy_headers": bool(trusted),
        "forwarded_allow_ips": trusted,
        **overrides,
    }
    return uvicorn.Config(app, **options)
