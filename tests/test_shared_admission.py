"""Two servers sharing one Redis enforce one MAX_SESSIONS; a dead process's slots expire."""

import asyncio
import json
import os
import time
import uuid

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from redis.asyncio import Redis
from starlette.websockets import WebSocketDisconnect

from gemini_live.shared_admission import SharedAdmission, Slot
from tests.fakes import FakeConnector, FakeLiveSession

pytestmark = [pytest.mark.integration]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def prefix():
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name

    async def forget() -> None:
        redis = Redis.from_url(REDIS_URL)
        keys = [key async for key in redis.scan_iter(f"{name}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()

    asyncio.run(forget())


def ready(ws) -> None:
    while (message := json.loads(ws.receive_text()))["state"] != "ready":
        assert message["type"] == "status", message


def refused(client: TestClient) -> dict:
    with client.websocket_connect("/ws") as ws:
        message = json.loads(ws.receive_text())
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code == 1013
    return message


def test_two_servers_sharing_redis_hold_one_max_sessions_and_a_freed_slot_admits_again(
    make_app, settings, prefix
):
    shared = settings.model_copy(
        update={"REDIS_URL": SecretStr(REDIS_URL), "REDIS_KEY_PREFIX": prefix, "MAX_SESSIONS": 2}
    )

    def server() -> TestClient:
        return TestClient(make_app(FakeConnector(FakeLiveSession(), FakeLiveSession()), app_settings=shared))

    with server() as first, server() as second:
        with first.websocket_connect("/ws") as a, second.websocket_connect("/ws") as b:
            ready(a)
            ready(b)
            # Each server holds one session, under its own limit of two; together they are full.
            assert first.get("/health").json()["open_sessions"] == 1
            message = refused(first)
            assert message["code"] == "too_many_sessions" and "limit of 2" in message["message"]
            b.send_json({"type": "end_session"})
            while b.receive()["type"] != "websocket.close":
                pass
            with first.websocket_connect("/ws") as c:
                ready(c)
                c.send_json({"type": "end_session"})
                while c.receive()["type"] != "websocket.close":
                    pass
            a.send_json({"type": "end_session"})
            while a.receive()["type"] != "websocket.close":
                pass


async def test_a_dead_processs_slots_expire_and_a_live_process_keeps_its_own(prefix):
    dead = SharedAdmission(
        Redis.from_url(REDIS_URL), max_sessions=2, max_per_client=5, prefix=prefix, ttl=0.6
    )
    alive = SharedAdmission(
        Redis.from_url(REDIS_URL), max_sessions=2, max_per_client=5, prefix=prefix, ttl=0.6
    )
    renewing = asyncio.create_task(alive.renew_forever())
    try:
        assert isinstance(await dead.admit("10.0.0.1"), Slot)  # never renewed: its process "died"
        assert isinstance(await alive.admit("10.0.0.2"), Slot)
        assert isinstance(await alive.admit("10.0.0.3"), str)
        deadline = time.monotonic() + 5
        while isinstance(slot := await alive.admit("10.0.0.3"), str):
            assert time.monotonic() < deadline, "the dead process's slot never expired"
            await asyncio.sleep(0.1)
        # The renewed slots outlived several TTLs and still count: the server is full again.
        await asyncio.sleep(1.5)
        assert "limit of 2" in str(await alive.admit("10.0.0.4"))
        await alive.release(slot)
        assert isinstance(await alive.admit("10.0.0.4"), Slot)
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)
        await alive.close()
        await dead.close()


async def test_per_client_limit_holds_across_processes(prefix):
    one = SharedAdmission(Redis.from_url(REDIS_URL), max_sessions=10, max_per_client=1, prefix=prefix)
    two = SharedAdmission(Redis.from_url(REDIS_URL), max_sessions=10, max_per_client=1, prefix=prefix)
    try:
        assert isinstance(await one.admit("10.0.0.9"), Slot)
        assert "from your address" in str(await two.admit("10.0.0.9"))
        assert isinstance(await two.admit("10.0.0.10"), Slot)
    finally:
        await one.close()
        await two.close()
