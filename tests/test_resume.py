"""Resuming an intake after its connection dropped: the protocol, in-process, with a fake upstream."""

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi.testclient import TestClient
from google.genai import types
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from config import Settings
from tests.fakes import FakeConnector, FakeLiveSession, Step, heard, resumption, said, turn_complete
from tests.test_session_lifecycle import tuned
from tests.ws_support import CHUNK, end, receive_until

pytestmark = [pytest.mark.websocket, pytest.mark.integration]


def first_turn() -> FakeLiveSession:
    return FakeLiveSession(
        script=[Step(1, [heard("My head hurts."), said("Since when?"), resumption("h1"), turn_complete()])]
    )


def second_turn() -> FakeLiveSession:
    return FakeLiveSession(script=[Step(1, [heard("Two days."), said("Thank you."), turn_complete()])])


class ByHandle(FakeConnector):
    """The first fresh connect gets `first`; each connect that resumes a handle gets the next of
    `resumed`; any other fresh connect (the session a socket opens before its resume message is
    read) gets a quiet upstream. Which of those connects happen at all depends on timing."""

    def __init__(self, first: FakeLiveSession, *resumed: FakeLiveSession) -> None:
        super().__init__()
        self._first: FakeLiveSession | None = first
        self._resumed = list(resumed)
        self.sessions: list[FakeLiveSession] = []

    @asynccontextmanager
    async def connect(self, config: types.LiveConnectConfig) -> AsyncIterator[FakeLiveSession]:
        self.configs.append(config)
        if config.session_resumption is not None and config.session_resumption.handle:
            session = self._resumed.pop(0)
        elif self._first is not None:
            session, self._first = self._first, None
        else:
            session = FakeLiveSession()
        self.sessions.append(session)
        try:
            yield session
        finally:
            session.closed = True

    @property
    def resumed_handles(self) -> list[str | None]:
        return [
            c.session_resumption.handle
            for c in self.configs
            if c.session_resumption and c.session_resumption.handle
        ]


def ready(session: WebSocketTestSession) -> dict[str, Any]:
    while (status := receive_until(session, "status")[-1])["state"] != "ready":
        pass
    return status


Seen = list[dict[str, Any]]


def resume(client: TestClient, ticket: dict[str, Any]) -> tuple[Any, WebSocketTestSession, Seen]:
    """Opens a socket, asks to resume; returns it and what came up to the resumed `ready` + `history`."""
    ws, session = ask_to_resume(client, ticket)
    seen: Seen = []
    while True:
        seen += receive_until(session, ("status", "error"))
        assert seen[-1].get("code") != "resume_refused", seen[-1]
        if seen[-1].get("state") == "ready" and seen[-1].get("resumed"):
            break
    seen += receive_until(session, "history")
    return ws, session, seen


def refused(session: WebSocketTestSession) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `resume_refused` error, and the fresh intake's `ready` (sent before or after it)."""
    seen = receive_until(session, "error")
    fresh = [m for m in seen if m["type"] == "status" and m["state"] == "ready"]
    return seen[-1], fresh[-1] if fresh else ready(session)


def drop(ws: Any, session: WebSocketTestSession, settings: Settings, intake_id: str) -> None:
    """The browser goes away without end_session (a network drop, a closed tab); returns once the
    server has let go of the intake (TestClient cancels the app when the socket is left)."""
    session.close(1006)
    released(settings, intake_id)
    ws.__exit__(None, None, None)


def rows(settings: Settings, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(settings.DATA_DIR / "intake.db")) as db:
        return db.execute(sql, args).fetchall()


def released(settings: Settings, intake_id: str) -> None:
    deadline = time.monotonic() + 5
    while rows(settings, "SELECT owner FROM intakes WHERE id = ?", intake_id) != [(None,)]:
        assert time.monotonic() < deadline, "the dropped session never let go of its intake"
        time.sleep(0.05)


def open_socket(client: TestClient) -> tuple[Any, WebSocketTestSession]:
    ws = client.websocket_connect("/ws")
    return ws, ws.__enter__()


def first_turn_then_drop(client: TestClient, settings: Settings) -> dict[str, Any]:
    """A patient says one thing, hears the reply, and loses the connection; returns their ticket."""
    ws, session = open_socket(client)
    ticket = ready(session)
    session.send_bytes(CHUNK)
    receive_until(session, "turn_complete")
    drop(ws, session, settings, ticket["session_id"])
    return ticket


def ask_to_resume(client: TestClient, ticket: dict[str, Any]) -> tuple[Any, WebSocketTestSession]:
    ws, session = open_socket(client)
    session.send_json(
        {"type": "resume", "session_id": ticket["session_id"], "resume_token": ticket["resume_token"]}
    )
    return ws, session


def test_a_dropped_intake_resumes_with_its_history_and_the_upstream_handle(make_app, settings):
    connector = ByHandle(first_turn(), second_turn())
    with TestClient(make_app(connector)) as client:
        ticket = first_turn_then_drop(client, settings)

        ws, session, seen = resume(client, ticket)
        back = [m for m in seen if m["type"] == "status" and m.get("resumed")][0]
        history = seen[-1]
        session.send_bytes(CHUNK)
        after = receive_until(session, "turn_complete")
        end(ws, session)

    assert back["session_id"] == ticket["session_id"]
    assert back["resume_token"] and back["resume_token"] != ticket["resume_token"]
    assert [(t["role"], t["text"]) for t in history["turns"]] == [
        ("patient", "My head hurts."),
        ("assistant", "Since when?"),
    ]
    assert {"type": "transcript", "role": "assistant", "text": "Thank you."} in after
    # The upstream conversation was resumed from its handle, not started again.
    assert connector.resumed_handles == ["h1"]
    turns = rows(settings, 'SELECT "index", role, text FROM turns ORDER BY "index"')
    assert turns == [
        (0, "patient", "My head hurts."),
        (1, "assistant", "Since when?"),
        (2, "patient", "Two days."),
        (3, "assistant", "Thank you."),
    ]
    # The fresh session the second socket opened before its resume left no row behind.
    assert rows(settings, "SELECT id, status FROM intakes") == [(ticket["session_id"], "incomplete")]


def test_a_bad_token_is_refused_then_a_fresh_intake_starts_and_the_good_one_still_works(make_app, settings):
    connector = ByHandle(first_turn(), second_turn())
    with TestClient(make_app(connector)) as client:
        ticket = first_turn_then_drop(client, settings)

        ws, session = open_socket(client)
        session.send_json({"type": "resume", "session_id": ticket["session_id"], "resume_token": "guess"})
        refusal, fresh = refused(session)
        end(ws, session)

        ws, session, seen = resume(client, ticket)
        session.send_bytes(CHUNK)
        receive_until(session, "turn_complete")
        end(ws, session)

    assert refusal["code"] == "resume_refused"
    assert fresh["session_id"] != ticket["session_id"] and not fresh.get("resumed")
    assert len(seen[-1]["turns"]) == 2


def test_a_token_works_once_and_the_rotated_one_resumes_again(make_app, settings):
    connector = ByHandle(first_turn(), FakeLiveSession(), second_turn())
    with TestClient(make_app(connector)) as client:
        ticket = first_turn_then_drop(client, settings)

        ws, session, seen = resume(client, ticket)
        rotated = [m for m in seen if m["type"] == "status" and m.get("resumed")][0]
        drop(ws, session, settings, ticket["session_id"])

        ws, session = ask_to_resume(client, ticket)
        used, _ = refused(session)
        end(ws, session)

        ws, session, seen = resume(client, rotated)
        session.send_bytes(CHUNK)
        receive_until(session, "turn_complete")
        end(ws, session)

    assert used["code"] == "resume_refused"
    assert [t["text"] for t in seen[-1]["turns"]] == ["My head hurts.", "Since when?"]


def test_an_intake_not_resumed_within_the_grace_period_is_abandoned_and_refused(make_app, settings):
    quick = tuned(settings, RESUME_GRACE_SECONDS=0.3)
    with TestClient(make_app(ByHandle(first_turn()), app_settings=quick)) as client:
        ticket = first_turn_then_drop(client, settings)
        deadline = time.monotonic() + 5
        while rows(settings, "SELECT status FROM intakes WHERE id = ?", ticket["session_id"]) != [
            ("abandoned",)
        ]:
            assert time.monotonic() < deadline, "the intake was never abandoned"
            time.sleep(0.1)

        ws, session = ask_to_resume(client, ticket)
        refusal, fresh = refused(session)
        assert fresh["session_id"] != ticket["session_id"]
        end(ws, session)

    assert refusal["code"] == "resume_refused"
    assert rows(settings, "SELECT count(*) FROM turns WHERE intake_id = ?", ticket["session_id"]) == [(2,)]


def test_a_second_socket_takes_over_and_the_first_is_closed_superseded(make_app, settings):
    connector = ByHandle(first_turn(), second_turn())
    with TestClient(make_app(connector)) as client:
        first_ws = client.websocket_connect("/ws")
        first = first_ws.__enter__()
        ticket = ready(first)
        first.send_bytes(CHUNK)
        receive_until(first, "turn_complete")

        ws, session, seen = resume(client, ticket)
        with pytest.raises(WebSocketDisconnect) as closed:
            receive_until(first, "never")
        first_ws.__exit__(None, None, None)
        session.send_bytes(CHUNK)
        after = receive_until(session, "turn_complete")
        end(ws, session)

    assert closed.value.code == 4409 and closed.value.reason == "superseded"
    assert [t["text"] for t in seen[-1]["turns"]] == ["My head hurts.", "Since when?"]
    assert {"type": "transcript", "role": "assistant", "text": "Thank you."} in after
    assert connector.resumed_handles == ["h1"]


def test_an_intake_the_patient_ended_cannot_be_resumed(make_app, settings):
    with TestClient(make_app(ByHandle(first_turn()))) as client:
        ws, session = open_socket(client)
        ticket = ready(session)
        session.send_bytes(CHUNK)
        receive_until(session, "turn_complete")
        end(ws, session)

        ws, session = ask_to_resume(client, ticket)
        refusal, _ = refused(session)
        end(ws, session)

    assert refusal["code"] == "resume_refused"


def test_resume_must_be_the_first_message(make_app, settings):
    with TestClient(make_app(FakeConnector(FakeLiveSession()))) as client:
        ws, session = open_socket(client)
        ticket = ready(session)
        session.send_bytes(CHUNK)
        session.send_json(
            {"type": "resume", "session_id": ticket["session_id"], "resume_token": ticket["resume_token"]}
        )
        refused = receive_until(session, "error")[-1]
        # The session goes on.
        session.send_json({"type": "control", "action": "start"})
        assert receive_until(session, "status")[-1]["session_id"] == ticket["session_id"]
        end(ws, session)

    assert refused["code"] == "resume_refused" and "first message" in refused["message"]


def test_without_a_handle_the_resumed_upstream_is_given_the_conversation_so_far(make_app, settings):
    # The drop came before Gemini sent any handle: a new upstream conversation is told what was said.
    no_handle = FakeLiveSession(
        script=[Step(1, [heard("My head hurts."), said("Since when?"), turn_complete()])]
    )
    connector = ByHandle(no_handle)
    with TestClient(make_app(connector)) as client:
        ticket = first_turn_then_drop(client, settings)
        ws, session, seen = resume(client, ticket)
        end(ws, session)

    assert connector.resumed_handles == []
    told = [(c.role, c.parts[0].text) for c in connector.sessions[-1].client_content]  # type: ignore[index]
    assert told[:2] == [("user", "My head hurts."), ("model", "Since when?")]
    assert "without greeting" in told[-1][1]
    assert [t["text"] for t in seen[-1]["turns"]] == ["My head hurts.", "Since when?"]
