"""Who gets in: Host allow-list, Origin with its scheme, the token on every route but /health,
the page's login by form or fragment, security headers, redirects, docs, storage modes, keys."""

import logging
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from config import Settings
from edge import TOKEN_COOKIE, host_allowed, same_origin
from main import SessionClients, Upstream, create_app
from services.gemini_client import UpstreamTarget
from tests.fakes import FakeConnector, FakeExtractor, FakeLiveSession
from tests.test_edge import with_settings
from tests.test_relay import end, open_ready, receive_until

TOKEN = "tok-guard-123"


def sessions(n: int = 3) -> FakeConnector:
    return FakeConnector(*(FakeLiveSession() for _ in range(n)))


@pytest.mark.unit
def test_host_and_origin_comparisons_include_scheme_and_port():
    assert host_allowed("localhost:8000", ["localhost"])
    assert host_allowed("a.clinic.example", ["*.clinic.example"])
    assert not host_allowed("rebind.example:8000", ["localhost", "127.0.0.1"])
    assert not host_allowed(None, ["*"])
    assert same_origin("http://127.0.0.1:80", "http://127.0.0.1")
    assert not same_origin("https://127.0.0.1:8000", "http://127.0.0.1:8000")
    assert not same_origin("http://127.0.0.1:8001", "http://127.0.0.1:8000")


@pytest.mark.websocket
def test_a_rebinding_host_is_refused_on_http_and_websocket_and_the_real_host_still_served(make_app):
    with TestClient(make_app(sessions())) as client:
        evil = {"host": "rebind.example:8000"}
        assert client.get("/api-key-status", headers=evil).status_code == 400
        assert client.get("/health", headers=evil).status_code == 400
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/ws", headers={**evil, "origin": "http://rebind.example:8000"}):
                pass
        assert refused.value.code == 1008
        assert client.get("/api-key-status", headers={"host": "localhost:8000"}).status_code == 200
        ws, session = open_ready(client)
        assert end(ws, session) == 1000


@pytest.mark.websocket
@pytest.mark.parametrize(
    "origin", ["null", "https://testserver", "http://testserver:8443", "http://evil.example"]
)
def test_a_foreign_origin_a_wrong_scheme_and_null_are_refused_then_the_page_is_served(
    make_app, origin, caplog
):
    connector = sessions()
    with TestClient(make_app(connector)) as client:
        with caplog.at_level(logging.WARNING, logger="intake.edge"):
            with pytest.raises(WebSocketDisconnect) as refused:
                with client.websocket_connect("/ws", headers={"origin": origin}):
                    pass
        assert refused.value.code == 1008
        assert connector.configs == []
        (line,) = [r.getMessage() for r in caplog.records if r.name == "intake.edge"]
        assert origin in line and "CORS_ORIGINS" in line
        ws = client.websocket_connect("/ws", headers={"origin": "http://testserver"})
        session = ws.__enter__()
        receive_until(session, "status")
        assert end(ws, session) == 1000


@pytest.mark.websocket
def test_the_configured_public_origin_is_allowed_from_another_allowed_host(make_app, settings):
    app_settings = with_settings(settings, PUBLIC_ORIGIN="https://intake.clinic.example")
    with TestClient(make_app(sessions(), app_settings=app_settings)) as client:
        ws = client.websocket_connect("/ws", headers={"origin": "https://intake.clinic.example"})
        session = ws.__enter__()
        receive_until(session, "status")
        assert end(ws, session) == 1000


@pytest.fixture
def guarded(make_app, settings: Settings) -> Iterator[TestClient]:
    app = make_app(sessions(), app_settings=with_settings(settings, ACCESS_TOKEN=TOKEN))
    with TestClient(app) as client:
        yield client


@pytest.mark.integration
@pytest.mark.parametrize(
    "path", ["/app/", "/app/app.js", "/docs", "/redoc", "/openapi.json", "/", "/nowhere"]
)
def test_the_token_covers_every_path_but_health(guarded, path):
    assert guarded.get(path).status_code == 401
    assert guarded.get("/health").status_code == 200


@pytest.mark.integration
def test_a_cors_preflight_needs_no_token_and_the_real_request_still_does(guarded):
    asked = {"origin": "http://localhost:8000", "access-control-request-method": "GET"}
    preflight = guarded.options(
        "/api-key-status", headers={**asked, "access-control-request-headers": "authorization"}
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://localhost:8000"
    assert guarded.get("/api-key-status", headers={"origin": "http://localhost:8000"}).status_code == 401


@pytest.mark.integration
def test_the_page_without_a_token_gets_a_form_and_the_form_sets_a_cookie_that_opens_page_and_socket(guarded):
    form = guarded.get("/app/")
    assert form.status_code == 401 and 'action="/login"' in form.text and "/login.js" in form.text
    assert "#token=" not in form.text and TOKEN not in form.text
    assert "location.hash" in guarded.get("/login.js").text

    wrong = guarded.post("/login", data={"token": "nope"}, follow_redirects=False)
    assert wrong.status_code == 401 and TOKEN_COOKIE not in wrong.cookies
    assert guarded.get("/app/").status_code == 401

    right = guarded.post("/login", data={"token": TOKEN}, follow_redirects=False)
    assert right.status_code == 303 and right.headers["location"] == "http://127.0.0.1:8000/app/"
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = guarded.get("/app/")
    assert page.status_code == 200 and "Patient intake" in page.text
    assert guarded.get("/api-key-status").status_code == 200
    ws, session = open_ready(guarded)  # the cookie travels with the upgrade
    assert end(ws, session) == 1000


@pytest.mark.integration
def test_a_login_post_from_a_foreign_origin_is_refused(guarded):
    refused = guarded.post("/login", data={"token": TOKEN}, headers={"origin": "http://evil.example"})
    assert refused.status_code == 403
    assert guarded.post("/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303


@pytest.mark.integration
def test_every_html_response_carries_the_security_headers(make_app):
    with TestClient(make_app(sessions())) as client:
        for path in ("/app/", "/login"):
            response = client.get(path)
            assert response.headers["content-type"].startswith("text/html")
            csp = response.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
            assert "unsafe-inline" not in csp
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "same-origin"
            assert response.headers["cache-control"] == "no-store"


@pytest.mark.integration
def test_a_redirect_names_the_configured_origin_not_the_request_host(make_app, settings):
    app_settings = with_settings(settings, PUBLIC_ORIGIN="https://intake.clinic.example")
    with TestClient(make_app(sessions(), app_settings=app_settings)) as client:
        moved = client.get("/app", headers={"host": "localhost:8000"}, follow_redirects=False)
        assert moved.status_code in (301, 307)
        assert moved.headers["location"] == "https://intake.clinic.example/app/"


@pytest.mark.integration
def test_docs_are_off_unless_enabled(make_app, settings):
    with TestClient(make_app(sessions())) as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/openapi.json").status_code == 404
    with TestClient(make_app(sessions(), app_settings=with_settings(settings, ENABLE_DOCS=True))) as client:
        assert client.get("/openapi.json").json()["info"]["title"] == "Voice medical intake"
        assert "swagger" in client.get("/docs").text.lower()


@pytest.mark.integration
def test_an_existing_data_directory_becomes_owner_only_at_start(make_app, settings):
    settings.DATA_DIR.mkdir(mode=0o755, parents=True)
    settings.DATA_DIR.chmod(0o755)
    with TestClient(make_app(sessions())) as client:
        assert client.get("/health").status_code == 200
    assert stat.S_IMODE(Path(settings.DATA_DIR).stat().st_mode) == 0o700


def keyed_app(settings: Settings, server_key: str | None, source: str, used: list[str]):
    def clients(key: str) -> SessionClients:
        used.append(key)
        return SessionClients(FakeConnector(FakeLiveSession()), FakeExtractor())

    upstream = Upstream(UpstreamTarget("custom", "https://upstream.invalid"), server_key, source)
    return create_app(settings, upstream=upstream, clients=clients)


@pytest.mark.websocket
def test_the_servers_key_wins_over_a_browser_key(settings):
    used: list[str] = []
    with TestClient(keyed_app(settings, "clinic-key", "environment", used)) as client:
        assert client.get("/api-key-status").json()["browser_key_required"] is False
        ws, session = open_ready(client, "/ws?api_key=typed-by-a-patient")
        assert end(ws, session) == 1000
    assert used == ["clinic-key"]


@pytest.mark.websocket
def test_a_browser_key_is_used_when_the_server_has_none_unless_disallowed(settings):
    used: list[str] = []
    with TestClient(keyed_app(settings, None, "none", used)) as client:
        assert client.get("/api-key-status").json()["browser_key_required"] is True
        ws, session = open_ready(client, "/ws?api_key=patient-key")
        assert end(ws, session) == 1000
    assert used == ["patient-key"]
    closed = with_settings(settings, ALLOW_BROWSER_KEY=False)
    with TestClient(keyed_app(closed, None, "none", used)) as client:
        assert client.get("/api-key-status").json()["browser_key_required"] is False
        with client.websocket_connect("/ws?api_key=patient-key") as session:
            assert session.receive_json()["code"] == "no_api_key"
    assert used == ["patient-key"]
