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

from config import Settings

logger = logging.getLogger("intake.edge")

# Room above the app's own frame limits, so a slightly large frame still gets the app's
# `frame_too_large` and the session goes on; anything bigger closes the socket with 1009.
FRAME_MARGIN_BYTES = 1024
# A browser reads what it is sent; a peer that lets this much (pongs, mostly) sit unread in our
# write buffer while it keeps sending is dropped. Well above one burst of the assistant's audio.
MAX_UNREAD_BYTES = 1024 * 1024


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_ping(self) -> None:
        if self.transport.get_write_buffer_size() > MAX_UNREAD_BYTES:
            client = self.client[0] if self.client else "unknown"
            logger.warning("dropped a WebSocket from %s: it sends pings but does not read the pongs", client)
            self.transport.abort()
            return
        super().handle_ping()


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


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    trusted = ",".join(settings.FORWARDED_ALLOW_IPS)
    options: dict[str, Any] = {
        "host": settings.HOST,
        "port": settings.PORT,
        "http": header_deadline_protocol(settings.HEADER_TIMEOUT_SECONDS),
        "ws": GuardedWebSocketProtocol,
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
