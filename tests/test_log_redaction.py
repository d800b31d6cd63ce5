"""Secrets never reach a log line: keys, tokens (however encoded), URL credentials, headers."""

import io
import logging
import logging.config

import pytest

from utils.log_redaction import logging_config, redact

KEY = "AIzaSyD-fake-key-0123456789abcdef"


@pytest.mark.unit
@pytest.mark.parametrize(
    "line",
    [
        "GET /ws?api_key=SECRET&token=SECRET HTTP/1.1",
        "GET /?tok%65n=SECRET HTTP/1.1",
        "GET /?api%5Fkey=SECRET HTTP/1.1",
        "GET /?api%255Fkey=SECRET HTTP/1.1",
        "GET /?TOKEN=SECRET",
        "connecting to https://gw:SECRET@gateway.example/v1beta",
        "wss://SECRET@host/ws",
        "authorization: Bearer SECRET",
        "x-goog-api-key: SECRET",
        "{'x-goog-api-key': 'SECRET'}",
        "cookie: intake_token=SECRET",
    ],
)
def test_secret_values_are_redacted(line):
    cleaned = redact(line)
    assert "SECRET" not in cleaned and "[redacted]" in cleaned


@pytest.mark.unit
def test_ordinary_lines_are_left_alone():
    line = "session 3f2a opened (upstream simulator) page=/app/ size=3200"
    assert redact(line) == line
    assert redact(f"key {KEY} used") == "key [redacted] used"


@pytest.fixture
def configured() -> io.StringIO:
    stream = io.StringIO()
    config = logging_config("DEBUG")
    config["handlers"]["default"]["stream"] = stream
    logging.config.dictConfig(config)
    yield stream
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})


@pytest.mark.unit
def test_at_debug_header_lines_are_dropped_and_messages_tracebacks_and_args_redacted(configured):
    logging.getLogger("uvicorn.error").debug("< %s: %s", "authorization", "Bearer SECRET")
    logging.getLogger("uvicorn.error").debug("< GET %s HTTP/1.1", "/ws?token=SECRET")
    logging.getLogger("httpx2").info("HTTP Request: POST https://u:SECRET@gw/v1 200")
    logging.getLogger("websockets.client").debug("> x-goog-api-key: SECRET")
    try:
        raise ValueError("bad url https://u:SECRET@gw")
    except ValueError:
        logging.getLogger("intake").exception("failed with key=%s", "SECRET")
    logging.getLogger("intake").debug("after the secrets, ordinary lines still come out")
    text = configured.getvalue()
    assert "SECRET" not in text
    assert "authorization" not in text.lower()
    assert "GET /ws?token=[redacted] HTTP/1.1" in text
    assert "ValueError: bad url https://[redacted]@gw" in text
    assert "ordinary lines still come out" in text
