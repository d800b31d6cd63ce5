"""The doors and the limits: origin, access token, admission, idle timeout, audit, redaction,
graceful shutdown, and the simulator's tool-cancellation and bad-extraction faults."""

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from bench.patient import BrowserClient, converse, open_browser
from config import Settings
from simulator import RunningSimulator, load_scenario
from simulator.speech import patient_audio
from tests.fakes import FakeConnector, FakeLiveSession
from tests.live_support import LiveServer, live_server
from tests.sim_support import running_simulator
from tests.test_relay import CHUNK, end, open_ready, receive_until

ROOT = Path(__file__).resolve().parent.parent
FOREIGN = "https://evil.example"


def with_settings(settings: Settings, **changes: Any) -> Settings:
    return Settings(_env_file=None, **{**settings.model_dump(), **changes})  # type: ignore[call-arg]


@pytest.mark.websocket
@pytest.mark.parametrize("origin", [None, "http://testserver", "http://localhost:8000"])
def test_websocket_from_no_same_or_allowed_origin_is_served(make_app, origin):
    headers = {} if origin is None else {"origin": origin}
    with TestClient(make_app(FakeConnector(FakeLiveSession()))) as client:
        ws = client.websocket_connect("/ws", headers=headers)
        session = ws.__enter__()
        receive_until(session, "status")
        assert end(ws, session) == 1000


@pytest.mark.websocket
def test_websocket_from_a_foreign_origin_is_refused_before_accept(make_app):
    upstream = FakeLiveSession()
    connector = FakeConnector(upstream)
    with TestClient(make_app(connector)) as client:
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/ws", headers={"origin": FOREIGN}):
                pass
        assert refused.value.code == 1008
    assert connector.configs == []


@pytest.fixture
def guarded(make_app, settings: Settings) -> Iterator[TestClient]:
    app_settings = with_settings(settings, ACCESS_TOKEN="tok-secret-123")
    app = make_app(FakeConnector(FakeLiveSession(), FakeLiveSession()), app_settings=app_settings)
    with TestClient(app) as client:
        yield client


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/", "/api-key-status"])
def test_http_endpoints_need_the_access_token(guarded, path):
    assert guarded.get(path).status_code == 401
    assert guarded.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert guarded.get(path, params={"token": "tok-secret-12"}).status_code == 401
    assert guarded.get(path, headers={"Authorization": "Bearer tok-secret-123"}).status_code == 200
    assert guarded.get(path, params={"token": "tok-secret-123"}).status_code == 200


@pytest.mark.integration
def test_health_stays_open_with_an_access_token(guarded):
    assert guarded.get("/health").json()["status"] == "healthy"


@pytest.mark.websocket
@pytest.mark.parametrize("path", ["/ws", "/ws?token=wrong"])
def test_websocket_without_the_access_token_is_refused(guarded, path):
    with guarded.websocket_connect(path) as session:
        assert session.receive_json()["code"] == "unauthorized"
        with pytest.raises(WebSocketDisconnect) as closed:
            session.receive_json()
    assert closed.value.code == 1008


@pytest.mark.websocket
def test_websocket_with_the_access_token_in_the_query_or_header_is_served(guarded):
    ws, session = open_ready(guarded, "/ws?token=tok-secret-123")
    assert end(ws, session) == 1000
    ws = guarded.websocket_connect("/ws", headers={"Authorization": "Bearer tok-secret-123"})
    session = ws.__enter__()
    receive_until(session, "status")
    assert end(ws, session) == 1000


@pytest.mark.websocket
def test_beyond_max_sessions_is_refused_with_1013_while_the_first_goes_on(make_app, settings):
    first = FakeLiveSession()
    connector = FakeConnector(first, FakeLiveSession())
    app = make_app(connector, app_settings=with_settings(settings, MAX_SESSIONS=1))
    with TestClient(app) as client:
        ws, session = open_ready(client)
        with client.websocket_connect("/ws") as refused:
            error = refused.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                refused.receive_json()
        assert error["code"] == "too_many_sessions" and "limit of 1" in error["message"]
        assert closed.value.code == 1013
        health = client.get("/health").json()
        assert (health["status"], health["open_sessions"], health["last_connect"]) == ("healthy", 1, "ok")
        session.send_json({"type": "interrupt"})
        assert receive_until(session, "interrupted")
        assert end(ws, session) == 1000
        assert client.get("/health").json()["open_sessions"] == 0
    assert len(connector.configs) == 1


@pytest.mark.websocket
def test_per_client_limit_refuses_a_second_session_from_the_same_address_only(make_app, settings):
    connector = FakeConnector(FakeLiveSession(), FakeLiveSession(), FakeLiveSession())
    app = make_app(connector, app_settings=with_settings(settings, MAX_SESSIONS=5, MAX_SESSIONS_PER_CLIENT=1))
    with TestClient(app, client=("10.0.0.1", 5000)) as same:
        ws, session = open_ready(same)
        with same.websocket_connect("/ws") as refused:
            error = refused.receive_json()
            with pytest.raises(WebSocketDisconnect) as closed:
                refused.receive_json()
        assert error["code"] == "too_many_sessions" and "your address" in error["message"]
        assert closed.value.code == 1013
        # Another address shares the app (and its registry) but not the first one's quota.
        other = TestClient(app, client=("10.0.0.2", 5000))
        other.portal = same.portal  # the same event loop as the app's lifespan and its database
        ws2, session2 = open_ready(other)
        assert same.get("/health").json()["open_sessions"] == 2
        assert end(ws2, session2) == 1000
        assert end(ws, session) == 1000


@pytest.mark.websocket
def test_idle_session_ends_with_idle_timeout(make_app, settings):
    upstream = FakeLiveSession()
    app = make_app(FakeConnector(upstream), app_settings=with_settings(settings, IDLE_TIMEOUT_SECONDS=0.3))
    with TestClient(app) as client, client.websocket_connect("/ws") as session:
        error = receive_until(session, "error")[-1]
        with pytest.raises(WebSocketDisconnect) as closed:
            session.receive_json()
    assert error["code"] == "idle_timeout" and "0.3 s" in error["message"]
    assert closed.value.code == 1000
    assert upstream.closed


@pytest.mark.websocket
def test_a_session_that_keeps_talking_outlives_the_idle_limit_then_ends_once_it_stops(make_app, settings):
    first, second = FakeLiveSession(), FakeLiveSession()
    limited = with_settings(settings, IDLE_TIMEOUT_SECONDS=0.4)
    app = make_app(FakeConnector(first, second), app_settings=limited)
    with TestClient(app) as client:
        ws, session = open_ready(client)
        for _ in range(12):  # 1.2 s of audio in real time: three times the limit
            session.send_bytes(CHUNK)
            time.sleep(0.1)
        error = receive_until(session, "error")[-1]
        assert error["code"] == "idle_timeout"
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                session.receive_json()
        assert closed.value.code == 1000
        ws.__exit__(None, None, None)
        # Every frame went upstream: the session was not cut off while audio was arriving.
        assert sum(len(blob.data or b"") for blob in first.audio_in) == 12 * len(CHUNK)
        # And the next patient's session opens and ends as usual.
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        assert end(ws, session) == 1000


@pytest.mark.integration
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """`python main.py` on a free port with the built-in simulator, output captured to a file."""

    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.port = free_port()
        self.data = tmp_path / "data"
        self.output = tmp_path / "server.log"
        environ = {k: v for k, v in os.environ.items() if k != "GEMINI_API_KEY"}
        environ.update(
            UPSTREAM="simulator",
            SIMULATOR_TIME_SCALE="0.05",
            MAX_AUDIO_SPEED="1000",
            PORT=str(self.port),
            DATA_DIR=str(self.data),
            PYTHONUNBUFFERED="1",
        )
        environ.update(env)
        self._log = self.output.open("wb")
        # cwd is tmp_path so no developer .env is read.
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py")],
            cwd=tmp_path,
            env=environ,
            stdout=self._log,
            stderr=self._log,
        )
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"

    def wait_healthy(self, within: float = 15.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.text()
            try:
                if httpx.get(self.base_url + "/health", params={"token": "x"}).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"server did not come up: {self.text()}")

    def text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.output.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[type[ServerProcess]]:
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        process = ServerProcess(tmp_path, **env)
        started.append(process)
        process.wait_healthy()
        return process

    yield start  # type: ignore[misc]
    for process in started:
        process.stop()


@pytest.mark.integration
@pytest.mark.slow
async def test_no_key_or_token_reaches_the_log_even_at_debug(server_process):
    token, key = "tok-secret-123", "AIzaSyD-fake-key-0123456789abcdef"
    server = server_process(ACCESS_TOKEN=token, LOG_LEVEL="DEBUG")
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/", params={"token": token})).status_code == 200
        assert (await http.get("/api-key-status", params={"token": token})).status_code == 200
    client = await open_browser(server.ws_url, key, query=f"&token={token}")
    await client.wait_for("turn_complete")
    await client.ws.send('{"type": "end_session"}')
    assert (await asyncio.wait_for(client.closed, 5))[0] == 1000
    await asyncio.sleep(0.3)
    server.stop()
    output = server.text()
    assert token not in output and "AIzaSyD" not in output and "0123456789abcdef" not in output
    assert '"GET /?token=[redacted] HTTP/1.1" 200' in output
    assert "/ws?api_key=[redacted]&token=[redacted]" in output
    assert "session" in output and "opened" in output


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.requires_gemini
async def test_a_debug_run_through_a_gateway_url_with_credentials_logs_no_secret(server_process):
    token, key, password = "tok-marker-7781", "AIzaSyMARKERkey0123456789abcdefgh", "gwpass-marker-9912"
    with running_simulator(time_scale=0.05) as sim:
        host = sim.base_url.split("://", 1)[1]
        server = server_process(
            UPSTREAM="auto",
            GEMINI_API_KEY=key,
            GEMINI_BASE_URL=f"https://gw:{password}@{host}",
            GEMINI_CA_FILE=str(sim.ca_file),
            ACCESS_TOKEN=token,
            LOG_LEVEL="DEBUG",
        )
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            assert (await http.get(f"/?tok%65n={token}")).status_code == 200
            assert (await http.get(f"/api-key-status?api%5Fkey={key}&token={token}")).status_code == 200
            assert (await http.get("/", headers={"Authorization": f"Bearer {token}"})).status_code == 200
            login = await http.post("/login", data={"token": token})
            assert login.status_code == 303
        client = await open_browser(server.ws_url, key, query=f"&token={token}")
        await client.wait_for("turn_complete")
        await client.ws.send('{"type": "end_session"}')
        assert (await asyncio.wait_for(client.closed, 5))[0] == 1000
        server.stop()
    output = server.text()
    for secret in (token, key, password, "MARKERkey"):
        assert secret not in output
    assert "x-goog-api-key" not in output.lower() and "authorization:" not in output.lower()
    assert "GET /?tok%65n=[redacted] HTTP/1.1" in output
    assert "session" in output and "opened" in output and "DEBUG" in output


@pytest.mark.integration
@pytest.mark.slow
async def test_sigterm_tells_the_browser_saves_the_conversation_and_exits_cleanly(server_process):
    server = server_process(SHUTDOWN_GRACE_SECONDS="3")
    client = await open_browser(server.ws_url, "sim:simple_visit")
    await client.wait_for("turn_complete")  # the opening line is in the history
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    code, _ = await asyncio.wait_for(client.closed, 5)
    returncode = await asyncio.to_thread(server.process.wait, 10)
    assert time.monotonic() - started < 3 + 5
    assert client.of_type("error")[-1]["code"] == "server_shutdown"
    assert client.kinds()[-1] == "error"
    assert code == 1001
    # uvicorn re-raises the SIGTERM it captured once its graceful shutdown is done.
    assert returncode in (0, -signal.SIGTERM), server.text()
    assert server.text().rstrip().endswith(f"Finished server process [{server.process.pid}]")
    assert "Application shutdown complete." in server.text()
    database = server.data / "intake.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    # Read with the standard library: the server process is gone, only its database remains.
    intake_id = client.of_type("status")[0]["session_id"]
    with contextlib.closing(sqlite3.connect(database)) as db:
        ended = db.execute(
            "SELECT status, owner, resumable_until IS NOT NULL FROM intakes WHERE id = ?", (intake_id,)
        ).fetchone()
        first = db.execute(
            'SELECT role FROM turns WHERE intake_id = ? ORDER BY "index"', (intake_id,)
        ).fetchone()
    # Saved and let go of: resumable for RESUME_GRACE_SECONDS by the server that comes back.
    assert ended == ("in_progress", None, 1)
    assert first == ("assistant",)


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with running_simulator(time_scale=0.05) as simulator:
        yield simulator


@pytest.fixture
def live(settings: Settings, sim: RunningSimulator) -> Iterator[LiveServer]:
    # No fallback or live extraction, so every generateContent request comes from complete_intake.
    quiet = with_settings(settings, FALLBACK_EXTRACTION_TURNS=1000, LIVE_EXTRACTION_TURNS=0)
    with live_server(quiet, sim) as running:
        yield running


async def wait_upstreams_closed(sim: RunningSimulator) -> None:
    for _ in range(100):
        if not sim.stats()["open_sessions"]:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("an upstream session stayed open")


async def end_session(client: BrowserClient) -> int | None:
    await client.ws.send('{"type": "end_session"}')
    code, _ = await asyncio.wait_for(client.closed, 5)
    return code


@pytest.mark.integration
@pytest.mark.requires_gemini
@pytest.mark.slow
async def test_cancelled_tool_call_gets_no_intake_complete_and_the_retry_does(live, sim, settings):
    sim.reset_stats()
    client = await open_browser(live.ws_url, "sim:simple_visit;cancel_tool_call")
    await converse(client, "simple_visit", finish=None)
    # The simulator cancels its first complete_intake and ends the turn without a goodbye.
    await client.wait_for("turn_complete", len(load_scenario("simple_visit").exchanges) + 2)
    await asyncio.sleep(0.5)  # an extraction that was not cancelled answers well within this
    assert client.of_type("intake_complete") == []
    assert not [m for m in client.of_type("extracted_data") if m["final"]]

    await client.speak(patient_audio("simple_visit")[-1])  # confirms again
    await client.wait_for("intake_complete")
    await asyncio.sleep(0.3)
    assert len(client.of_type("intake_complete")) == 1
    assert len([m for m in client.of_type("extracted_data") if m["final"]]) == 1
    assert await end_session(client) == 1000
    await wait_upstreams_closed(sim)

    (record,) = sim.stats()["sessions"]
    assert len(record["tool_call_ids"]) == 2 and record["cancelled_call_ids"] == record["tool_call_ids"][:1]
    with contextlib.closing(sqlite3.connect(settings.DATA_DIR / "intake.db")) as db:
        rows = db.execute(
            "SELECT event, fields FROM audit_events WHERE intake_id = ? ORDER BY at, id",
            (client.of_type("status")[0]["session_id"],),
        ).fetchall()
    events = [{"event": event, **json.loads(fields)} for event, fields in rows]
    cancelled = [e for e in events if e["event"] == "tool_call_cancelled"]
    assert cancelled and cancelled[0]["ids"] == record["tool_call_ids"][:1]
    assert [e["ok"] for e in events if e["event"] == "extraction"] == [True]


@pytest.mark.integration
@pytest.mark.requires_gemini
@pytest.mark.slow
async def test_bad_extraction_is_retried_once_then_reported_and_the_session_goes_on(live, sim):
    sim.reset_stats()
    client = await open_browser(live.ws_url, "sim:simple_visit;bad_extraction")
    await converse(client, "simple_visit", finish="error")
    error = client.of_type("error")[-1]
    assert error["code"] == "extraction_failed" and "schema" in error["message"]
    # The goodbye still arrives and the session still answers.
    await client.wait_for("turn_complete", len(load_scenario("simple_visit").exchanges) + 2)
    await client.ws.send('{"type": "interrupt"}')
    await client.wait_for("interrupted")
    assert client.of_type("intake_complete") == []
    assert await end_session(client) == 1000
    await wait_upstreams_closed(sim)
    requests = sim.stats()["generate_content_requests"]
    assert len(requests) == 2 and all(r["bad_extraction"] for r in requests)
