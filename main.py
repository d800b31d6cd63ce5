"""The FastAPI server: HTTP endpoints, the static page, and the /ws relay endpoint."""

import asyncio
import logging
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from api.auth import staff_name
from api.intakes import router as intakes_router
from api.notifications import router as notifications_router
from config import Settings, get_settings
from edge import EdgeGuard, presented_token, secure_storage, token_matches
from edge_transport import uvicorn_config
from gemini_live import IntakeSession, SessionDeps, SessionEnded, UpstreamHealth
from gemini_live.admission import SessionRegistry
from gemini_live.resume import ResumeDesk
from gemini_live.shared_admission import SharedAdmission, Slot
from schemas import ErrorMessage
from services import metrics
from services.extraction import Extractor, IntakeExtractor
from services.gemini_client import (
    ClientPool,
    GenaiConnector,
    LiveConnector,
    UpstreamKind,
    UpstreamTarget,
)
from services.live_config import prepare_models
from services.notifications import Notifier
from services.storage.db import SchemaOutdated
from services.storage.intakes import IntakeStore
from services.storage.resumption import RestoredIntake
from services.storage.runtime import open_storage
from services.tls_certificate import TLS_DIR, ensure_certificate, trust_steps
from tablet import tablet_routes
from utils.gc_tuning import freeze_startup_heap
from utils.log_redaction import logging_config

VERSION = "0.1.0"
SIMULATOR_KEY = "simulator-local"
WEB_DIR = Path(__file__).parent / "web"
CLINIC_DIR = WEB_DIR / "clinic"
logger = logging.getLogger("intake")


@dataclass(frozen=True)
class SessionClients:
    """What one session talks to upstream with, and how to release it afterwards."""

    connector: LiveConnector
    extractor: Extractor
    release: Callable[[], Awaitable[None]] | None = None


ClientsFactory = Callable[[str], SessionClients]


@dataclass
class Upstream:
    """The upstream in use and the key the server holds for it (None: browsers bring one)."""

    target: UpstreamTarget
    server_key: str | None
    key_source: str
    stop: Callable[[], None] = field(default=lambda: None)


def resolve_upstream(settings: Settings) -> Upstream:
    if settings.uses_simulator:
        from simulator import SimulatorConfig, start_simulator

        sim = start_simulator(
            SimulatorConfig(
                host="127.0.0.1",
                port=0,
                tls=True,
                scenario=settings.SIMULATOR_SCENARIO,
                time_scale=settings.SIMULATOR_TIME_SCALE,
            )
        )
        logger.warning(
            "NO GEMINI_API_KEY: relaying to the built-in Gemini SIMULATOR at %s (scripted replies, "
            "scenario %s). Set GEMINI_API_KEY to talk to Google.",
            sim.base_url,
            settings.SIMULATOR_SCENARIO,
        )
        target = UpstreamTarget("simulator", sim.base_url, sim.ca_file)
        return Upstream(target, SIMULATOR_KEY, "simulator", stop=sim.stop)
    key = settings.GEMINI_API_KEY.get_secret_value() if settings.GEMINI_API_KEY else None
    kind: UpstreamKind = "custom" if settings.GEMINI_BASE_URL else "google"
    target = UpstreamTarget(kind, settings.GEMINI_BASE_URL, settings.GEMINI_CA_FILE)
    return Upstream(target, key, "environment" if key else "none")


@dataclass
class AppState:
    settings: Settings
    upstream: Upstream
    registry: SessionRegistry
    clients: ClientsFactory
    records: IntakeStore
    notifier: Notifier
    health: UpstreamHealth = field(default_factory=UpstreamHealth)
    # Set with REDIS_URL: the limits hold across every process sharing that Redis.
    shared: SharedAdmission | None = None
    # Set when RESUME_GRACE_SECONDS > 0: dropped intakes can be picked up again, on any process.
    resumes: ResumeDesk | None = None


def create_app(
    settings: Settings | None = None,
    *,
    upstream: Upstream | None = None,
    clients: ClientsFactory | None = None,
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        secure_storage(settings)
        prepare_models(settings)
        storage = await open_storage(settings)
        resolved = upstream or resolve_upstream(settings)
        pool = ClientPool(resolved.target, keep=resolved.server_key)
        app.state.intake = AppState(
            settings=settings,
            upstream=resolved,
            registry=SessionRegistry(
                max_sessions=settings.MAX_SESSIONS, max_per_client=settings.MAX_SESSIONS_PER_CLIENT
            ),
            clients=clients or _google_clients(settings, pool),
            records=storage.store,
            shared=_shared_admission(settings),
            notifier=Notifier.from_settings(settings, storage.sessions),
            resumes=(
                ResumeDesk(storage.store.resumes, flush=storage.store.flush)
                if storage.store.resumes is not None
                else None
            ),
        )
        registry = app.state.intake.registry
        metrics.watch_queues(
            lambda: (s.queue_depths() for s in registry.sessions if isinstance(s, IntakeSession))
        )
        freeze_startup_heap()
        background = [asyncio.create_task(metrics.watch_loop_lag(), name="event-loop-lag")]
        if (shared := app.state.intake.shared) is not None:
            background.append(asyncio.create_task(shared.renew_forever(), name="admission-renew"))
        if (resumes := app.state.intake.resumes) is not None:
            background.append(asyncio.create_task(resumes.run_forever(), name="resume-heartbeat"))
        scheme = "https" if settings.serves_tls else "http"
        logger.info("serving the intake page at %s://%s:%d/app/", scheme, settings.HOST, settings.PORT)
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await app.state.intake.registry.shutdown_all(settings.SHUTDOWN_GRACE_SECONDS)
            await pool.close()
            if shared is not None:
                await shared.close()
            resolved.stop()
            await app.state.intake.notifier.close(settings.SHUTDOWN_GRACE_SECONDS)
            await storage.close()

    docs = settings.ENABLE_DOCS
    app = FastAPI(
        title="Voice medical intake",
        version=VERSION,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.CORS_ORIGINS,
        allow_methods=["GET"],
        allow_headers=["Authorization"],
    )
    # Outermost: Host, Origin and token are settled before any route or CORS runs.
    app.add_middleware(
        EdgeGuard,
        allowed_hosts=settings.allowed_hosts,
        cors_origins=settings.CORS_ORIGINS,
        public_origin=settings.public_origin,
        access_token=settings.ACCESS_TOKEN.get_secret_value() if settings.ACCESS_TOKEN else None,
    )

    def state(request: Request) -> AppState:
        intake: AppState = request.app.state.intake
        return intake

    State = Annotated[AppState, Depends(state)]

    @app.get("/")
    async def root(app_state: State) -> dict[str, Any]:
        return {
            "service": "Voice medical intake",
            "version": VERSION,
            "status": "running",
            "live_model": app_state.settings.GEMINI_LIVE_MODEL,
            "extraction_model": app_state.settings.GEMINI_EXTRACTION_MODEL,
            "upstream": app_state.upstream.target.kind,
            **app_state.health.as_dict(),
            "app": "/app/",
            "websocket": "/ws",
        }

    @app.get("/health")
    async def health(app_state: State) -> dict[str, Any]:
        registry = app_state.registry
        return {
            "status": "shutting_down" if registry.shutting_down else "healthy",
            "open_sessions": registry.open_sessions,
            "upstream": app_state.upstream.target.kind,
            **app_state.health.as_dict(),
        }

    @app.get("/api-key-status")
    async def api_key_status(app_state: State) -> dict[str, Any]:
        resolved = app_state.upstream
        return {
            "configured": resolved.server_key is not None,
            "source": resolved.key_source,
            "upstream": resolved.target.kind,
            "browser_key_required": resolved.server_key is None and browser_key_allowed(app_state),
            # The tutorial's frontend asks the patient for a key unless this is true.
            "has_api_key": resolved.server_key is not None or resolved.target.kind == "simulator",
        }

    app.include_router(intakes_router)
    token = settings.METRICS_TOKEN.get_secret_value() if settings.METRICS_TOKEN else None
    app.add_api_route("/metrics", metrics.metrics_endpoint(token), include_in_schema=False)
    app.include_router(notifications_router)

    app.include_router(tablet_routes(settings))
    if CLINIC_DIR.is_dir():
        # The staff workspace; its data comes from /api/ with a staff token.
        app.mount("/clinic", StaticFiles(directory=CLINIC_DIR, html=True), name="clinic")
    if WEB_DIR.is_dir():
        app.mount("/app", StaticFiles(directory=WEB_DIR, html=True), name="app")

    @app.websocket("/ws")
    async def intake_socket(websocket: WebSocket) -> None:
        await run_intake_socket(websocket, websocket.app.state.intake)

    return app


def _google_clients(settings: Settings, pool: ClientPool) -> ClientsFactory:
    def clients(key: str) -> SessionClients:
        # Sessions share a client only with sessions holding the same key.
        client = pool.acquire(key)
        return SessionClients(
            GenaiConnector(client, settings.GEMINI_LIVE_MODEL),
            IntakeExtractor(
                client, settings.GEMINI_EXTRACTION_MODEL, timeout=settings.EXTRACTION_TIMEOUT_SECONDS
            ),
            release=lambda: pool.release(key),
        )

    return clients


def _shared_admission(settings: Settings) -> SharedAdmission | None:
    if settings.REDIS_URL is None:
        return None
    from redis.asyncio import Redis

    return SharedAdmission(
        Redis.from_url(settings.REDIS_URL.get_secret_value()),
        max_sessions=settings.MAX_SESSIONS,
        max_per_client=settings.MAX_SESSIONS_PER_CLIENT,
        prefix=settings.REDIS_KEY_PREFIX,
    )


def browser_key_allowed(app_state: AppState) -> bool:
    allowed = app_state.settings.ALLOW_BROWSER_KEY
    return allowed if allowed is not None else app_state.upstream.key_source != "environment"


def session_key(websocket: WebSocket, app_state: AppState) -> str | None:
    """The server's own key always wins; a browser's key is used only when the server has none
    (the built-in simulator's placeholder counts as none, so a page can pick a scenario)."""
    resolved = app_state.upstream
    if resolved.key_source == "environment":
        return resolved.server_key
    browser = websocket.query_params.get("api_key") if browser_key_allowed(app_state) else None
    return browser or resolved.server_key


async def _refuse(websocket: WebSocket, error: ErrorMessage, code: int) -> None:
    await websocket.accept()
    await websocket.send_text(error.model_dump_json())
    await websocket.close(code=code, reason=error.message[:120])


async def run_intake_socket(websocket: WebSocket, app_state: AppState) -> None:
    settings = app_state.settings
    # Host and Origin were checked by EdgeGuard before this endpoint ran.
    if settings.ACCESS_TOKEN is not None and not token_matches(
        presented_token(websocket), settings.ACCESS_TOKEN.get_secret_value()
    ):
        await _refuse(
            websocket, ErrorMessage(code="unauthorized", message="A valid access token is required."), 1008
        )
        return
    if staff_name(presented_token(websocket), settings.STAFF_TOKENS) is not None:
        await _refuse(
            websocket, ErrorMessage(code="unauthorized", message="Staff tokens do not open intakes."), 1008
        )
        return
    api_key = session_key(websocket, app_state)
    if not api_key:
        await _refuse(
            websocket,
            ErrorMessage(
                code="no_api_key",
                message="No Gemini API key: the server has none, so the page must send one.",
            ),
            1008,
        )
        return
    if not _well_formed_key(api_key):
        await _refuse(
            websocket,
            ErrorMessage(code="bad_api_key", message="The API key is malformed: it must be printable ASCII."),
            1008,
        )
        return
    client = websocket.client.host if websocket.client else "unknown"
    registry = app_state.registry
    if (why := registry.refusal(client)) is not None:
        await _refuse(websocket, ErrorMessage(code="too_many_sessions", message=why), 1013)
        return
    slot: Slot | None = None
    if app_state.shared is not None:
        admitted = await app_state.shared.admit(client)
        if isinstance(admitted, str):
            await _refuse(websocket, ErrorMessage(code="too_many_sessions", message=admitted), 1013)
            return
        slot = admitted
    registry.reserve(client)
    metrics.SESSIONS_ACTIVE.inc()
    session: IntakeSession | None = None
    try:
        await websocket.accept()
        session_id = uuid.uuid4().hex
        session = IntakeSession(websocket, _session_deps(app_state, api_key, session_id, client))
        registry.attach(session, client)
        logger.info("session %s opened (upstream %s)", session_id, app_state.upstream.target.kind)
        outcome = await session.run()
        while outcome.resume is not None:
            # The first message resumed an earlier intake: this socket carries on with that one.
            restored = outcome.resume
            registry.release(client, session)
            registry.reserve(client)
            session = IntakeSession(
                websocket, _session_deps(app_state, api_key, restored.session_id, client, restored)
            )
            registry.attach(session, client)
            logger.info("session %s resumed (generation %d)", session.id, restored.generation)
            outcome = await session.run()
    except (ValidationError, ValueError) as exc:
        logger.exception("session could not start")
        outcome = SessionEnded(
            "internal_error",
            close_code=1011,
            error=ErrorMessage(code="internal_error", message=str(exc)[:200]),
        )
    except Exception:
        logger.exception("session failed")
        outcome = SessionEnded(
            "internal_error",
            close_code=1011,
            error=ErrorMessage(code="internal_error", message="The server hit an unexpected error."),
        )
    finally:
        registry.release(client, session)
        metrics.SESSIONS_ACTIVE.dec()
        if slot is not None and app_state.shared is not None:
            await app_state.shared.release(slot)
    metrics.SESSIONS_ENDED.labels(outcome.reason).inc()
    if session is not None:
        logger.info("session %s closed: %s", session.id, outcome.reason)
    await _close(websocket, outcome)


def _well_formed_key(key: str) -> bool:
    # A key travels in an HTTP header: CR, LF or non-ASCII would fail every connect as an "outage".
    return 0 < len(key) <= 256 and all(" " < char < "\x7f" for char in key)


def _session_deps(
    app_state: AppState,
    api_key: str,
    session_id: str,
    client: str,
    restored: RestoredIntake | None = None,
) -> SessionDeps:
    settings = app_state.settings
    clients = app_state.clients(api_key)
    return SessionDeps(
        settings=settings,
        connector=clients.connector,
        extractor=clients.extractor,
        release=clients.release,
        upstream_kind=app_state.upstream.target.kind,
        records=app_state.records.for_session(session_id),
        health=app_state.health,
        session_id=session_id,
        client=client,
        alerts=app_state.notifier,
        resumes=app_state.resumes,
        restored=restored,
    )


async def _close(websocket: WebSocket, outcome: SessionEnded) -> None:
    if websocket.application_state is not WebSocketState.CONNECTED:
        return
    if websocket.client_state is not WebSocketState.CONNECTED:
        return
    try:
        if outcome.error is not None:
            await websocket.send_text(outcome.error.model_dump_json())
        await websocket.close(code=outcome.close_code, reason=outcome.reason)
    except (RuntimeError, OSError, WebSocketDisconnect):
        pass  # the browser left while we were saying goodbye


async def _check_storage(settings: Settings) -> None:
    storage = await open_storage(settings, purge=False)
    await storage.close()


class IntakeServer(uvicorn.Server):
    """Tells open sessions about a SIGTERM before uvicorn starts closing connections."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        app_state: AppState = self._app.state.intake
        await app_state.registry.shutdown_all(app_state.settings.SHUTDOWN_GRACE_SECONDS)
        await super().shutdown(sockets)


def serve(settings: Settings, sockets: list[socket.socket] | None = None) -> None:
    try:
        asyncio.run(_check_storage(settings))
    except SchemaOutdated as exc:
        sys.exit(f"refusing to start: {exc}")
    app = create_app(settings)
    cert_file, key_file, certificate = settings.TLS_CERT_FILE, settings.TLS_KEY_FILE, None
    if settings.TLS_SELF_SIGNED:
        certificate = ensure_certificate(settings.DATA_DIR / TLS_DIR, settings.HOST)
        cert_file, key_file = certificate.cert_file, certificate.key_file
    config = uvicorn_config(
        app,
        settings,
        log_config=logging_config(settings.LOG_LEVEL),
        timeout_graceful_shutdown=int(settings.SHUTDOWN_GRACE_SECONDS) + 5,
        ssl_certfile=cert_file,
        ssl_keyfile=key_file,
    )
    for line in trust_steps(certificate, settings.HOST, settings.PORT) if certificate else []:
        logger.info("%s", line)
    IntakeServer(config, app).run(sockets=sockets)


def serve_workers(settings: Settings, sockets: list[socket.socket]) -> None:
    if settings.WORKERS == 1:
        serve(settings, sockets)
        return
    from workers import run_workers

    # The schema and certificate are made once here, so the workers find them rather than race.
    try:
        asyncio.run(_check_storage(settings))
    except SchemaOutdated as exc:
        sys.exit(f"refusing to start: {exc}")
    if settings.TLS_SELF_SIGNED:
        ensure_certificate(settings.DATA_DIR / TLS_DIR, settings.HOST)
    sys.exit(run_workers(settings.WORKERS, lambda: serve(settings, sockets)))


# `uvicorn main:app --workers N` (or gunicorn's uvicorn worker) builds the app from the
# environment and .env in each process, on first use rather than at import.
app: FastAPI


def __getattr__(name: str) -> FastAPI:
    if name != "app":
        raise AttributeError(name)
    global app
    app = create_app()
    return app


if __name__ == "__main__":
    from startup import checked_start

    settings, listener = checked_start()
    serve_workers(settings, [listener])
