"""Driving /ws in-process through TestClient: read until a message type, end the way the page does."""

import json
from typing import Any

from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

CHUNK = b"\x01\x00" * 1600  # 100 ms of 16 kHz PCM16


def receive_until(
    ws: WebSocketTestSession, wanted: str | tuple[str, ...], limit: int = 200
) -> list[dict[str, Any]]:
    """JSON messages (binary frames as {"type": "audio"}) up to and including `wanted` (one of)."""
    kinds = wanted if isinstance(wanted, tuple) else (wanted,)
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        raw = ws.receive()
        if raw["type"] == "websocket.close":
            raise WebSocketDisconnect(raw["code"], raw.get("reason"))
        if raw.get("bytes") is not None:
            seen.append({"type": "audio"})
            continue
        message = json.loads(raw["text"])
        seen.append(message)
        if message["type"] in kinds:
            return seen
    raise AssertionError(f"no {wanted!r} among {[m['type'] for m in seen]}")


def open_ready(client: TestClient) -> tuple[Any, WebSocketTestSession]:
    ws = client.websocket_connect("/ws")
    session = ws.__enter__()
    while receive_until(session, "status")[-1]["state"] != "ready":
        pass
    return ws, session


def end(ws: Any, session: WebSocketTestSession) -> int:
    session.send_json({"type": "end_session"})
    while (message := session.receive())["type"] != "websocket.close":
        pass
    ws.__exit__(None, None, None)
    return int(message["code"])
