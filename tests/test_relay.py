"""The /ws relay driven in-process with a scripted fake upstream."""

import asyncio
import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from schemas import Allergy, ChiefComplaint, MedicalIntake, Medication, PatientInfo, PresentIllness
from services.extraction import ExtractionError
from tests.fakes import (
    FakeConnector,
    FakeExtractor,
    FakeLiveSession,
    Step,
    audio,
    heard,
    interrupted,
    said,
    tool_call,
    turn_complete,
)

pytestmark = [pytest.mark.websocket, pytest.mark.integration]

CHUNK = b"\x01\x00" * 1600  # 100 ms of 16 kHz PCM16
RECORD = MedicalIntake(
    patient_info=PatientInfo(name="Test Patient", phone="(555) 123-4567"),
    present_illness=PresentIllness(chief_complaints=[ChiefComplaint(complaint="headache")]),
    medications=[Medication(name="Lisinopril", dose="20 mg", frequency="daily")],
    allergies=[Allergy(allergen="Penicillin", reaction=["hives"], severity="life-threatening")],
)


def conversation() -> FakeLiveSession:
    return FakeLiveSession(
        script=[
            Step(1, [heard("I have a "), heard("headache."), said("I'm sorry. "), audio(b"\x10\x00" * 2400)]),
            Step(1, [said("How long?"), audio(b"\x20\x00" * 2400), turn_complete()]),
            Step(2, [heard("Yes, that's right."), tool_call("call-42")]),
            Step(2, [said("Thank you, goodbye."), turn_complete()]),
        ]
    )


def receive_until(ws: WebSocketTestSession, wanted: str, limit: int = 200) -> list[dict[str, Any]]:
    """Collect JSON messages (binary frames as {"type": "audio"}) up to and including `wanted`."""
    seen: list[dict[str, Any]] = []
    for _ in range(limit):
        raw = ws.receive()
        if raw["type"] == "websocket.close":
            raise WebSocketDisconnect(raw["code"], raw.get("reason"))
        if raw.get("bytes") is not None:
            seen.append({"type": "audio", "bytes": raw["bytes"]})
            continue
        message = json.loads(raw["text"])
        seen.append(message)
        if message["type"] == wanted:
            return seen
    raise AssertionError(f"no {wanted!r} among {[m['type'] for m in seen]}")


def end(ws: Any, session: WebSocketTestSession) -> int:
    """End the session the way the page does and return the close code."""
    session.send_json({"type": "end_session"})
    while (message := session.receive())["type"] != "websocket.close":
        pass
    ws.__exit__(None, None, None)
    return int(message["code"])


def open_ready(client: TestClient, path: str = "/ws") -> Any:
    ws = client.websocket_connect(path)
    session = ws.__enter__()
    receive_until(session, "status")  # connecting
    ready = receive_until(session, "status")[-1]
    assert ready["state"] == "ready"
    return ws, session


def test_full_intake_reaches_the_browser_and_the_tool_response_carries_the_call_id(make_app):
    upstream = conversation()
    extractor = FakeExtractor(RECORD)
    with TestClient(make_app(FakeConnector(upstream), extractor)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        seen = receive_until(session, "turn_complete")
        session.send_bytes(CHUNK)
        seen += receive_until(session, "intake_complete")
        end(ws, session)

    transcripts = [(m["role"], m["text"]) for m in seen if m["type"] == "transcript"]
    assert transcripts[:4] == [
        ("patient", "I have a "),
        ("patient", "headache."),
        ("assistant", "I'm sorry. "),
        ("assistant", "How long?"),
    ]
    played = b"".join(m["bytes"] for m in seen if m["type"] == "audio")
    assert played == b"\x10\x00" * 2400 + b"\x20\x00" * 2400
    extracted = [m for m in seen if m["type"] == "extracted_data"]
    assert MedicalIntake.model_validate(extracted[-1]["data"]) == RECORD
    assert extracted[-1]["final"] is True
    assert [m["type"] for m in seen][-2:] == ["extracted_data", "intake_complete"]
    assert [(r.id, r.name) for r in upstream.tool_responses] == [("call-42", "complete_intake")]
    assert [blob.mime_type for blob in upstream.audio_in] == ["audio/pcm;rate=16000"] * 2
    assert upstream.audio_in[0].data == CHUNK
    # The extractor saw the finalized turns in order, the patient's pieces joined.
    assert [(t.role, t.text) for t in extractor.calls[0]] == [
        ("patient", "I have a headache."),
        ("assistant", "I'm sorry. How long?"),
        ("patient", "Yes, that's right."),
    ]
    assert upstream.closed


def test_live_session_is_configured_for_audio_transcripts_voice_and_the_tool(make_app, settings):
    connector = FakeConnector(FakeLiveSession())
    with TestClient(make_app(connector)) as client:
        ws, session = open_ready(client)
        end(ws, session)
    config = connector.configs[0]
    assert config.response_modalities == ["AUDIO"]
    assert config.input_audio_transcription is not None and config.output_audio_transcription is not None
    voice = config.speech_config.voice_config.prebuilt_voice_config.voice_name  # type: ignore[union-attr]
    assert voice == settings.VOICE_MODEL
    names = [d.name for tool in config.tools or [] for d in tool.function_declarations or []]  # type: ignore[union-attr]
    assert names == ["complete_intake", "flag_emergency"]
    prompt = config.system_instruction.parts[0].text  # type: ignore[union-attr]
    assert settings.CLINIC_NAME in prompt and "complete_intake" in prompt
    order = [
        prompt.index(s)
        for s in (
            "Chief complaint",
            "Symptom details",
            "Current medications",
            "Allergies",
            "Past medical history",
            "Social history",
        )
    ]
    assert order == sorted(order)
    assert config.session_resumption is not None and config.context_window_compression is not None


def test_upstream_interrupted_reaches_the_browser_and_stops_that_turns_audio(make_app):
    upstream = FakeLiveSession(
        script=[
            Step(
                1,
                [
                    said("A long answer"),
                    audio(b"\x01\x00" * 4800),
                    interrupted(),
                    heard("Wait,"),
                    turn_complete(),
                ],
            )
        ]
    )
    with TestClient(make_app(FakeConnector(upstream))) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        seen = receive_until(session, "turn_complete")
        end(ws, session)
    kinds = [m["type"] for m in seen]
    assert "interrupted" in kinds
    after = kinds[kinds.index("interrupted") :]
    assert "audio" not in after


@pytest.mark.parametrize("message", [{"type": "interrupt"}, {"type": "control", "action": "interrupt"}])
def test_browser_interrupt_in_either_form_is_acknowledged(make_app, message):
    with TestClient(make_app(FakeConnector(FakeLiveSession()))) as client:
        ws, session = open_ready(client)
        session.send_json(message)
        assert receive_until(session, "interrupted")[-1] == {"type": "interrupted"}
        end(ws, session)


def test_control_stop_tells_gemini_the_audio_stream_ended(make_app):
    upstream = FakeLiveSession(script=[Step(1, [said("ok"), turn_complete()])])
    with TestClient(make_app(FakeConnector(upstream))) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        session.send_json({"type": "control", "action": "stop"})
        receive_until(session, "turn_complete")
        assert end(ws, session) == 1000
    assert upstream.stream_ends == 1


def test_end_session_closes_normally_and_closes_the_upstream(make_app):
    upstream = FakeLiveSession()
    with TestClient(make_app(FakeConnector(upstream))) as client:
        ws, session = open_ready(client)
        assert end(ws, session) == 1000
        assert upstream.closed
        assert client.portal.call(_session_tasks) == []


async def _session_tasks() -> list[str]:
    await asyncio.sleep(0.05)
    return [t.get_name() for t in asyncio.all_tasks() if ":" in t.get_name()]


def test_browser_disconnect_mid_stream_closes_upstream_and_leaves_no_task(make_app):
    upstream = FakeLiveSession(script=[Step(1, [said("talking"), audio(b"\x00\x01" * 24000)])])
    with TestClient(make_app(FakeConnector(upstream))) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        session.close()
        for _ in range(100):
            if upstream.closed:
                break
            client.portal.call(asyncio.sleep, 0.01)
        assert upstream.closed
        ws.__exit__(None, None, None)
        assert client.portal.call(_session_tasks) == []


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"text": "{not json"}, "bad_message"),
        ({"text": ""}, "bad_message"),
        ({"text": "[1, 2]"}, "bad_message"),
        ({"text": '{"type": "dance"}'}, "unknown_type"),
        ({"text": '{"type": "control", "action": "explode"}'}, "bad_message"),
        ({"text": '{"type": "x", "pad": "' + "a" * 9000 + '"}'}, "frame_too_large"),
        ({"bytes": b"\x00" * (64 * 1024 + 2)}, "frame_too_large"),
        ({"bytes": b"\x00\x01\x02"}, "odd_length_audio"),
        ({"bytes": b""}, "bad_message"),
    ],
)
def test_bad_input_gets_a_clear_error_and_the_session_goes_on(make_app, frame, code):
    upstream = FakeLiveSession(script=[Step(1, [said("still here"), turn_complete()])])
    with TestClient(make_app(FakeConnector(upstream))) as client:
        ws, session = open_ready(client)
        if "text" in frame:
            session.send_text(frame["text"])
        else:
            session.send_bytes(frame["bytes"])
        error = receive_until(session, "error")[-1]
        assert error["code"] == code and error["message"]
        session.send_bytes(CHUNK)
        assert any(m.get("text") == "still here" for m in receive_until(session, "turn_complete"))
        end(ws, session)
    assert len(upstream.audio_in) == 1


def test_a_failed_final_extraction_is_told_and_the_earlier_record_is_never_marked_final(make_app):
    upstream = FakeLiveSession(
        script=[
            Step(1, [heard("hi"), tool_call("c1")]),
            Step(2, [heard("more"), tool_call("c2")]),
            Step(3, [said("still talking"), turn_complete()]),
        ]
    )
    extractor = FakeExtractor(RECORD, ExtractionError("extraction timed out after 30 s"))
    with TestClient(make_app(FakeConnector(upstream), extractor)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        first = receive_until(session, "intake_complete")
        session.send_bytes(CHUNK)
        second = receive_until(session, "error")
        session.send_bytes(CHUNK)
        third = receive_until(session, "turn_complete")
        end(ws, session)
    assert MedicalIntake.model_validate(first[-2]["data"]) == RECORD
    assert second[-1]["code"] == "extraction_failed" and "timed out" in second[-1]["message"]
    later = [m["type"] for m in second + third]
    assert "intake_complete" not in later and "extracted_data" not in later
    assert any(m.get("text") == "still talking" for m in third)


def test_extraction_failure_without_any_record_sends_no_intake_complete(make_app):
    upstream = FakeLiveSession(
        script=[Step(1, [heard("hi"), tool_call("c1")]), Step(2, [said("bye"), turn_complete()])]
    )
    extractor = FakeExtractor(ExtractionError("extraction answer did not match the intake schema (3 errors)"))
    with TestClient(make_app(FakeConnector(upstream), extractor)) as client:
        ws, session = open_ready(client)
        session.send_bytes(CHUNK)
        seen = receive_until(session, "error")
        session.send_bytes(CHUNK)
        seen += receive_until(session, "turn_complete")
        end(ws, session)
    assert seen[-len(seen) :] and "intake_complete" not in [m["type"] for m in seen]
    assert upstream.tool_responses[0].id == "c1"


def test_fallback_extraction_after_ten_turns_without_complete_intake(make_app, settings):
    steps = []
    for n in range(5):
        steps.append(Step(n + 1, [heard(f"answer {n}"), said(f"question {n}"), turn_complete()]))
    upstream = FakeLiveSession(script=steps)
    extractor = FakeExtractor(RECORD)
    no_live = settings.model_copy(update={"LIVE_EXTRACTION_TURNS": 0})
    with TestClient(make_app(FakeConnector(upstream), extractor, app_settings=no_live)) as client:
        ws, session = open_ready(client)
        seen: list[dict[str, Any]] = []
        for n in range(5):
            session.send_bytes(CHUNK)
            seen += receive_until(session, "turn_complete")
            if n < 4:
                assert "extracted_data" not in [m["type"] for m in seen]
        seen += receive_until(session, "extracted_data")
        end(ws, session)
    extracted = [m for m in seen if m["type"] == "extracted_data"]
    assert extracted[-1]["final"] is False
    assert "intake_complete" not in [m["type"] for m in seen]


def test_live_extraction_fills_the_record_while_the_patient_talks(make_app):
    steps = [Step(n + 1, [heard(f"answer {n}"), said(f"question {n}"), turn_complete()]) for n in range(3)]
    steps.append(Step(4, [heard("Yes."), tool_call("c9")]))
    upstream = FakeLiveSession(script=steps)
    extractor = FakeExtractor(RECORD)
    with TestClient(make_app(FakeConnector(upstream), extractor)) as client:
        ws, session = open_ready(client)
        seen: list[dict[str, Any]] = []
        for _ in range(2):  # four finalized turns: the default LIVE_EXTRACTION_TURNS
            session.send_bytes(CHUNK)
            seen += receive_until(session, "turn_complete")
        seen += receive_until(session, "extracted_data")
        assert seen[-1]["final"] is False
        session.send_bytes(CHUNK)
        session.send_bytes(CHUNK)
        seen += receive_until(session, "intake_complete")
        end(ws, session)
    finals = [m for m in seen if m["type"] == "extracted_data" and m["final"]]
    assert len(finals) == 1 and [m["type"] for m in seen][-2:] == ["extracted_data", "intake_complete"]
    assert len(extractor.calls[0]) == 4 and len(extractor.calls[-1]) == 7


def stored(client: TestClient, session_id: str) -> tuple[Any, list[dict[str, Any]]]:
    """The intake as the staff API reads it, and its audit trail, from the app's own database."""
    store = client.app.state.intake.records  # type: ignore[attr-defined]
    events = client.portal.call(store.audit, session_id)
    detail = client.portal.call(lambda: store.get_intake(session_id, staff="test"))
    return detail, events


def test_the_record_is_in_the_database_before_intake_complete_and_the_audit_has_no_content(make_app):
    upstream = conversation()
    with TestClient(make_app(FakeConnector(upstream), FakeExtractor(RECORD))) as client:
        ws, session = open_ready(client)
        session_id = receive_until(session, "status")[-1]["session_id"]
        session.send_bytes(CHUNK)
        receive_until(session, "turn_complete")
        session.send_bytes(CHUNK)
        receive_until(session, "intake_complete")
        # Read while the session is still open: announced means already committed.
        detail, _ = stored(client, session_id)
        assert detail.versions[-1].final and detail.record == RECORD
        end(ws, session)
        detail, events = stored(client, session_id)
    assert detail.status == "completed" and detail.end_reason == "end_session"
    assert [(t.role, t.text) for t in detail.transcript][0] == ("patient", "I have a headache.")
    names = [event["event"] for event in events]
    assert names[0] == "session_start" and names[-1] == "session_end"
    assert {"function_call", "extraction", "intake_outcome", "upstream_connected"} <= set(names)
    text = json.dumps(events)
    assert "headache" not in text and "Lisinopril" not in text and "Test Patient" not in text


def test_no_api_key_anywhere_is_refused_with_a_clear_error(make_app):
    with TestClient(make_app(FakeConnector(FakeLiveSession()), server_key=None)) as client:
        with client.websocket_connect("/ws") as session:
            error = session.receive_json()
            assert error["code"] == "no_api_key"
            with pytest.raises(WebSocketDisconnect) as closed:
                session.receive_json()
            assert closed.value.code == 1008


def test_browser_key_is_used_for_that_session(settings):
    from main import SessionClients, Upstream, create_app
    from services.gemini_client import UpstreamTarget

    keys: list[str] = []

    def connector_for(key: str) -> FakeConnector:
        keys.append(key)
        return FakeConnector(FakeLiveSession())

    app = create_app(
        settings,
        upstream=Upstream(UpstreamTarget("google"), None, "none"),
        clients=lambda key: SessionClients(connector_for(key), FakeExtractor(RECORD)),
    )
    with TestClient(app) as client:
        ws, session = open_ready(client, "/ws?api_key=browser-key-123")
        end(ws, session)
        assert client.get("/api-key-status").json() == {
            "configured": False,
            "source": "none",
            "upstream": "google",
            "browser_key_required": True,
            "has_api_key": False,
        }
    assert keys == ["browser-key-123"]
