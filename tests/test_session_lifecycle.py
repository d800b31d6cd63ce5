"""What a patient notices off the happy path: barge-in, reconnects, stalls, the end of an intake,
and failures told truthfully. In-process, with a scripted fake upstream."""

import json
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from starlette.websockets import WebSocketDisconnect

from config import Settings
from gemini_live.records import StorageError
from main import SessionClients, Upstream, create_app
from schemas import MedicalIntake
from services.gemini_client import UpstreamTarget
from services.storage.intakes import IntakeStore
from tests.fakes import (
    FakeConnector,
    FakeExtractor,
    FakeLiveSession,
    Step,
    audio,
    dropped,
    go_away,
    heard,
    interrupted,
    resumption,
    said,
    tool_call,
    turn_complete,
)
from tests.test_relay import CHUNK, RECORD, end, open_ready, receive_until

pytestmark = [pytest.mark.websocket, pytest.mark.integration]

REPLY = b"\x10\x00" * 12000  # 0.5 s of 24 kHz audio
NEXT_REPLY = b"\x20\x00" * 24000


def tuned(settings: Settings, **changes: Any) -> Settings:
    return Settings(_env_file=None, **{**settings.model_dump(), **changes})  # type: ignore[call-arg]


def link_state(session: Any) -> str:
    """The next connection state, past the conversation states sent on the same message type."""
    while (state := receive_until(session, "status")[-1]["state"]) not in (
        "connecting",
        "ready",
        "reconnecting",
    ):
        pass
    return str(state)


def audio_bytes(seen: list[dict[str, Any]]) -> bytes:
    return b"".join(m["bytes"] for m in seen if m["type"] == "audio")


def test_after_gemini_interrupts_a_reply_the_next_reply_is_heard_in_full(make_app):
    # Live sends no turnComplete after `interrupted`: the next reply must not stay muted.
    upstream = FakeLiveSession(
        script=[
            Step(1, [said("Let me tell you a long"), audio(REPLY), interrupted()]),
            Step(2, [heard("Sorry, one thing."), said("Of course."), audio(NEXT_REPLY), turn_complete()]),
        ]
    )
    with TestClient(make_app(FakeConnector(upstream))) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        first = receive_until(session, "interrupted")
        session.send_bytes(CHUNK)
        second = receive_until(session, "turn_complete")
        end(ws, session)
    assert "audio" not in [m["type"] for m in first[first.index({"type": "interrupted"}) :]]
    assert audio_bytes(second) == NEXT_REPLY


def test_a_browser_interrupt_silences_only_the_rest_of_that_generation(make_app):
    upstream = FakeLiveSession(
        script=[
            Step(1, [said("First part"), audio(REPLY)]),
            Step(2, [audio(b"\x30\x00" * 4800), said(" rest of it"), turn_complete()]),
            Step(3, [heard("Next question?"), said("Yes."), audio(NEXT_REPLY), turn_complete()]),
        ]
    )
    with TestClient(make_app(FakeConnector(upstream))) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        receive_until(session, "transcript")
        session.send_json({"type": "interrupt"})
        receive_until(session, "interrupted")
        session.send_bytes(CHUNK)
        muted = receive_until(session, "turn_complete")
        session.send_bytes(CHUNK)
        heard_again = receive_until(session, "turn_complete")
        end(ws, session)
    assert audio_bytes(muted) == b""
    assert audio_bytes(heard_again) == NEXT_REPLY


def test_audio_sent_since_the_last_handle_is_replayed_exactly_once_after_a_drop(make_app):
    first = FakeLiveSession(script=[Step(2, [resumption("h1")]), Step(4, [dropped()])])
    second = FakeLiveSession(script=[Step(3, [said("Welcome back."), turn_complete()])])
    connector = FakeConnector(first, second)
    chunks = [bytes([n, 0]) * 1600 for n in range(1, 6)]
    with TestClient(make_app(connector)) as client:
        ws, session = open_ready(client)
        for chunk in chunks[:4]:
            session.send_bytes(chunk)
        assert link_state(session) == "reconnecting"
        assert link_state(session) == "ready"
        session.send_bytes(chunks[4])
        receive_until(session, "turn_complete")
        end(ws, session)
    # The handle covered chunks 1-2; 3 and 4 were sent after it and are replayed, then 5.
    assert [blob.data for blob in first.audio_in] == chunks[:4]
    assert [blob.data for blob in second.audio_in] == chunks[2:5]
    assert connector.configs[1].session_resumption.handle == "h1"  # type: ignore[union-attr]
    assert second.client_content == []  # resumed: no greeting, no history


def test_a_drop_before_any_handle_starts_afresh_with_the_conversation_so_far(make_app):
    first = FakeLiveSession(
        script=[Step(1, [heard("I have a cough."), said("How long?"), turn_complete()]), Step(2, [dropped()])]
    )
    second = FakeLiveSession(script=[Step(1, [said("Go on."), turn_complete()])])
    connector = FakeConnector(first, second)
    with TestClient(make_app(connector)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        receive_until(session, "turn_complete")
        session.send_bytes(CHUNK)
        assert link_state(session) == "reconnecting"
        assert link_state(session) == "ready"
        session.send_bytes(CHUNK)
        receive_until(session, "turn_complete")
        end(ws, session)
    history = [(c.role, c.parts[0].text) for c in second.client_content]  # type: ignore[index]
    assert history[:2] == [("user", "I have a cough."), ("model", "How long?")]
    assert history[-1][0] == "user" and "without greeting" in (history[-1][1] or "")
    assert connector.configs[1].session_resumption.handle is None  # type: ignore[union-attr]


def test_a_refused_resume_starts_afresh_instead_of_blaming_the_key(make_app):
    first = FakeLiveSession(
        script=[
            Step(1, [heard("Hello."), said("Hi."), turn_complete(), resumption("stale")]),
            Step(2, [dropped()]),
        ]
    )
    fresh = FakeLiveSession(script=[Step(0, [said("Where were we?"), turn_complete()], after_turns=1)])
    connector = FakeConnector(first, dropped(1007), fresh)
    with TestClient(make_app(connector)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        receive_until(session, "turn_complete")
        session.send_bytes(CHUNK)
        seen = receive_until(session, "turn_complete")
        assert any(m.get("text") == "Where were we?" for m in seen)
        assert not [m for m in seen if m["type"] == "error"]
        end(ws, session)
    handles = [c.session_resumption.handle for c in connector.configs]  # type: ignore[union-attr]
    assert handles == [None, "stale", None]
    assert fresh.client_content[0].parts[0].text == "Hello."  # type: ignore[index]


def test_go_away_lets_the_reply_in_progress_finish_before_switching(make_app):
    first = FakeLiveSession(
        script=[
            Step(1, [resumption("h1"), said("Part one,"), audio(REPLY), go_away("5s")]),
            Step(1, [said(" part two."), audio(NEXT_REPLY), turn_complete()]),
        ]
    )
    second = FakeLiveSession(script=[Step(1, [said("Still here."), turn_complete()])])
    connector = FakeConnector(first, second)
    with TestClient(make_app(connector)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        seen = receive_until(session, "turn_complete")
        assert audio_bytes(seen) == REPLY + NEXT_REPLY
        while not [m for m in seen if m.get("state") == "ready"]:
            seen += receive_until(session, "status")
        states = [m["state"] for m in seen if m["type"] == "status"]
        assert states.index("reconnecting") < states.index("ready")
        session.send_bytes(CHUNK)
        assert any(m.get("text") == "Still here." for m in receive_until(session, "turn_complete"))
        end(ws, session)
    assert connector.configs[1].session_resumption.handle == "h1"  # type: ignore[union-attr]


class TransportFailure:
    """An extractor whose HTTP transport fails, as the SDK's client raises it; then one that works."""

    def __init__(self) -> None:
        self.calls = 0

    async def extract(self, turns: Any) -> tuple[MedicalIntake, list[str]]:
        self.calls += 1
        if self.calls == 1:
            raise httpx.ConnectError("connection refused")
        return RECORD, []


def test_an_extraction_transport_error_is_told_and_the_model_hears_it_failed(make_app):
    upstream = FakeLiveSession(
        script=[
            Step(1, [heard("That's all."), tool_call("c1")]),
            Step(2, [heard("Yes, correct."), tool_call("c2")]),
        ]
    )
    extractor = TransportFailure()
    with TestClient(make_app(FakeConnector(upstream), extractor)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        failed = receive_until(session, "error")
        session.send_bytes(CHUNK)
        completed = receive_until(session, "intake_complete")
        end(ws, session)
    assert failed[-1]["code"] == "extraction_failed"
    assert "intake_complete" not in [m["type"] for m in failed]
    outcomes = [r.response["status"] for r in upstream.tool_responses]  # type: ignore[index]
    assert outcomes == ["failed", "saved"]
    assert MedicalIntake.model_validate(completed[-2]["data"]) == RECORD


class FailingSaves:
    """The app's store, except that the first `failures` final saves fail."""

    def __init__(self, store: IntakeStore, failures: int) -> None:
        self._store = store
        self.failures = failures

    def for_session(self, session_id: str) -> Any:
        records = self._store.for_session(session_id)
        outer = self

        class Records:
            def __getattr__(self, name: str) -> Any:
                return getattr(records, name)

            async def save_version(self, record: MedicalIntake, **fields: Any) -> int:
                if fields["final"] and outer.failures:
                    outer.failures -= 1
                    raise StorageError("the database is read-only")
                return await records.save_version(record, **fields)

        return Records()


@pytest.mark.parametrize("failures", [1, 3])
def test_a_failed_save_is_never_announced_and_is_retried(make_app, failures):
    upstream = FakeLiveSession(script=[Step(1, [heard("Yes."), tool_call("c1")])])
    with TestClient(make_app(FakeConnector(upstream), FakeExtractor(RECORD))) as client:
        state = client.app.state.intake  # type: ignore[attr-defined]
        state.records = FailingSaves(state.records, failures)
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        seen = receive_until(session, "error")
        assert seen[-1]["code"] == "save_failed"
        kinds = [m["type"] for m in seen]
        assert "intake_complete" not in kinds
        if failures == 1:
            rest = receive_until(session, "intake_complete")
            assert [m for m in rest if m["type"] == "extracted_data"][-1]["final"] is True
        else:
            rest = receive_until(session, "error")
            assert rest[-1]["code"] == "save_failed" and "front desk" in rest[-1]["message"]
            assert "intake_complete" not in [m["type"] for m in rest]
        end(ws, session)
    assert [r.response["status"] for r in upstream.tool_responses] == [  # type: ignore[index]
        "saved" if failures == 1 else "failed"
    ]


def test_a_failing_audit_table_never_touches_the_conversation(make_app, caplog):
    upstream = FakeLiveSession(script=[Step(1, [said("Still talking."), turn_complete()])])
    connector = FakeConnector(upstream)
    with TestClient(make_app(connector)) as client:
        store = client.app.state.intake.records  # type: ignore[attr-defined]

        async def break_audit() -> None:
            async with store._sessions() as db, db.begin():
                await db.execute(text("DROP TABLE audit_events"))

        client.portal.call(break_audit)
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        seen = receive_until(session, "turn_complete")
        end(ws, session)
    assert any(m.get("text") == "Still talking." for m in seen)
    assert not [m for m in seen if m["type"] == "error"]
    assert len(connector.configs) == 1, "a storage failure was taken for an upstream one"
    # The writer says so in the log (once per run of failures), without patient words.
    assert "storage commit failed" in caplog.text and "Still talking" not in caplog.text


@pytest.mark.parametrize("key", ["bad%0D%0Akey", "cl%C3%A9-non-ascii", "with%20space"])
def test_a_malformed_browser_key_is_refused_at_once(settings, key):
    connector = FakeConnector(FakeLiveSession())
    app = create_app(
        settings,
        upstream=Upstream(UpstreamTarget("google"), None, "none"),
        clients=lambda api_key: SessionClients(connector, FakeExtractor()),
    )
    with TestClient(app) as client:
        with client.websocket_connect(f"/ws?api_key={key}") as session:
            assert session.receive_json()["code"] == "bad_api_key"
            with pytest.raises(WebSocketDisconnect) as closed:
                session.receive_json()
        assert closed.value.code == 1008
        ws, session = open_ready(client, "/ws?api_key=a-good-key")
        assert end(ws, session) == 1000
    assert len(connector.configs) == 1


def test_a_stalled_assistant_is_nudged_once_and_then_answers(make_app, settings):
    upstream = FakeLiveSession(
        script=[
            Step(1, [heard("I think that's it.")]),
            Step(0, [said("Thank you, next question."), turn_complete()], after_turns=2),
        ]
    )
    quick = tuned(settings, STALL_TIMEOUT_SECONDS=0.3)
    with TestClient(make_app(FakeConnector(upstream), app_settings=quick)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        seen = receive_until(session, "turn_complete")
        end(ws, session)
    assert not [m for m in seen if m["type"] == "error"]
    nudge = upstream.client_content[1].parts[0].text  # type: ignore[index]
    assert "finished speaking" in (nudge or "")


def test_an_assistant_that_stays_silent_is_told_and_the_session_goes_on(make_app, settings):
    upstream = FakeLiveSession(
        script=[Step(1, [heard("Hello?")]), Step(2, [said("Sorry, I'm here."), turn_complete()])]
    )
    quick = tuned(settings, STALL_TIMEOUT_SECONDS=0.2)
    with TestClient(make_app(FakeConnector(upstream), app_settings=quick)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        stalled = receive_until(session, "error")[-1]
        session.send_bytes(CHUNK)
        later = receive_until(session, "turn_complete")
        end(ws, session)
    assert stalled["code"] == "assistant_stalled"
    assert len(upstream.client_content) == 2  # the greeting cue and one nudge, no more
    assert any(m.get("text") == "Sorry, I'm here." for m in later)


def closing_intake() -> FakeLiveSession:
    return FakeLiveSession(
        script=[
            Step(1, [heard("Yes, that's all correct."), tool_call("c1")]),
            Step(0, [said("Your intake is saved. Goodbye."), turn_complete()], after_turns=1),
        ]
    )


def test_a_finished_intake_ends_by_itself_and_frees_its_slot(make_app, settings):
    upstream = closing_intake()
    quick = tuned(settings, END_GRACE_SECONDS=0.3)
    connector = FakeConnector(upstream, FakeLiveSession())
    with TestClient(make_app(connector, FakeExtractor(RECORD), app_settings=quick)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        receive_until(session, "intake_complete")
        with pytest.raises(WebSocketDisconnect) as closed:
            receive_until(session, "never")
        ws.__exit__(None, None, None)
        assert (closed.value.code, closed.value.reason) == (1000, "intake_complete")
        assert upstream.closed
        assert client.get("/health").json()["open_sessions"] == 0
        # The slot is free: the next patient is served.
        ws, session = open_ready(client, "/ws")
        assert end(ws, session) == 1000
    assert upstream.tool_responses[0].response == {  # type: ignore[index]
        "status": "saved",
        "message": "The intake record is saved.",
    }


def test_a_patient_who_speaks_after_the_intake_keeps_the_session(make_app, settings):
    upstream = FakeLiveSession(
        script=[
            Step(1, [heard("Yes, that's all."), tool_call("c1")]),
            Step(0, [said("Saved. Goodbye."), turn_complete()], after_turns=1),
            Step(2, [heard("Oh, one more thing"), said("Go ahead."), turn_complete()]),
        ]
    )
    quick = tuned(settings, END_GRACE_SECONDS=0.5)
    with TestClient(make_app(FakeConnector(upstream), FakeExtractor(RECORD), app_settings=quick)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        receive_until(session, "intake_complete")
        session.send_bytes(CHUNK)
        seen = receive_until(session, "turn_complete")
        while seen[-1]["type"] == "turn_complete" and not any(m.get("text") == "Go ahead." for m in seen):
            seen += receive_until(session, "turn_complete")
        with pytest.raises(WebSocketDisconnect) as closed:
            receive_until(session, "never")
        ws.__exit__(None, None, None)
    assert closed.value.code == 1000 and closed.value.reason == "intake_complete"


def test_an_unreachable_upstream_fails_within_three_seconds_and_health_says_so(make_app):
    connector = FakeConnector(*[OSError("network is unreachable") for _ in range(100)])
    with TestClient(make_app(connector)) as client:
        started = time.monotonic()
        with client.websocket_connect("/ws") as session:
            seen = receive_until(session, "error")
            elapsed = time.monotonic() - started
            with pytest.raises(WebSocketDisconnect) as closed:
                receive_until(session, "never")
        health = client.get("/health").json()
        root = client.get("/").json()
    assert seen[-1]["code"] == "upstream_unreachable" and elapsed < 3.5
    assert closed.value.code == 1011
    assert health["last_connect"] == "unreachable" and health["last_connect_at"]
    assert root["last_connect"] == "unreachable"
    assert json.dumps(seen).count("ready") == 0
