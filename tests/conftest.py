import gc
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

# Tests never read a developer's .env or talk to Google.
os.environ.pop("GEMINI_API_KEY", None)

from config import Settings  # noqa: E402
from main import SessionClients, Upstream, create_app  # noqa: E402
from services.gemini_client import UpstreamTarget  # noqa: E402
from tests import storage_support  # noqa: E402
from tests.fakes import FakeConnector, FakeExtractor  # noqa: E402


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        DATA_DIR=tmp_path / "data",
        IDLE_TIMEOUT_SECONDS=30,
        # TestClient's host; and scripted patients speak many times faster than real time.
        ALLOWED_HOSTS=["127.0.0.1", "localhost", "testserver"],
        MAX_AUDIO_SPEED=1000,
    )


AppFactory = Callable[..., FastAPI]


@pytest.fixture
def make_app(settings: Settings) -> AppFactory:
    def build(
        connector: FakeConnector,
        extractor: FakeExtractor | None = None,
        *,
        server_key: str | None = "test-key",
        app_settings: Settings | None = None,
    ) -> FastAPI:
        return create_app(
            app_settings or settings,
            upstream=Upstream(
                UpstreamTarget("custom", "https://upstream.invalid"), server_key, "environment"
            ),
            clients=lambda key: SessionClients(connector, extractor or FakeExtractor()),
        )

    return build


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from storage_support.database(request.param, tmp_path)


class _LostTaskErrors(logging.Handler):
    """asyncio reports an exception nobody awaited only in its log; a test must not pass over one."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lost: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "exception was never retrieved" in message or "was never awaited" in message:
            self.lost.append(message)


@pytest.fixture(autouse=True)
def no_lost_task_errors() -> Iterator[None]:
    handler = _LostTaskErrors()
    logging.getLogger("asyncio").addHandler(handler)
    try:
        yield
        gc.collect()
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    assert not handler.lost, f"a task's exception was never retrieved: {handler.lost}"
