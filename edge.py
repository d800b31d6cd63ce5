"""Who may reach the server at all: Host allow-list, Origin check, access token, security headers.

One ASGI middleware in front of every route (HTTP and WebSocket), so a route cannot forget it.
The page gets its token from a form or its URL fragment (never the query, so never a server log)
and keeps it in an HttpOnly, SameSite=Strict cookie that the browser also sends on `/ws`.
"""

import hmac
import logging
from collections.abc import Iterable
from html import escape
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import URL, Headers, MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Settings

logger = logging.getLogger("intake.edge")

TOKEN_COOKIE = "intake_token"
OPEN_PATHS = frozenset({"/health", "/login", "/login.js", "/clinic-ca.crt"})
# The staff API has its own bearer tokens (STAFF_TOKENS); the patient's ACCESS_TOKEN never opens it.
STAFF_PREFIX = "/api/"
METRICS_PATH = "/metrics"
# The staff workspace's files hold no patient data: all it shows comes from /api/ with a staff token.
CLINIC_PREFIX = "/clinic"
LOGIN_BODY_LIMIT = 4096
# No inline script or style anywhere, no framing, nothing from another origin.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; media-src 'self' blob:; worker-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI and ReDoc (only with ENABLE_DOCS) load their assets from jsDelivr.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
    "worker-src 'self' blob:; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}

LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Patient intake: access</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="/login.js" defer></script></head>
<body><main><h1>Patient intake</h1><p>{notice}</p>
<form method="post" action="/login"><label>Access code
<input name="token" type="password" autocomplete="off" required autofocus></label>
<button type="submit">Continue</button></form></main></body></html>
"""
# A link like /app/#token=… opens the page without the token reaching the server's log:
# the fragment is read here, removed from the address bar and posted with the form.
LOGIN_SCRIPT = """const token = new URLSearchParams(location.hash.slice(1)).get('token');
if (token) {
  history.replaceState(null, '', location.pathname);
  const form = document.querySelector('form');
  form.elements.token.value = token;
  form.submit();
}
"""


def same_origin(a: str, b: str) -> bool:
    """Scheme, host and port all equal (default ports made explicit)."""
    first, second = urlsplit(a.lower()), urlsplit(b.lower())
    defaults = {"http": 80, "https": 443, "ws": 80, "wss": 443}
    try:
        return (
            first.scheme == second.scheme
            and first.hostname == second.hostname
            and (first.port or defaults.get(first.scheme)) == (second.port or defaults.get(second.scheme))
        )
    except ValueError:  # a malformed port
        return False


def host_allowed(host_header: str | None, allowed: Iterable[str]) -> bool:
    if not host_header:
        return False
    try:
        hostname = urlsplit(f"//{host_header}").hostname
    except ValueError:
        return False
    if hostname is None:
        return False
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or hostname == pattern:
            return True
        if pattern.startswith("*.") and hostname.endswith(pattern[1:]):
            return True
    return False


def origin_allowed(origin: str | None, scope: Scope, allowed: Iterable[str], public_origin: str) -> bool:
    """CORS does not cover WebSockets, so the upgrade's Origin is checked here, scheme included.
    No Origin (not a browser) passes; `null` (sandboxed frames, file: pages) never does."""
    if origin is None:
        return True
    if origin.strip().lower() == "null":
        return False
    allowed = list(allowed)
    if "*" in allowed or any(same_origin(origin, a) for a in [*allowed, public_origin]):
        return True
    # The page this server serves itself, on an allow-listed Host, with the same scheme.
    scheme = {"ws": "http", "wss": "https"}.get(scope["scheme"], scope["scheme"])
    host = Headers(scope=scope).get("host", "")
    return same_origin(origin, f"{scheme}://{host}")


def presented_token(connection: HTTPConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return connection.cookies.get(TOKEN_COOKIE) or connection.query_params.get("token")


def token_matches(presented: str | None, expected: str) -> bool:
    return presented is not None and hmac.compare_digest(presented.encode(), expected.encode())


class EdgeGuard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: list[str],
        cors_origins: list[str],
        public_origin: str,
        access_token: str | None,
    ) -> None:
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.cors_origins = cors_origins
        self.public_origin = public_origin.rstrip("/")
        self.access_token = access_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        connection = HTTPConnection(scope)
        host = connection.headers.get("host")
        if not host_allowed(host, self.allowed_hosts):
            logger.warning("refused a request for host %r; ALLOWED_HOSTS lists the names served", host)
            await self._refuse(scope, receive, send, 400, "Unknown host.")
            return
        if scope["type"] == "websocket":
            origin = connection.headers.get("origin")
            if not origin_allowed(origin, scope, self.cors_origins, self.public_origin):
                logger.warning(
                    "refused a WebSocket from origin %r; add it to CORS_ORIGINS to allow it", origin
                )
                await self._refuse(scope, receive, send, 403, "Origin not allowed.")
                return
            # The token is checked by the /ws endpoint, which tells the page why in a message.
            await self.app(scope, receive, self._with_headers(send, scope))
            return
        path = scope["path"]
        if path == "/login" or path == "/login.js":
            await self._login(connection, receive, send, scope)
            return
        # A CORS preflight carries no credentials by design; CORSMiddleware answers it.
        preflight = scope["method"] == "OPTIONS" and "access-control-request-method" in connection.headers
        # /metrics checks its own METRICS_TOKEN and /api/ staff tokens; /clinic's files hold no data.
        guarded = (
            path not in OPEN_PATHS
            and not path.startswith((STAFF_PREFIX, CLINIC_PREFIX))
            and path != METRICS_PATH
        )
        if self.access_token is not None and guarded and not preflight:
            if not token_matches(presented_token(connection), self.access_token):
                await self._unauthorized(path)(scope, receive, self._with_headers(send, scope))
                return
        await self.app(scope, receive, self._with_headers(send, scope))

    def _unauthorized(self, path: str) -> Response:
        if path == "/" or path.startswith("/app"):
            return HTMLResponse(LOGIN_PAGE.format(notice="Enter the access code the clinic gave you."), 401)
        return JSONResponse({"detail": "A valid access token is required."}, 401)

    async def _login(self, connection: HTTPConnection, receive: Receive, send: Send, scope: Scope) -> None:
        response: Response
        if scope["path"] == "/login.js":
            response = Response(LOGIN_SCRIPT, media_type="text/javascript")
        elif scope["method"] != "POST":
            response = HTMLResponse(LOGIN_PAGE.format(notice="Enter the access code the clinic gave you."))
        elif not origin_allowed(
            connection.headers.get("origin"), scope, self.cors_origins, self.public_origin
        ):
            response = PlainTextResponse("Origin not allowed.", 403)
        else:
            token = parse_qs((await _read_body(receive)).decode(errors="replace")).get("token", [""])[0]
            if self.access_token is not None and not token_matches(token, self.access_token):
                notice = escape("That access code was not accepted. Check the link or ask the clinic.")
                response = HTMLResponse(LOGIN_PAGE.format(notice=notice), 401)
            else:
                response = RedirectResponse(self.public_origin + "/app/", 303)
                if self.access_token is not None:
                    response.set_cookie(
                        TOKEN_COOKIE,
                        token,
                        httponly=True,
                        samesite="strict",
                        path="/",
                        secure=self.public_origin.startswith("https://"),
                    )
        await response(scope, receive, self._with_headers(send, scope))

    def _with_headers(self, send: Send, scope: Scope) -> Send:
        docs = scope["path"] in ("/docs", "/redoc", "/docs/oauth2-redirect")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
                if headers.get("content-type", "").startswith("text/html"):
                    headers["content-security-policy"] = DOCS_CSP if docs else PAGE_CSP
                if (location := headers.get("location")) is not None:
                    headers["location"] = self._local(location)
            await send(message)

        return send_with_headers

    def _local(self, location: str) -> str:
        """Redirects name the configured public origin, never whatever Host the request carried."""
        url = URL(location)
        if not url.netloc:
            return location
        path = url.path + (f"?{url.query}" if url.query else "")
        return self.public_origin + path

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, text: str) -> None:
        if scope["type"] == "websocket":
            # Closing before accept makes the server answer the upgrade with HTTP 403.
            await send({"type": "websocket.close", "code": 1008, "reason": text})
            return
        await PlainTextResponse(text, status)(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if len(body) > LOGIN_BODY_LIMIT or not message.get("more_body"):
            return body[:LOGIN_BODY_LIMIT]


def secure_storage(settings: Settings) -> None:
    """Patient data lives in an owner-only directory, including one that existed before."""
    settings.DATA_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.DATA_DIR.chmod(0o700)
