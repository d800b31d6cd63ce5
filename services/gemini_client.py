"""Builds google-genai clients for the configured upstream and opens Live sessions."""

import os
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import certifi
from google import genai
from google.genai import types

from services.live_socket import LiveSocket, ModelAudio

UpstreamKind = Literal["google", "simulator", "custom"]

# The SDK retries generateContent (not the Live socket) with exponential backoff and jitter
# on connection errors, timeouts and these statuses; 400/401/403 fail at once. Three
# retries wait about 0.5, 1 and 2 s (plus up to 1 s of jitter each), well inside
# EXTRACTION_TIMEOUT_SECONDS, which bounds the whole call.
EXTRACTION_RETRY = types.HttpRetryOptions(
    attempts=4,
    initial_delay=0.5,
    max_delay=8.0,
    exp_base=2.0,
    jitter=1.0,
    http_status_codes=[408, 429, 500, 502, 503, 504],
)


class LiveUpstream(Protocol):
    """What the relay does with a Live session (services/live_socket.py wraps the SDK's)."""

    async def send_audio(self, pcm: bytes, mime_type: str) -> None: ...

    async def send_audio_stream_end(self) -> None: ...

    async def send_tool_response(self, *, function_responses: list[types.FunctionResponse]) -> None: ...

    async def send_client_content(
        self, *, turns: types.Content | list[types.Content | types.ContentDict], turn_complete: bool = True
    ) -> None: ...

    def receive(self) -> AsyncIterator[types.LiveServerMessage | ModelAudio]: ...

    async def close(self) -> None: ...


class LiveConnector(Protocol):
    def connect(self, config: types.LiveConnectConfig) -> AbstractAsyncContextManager[LiveUpstream]: ...


@dataclass(frozen=True)
class UpstreamTarget:
    """Where the server's google-genai clients point, and how they trust it."""

    kind: UpstreamKind
    base_url: str | None = None
    ca_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        # The trust the SDK would load itself (SSL_CERT_FILE, else certifi), but loaded once.
        cafile = str(self.ca_file) if self.ca_file else os.environ.get("SSL_CERT_FILE", certifi.where())
        return ssl.create_default_context(cafile=cafile)

    def client(self, api_key: str, ctx: ssl.SSLContext | None = None) -> genai.Client:
        ctx = ctx or self.ssl_context()
        http_options = types.HttpOptions(base_url=self.base_url, retry_options=EXTRACTION_RETRY)
        # "ssl" reaches the Live websocket, "verify" the httpx client for generateContent; the SDK
        # hands each transport only the arguments it takes. Compression is off on the Live socket:
        # deflating base64 PCM on every frame cost more CPU than the socket's JSON (bench/relay.py).
        http_options.client_args = {"verify": ctx}
        http_options.async_client_args = {"verify": ctx, "ssl": ctx, "compression": None}
        return genai.Client(api_key=api_key, http_options=http_options)


class ClientPool:
    """One google-genai client per API key, shared by that key's sessions, on one SSL context.

    Building a client loads a certificate store twice (~30 ms on the event loop) unless it is
    handed a context; sharing also keeps one HTTP connection pool per key for extraction. A
    browser's key gets its own client, closed when its last session ends; the server's own key
    keeps its client until shutdown."""

    def __init__(self, target: UpstreamTarget, *, keep: str | None = None) -> None:
        self._target = target
        self._ssl = target.ssl_context()
        self._keep = keep
        self._clients: dict[str, tuple[genai.Client, int]] = {}
        if keep is not None:
            # Built now, at start-up: the first client also imports the SDK's HTTP stack (about
            # 40 ms), which inside the first patient's connect held up every other connect.
            self._clients[keep] = (target.client(keep, self._ssl), 0)

    def acquire(self, api_key: str) -> genai.Client:
        client, users = self._clients.get(api_key) or (self._target.client(api_key, self._ssl), 0)
        self._clients[api_key] = (client, users + 1)
        return client

    async def release(self, api_key: str) -> None:
        client, users = self._clients[api_key]
        if users > 1 or api_key == self._keep:
            self._clients[api_key] = (client, users - 1)
            return
        del self._clients[api_key]
        await close_client(client)

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for client, _ in clients.values():
            await close_client(client)


async def close_client(client: genai.Client) -> None:
    await client.aio.aclose()
    client.close()


class GenaiConnector:
    """Opens real google-genai Live sessions for one API key."""

    def __init__(self, client: genai.Client, model: str) -> None:
        self._client = client
        self._model = model

    @asynccontextmanager
    async def connect(self, config: types.LiveConnectConfig) -> AsyncIterator[LiveUpstream]:
        async with self._client.aio.live.connect(model=self._model, config=config) as session:
            yield LiveSocket(session, vertexai=self._client.vertexai)
