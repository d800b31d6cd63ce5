"""/metrics during and after an intake driven through the relay with a scripted fake upstream."""

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from starlette.testclient import WebSocketTestSession

from schemas import Allergy, ChiefComplaint, MedicalIntake, Medication, PatientInfo, PresentIllness
from tests.fakes import (
    FakeConnector,
    FakeExtractor,
    FakeLiveSession,
    Step,
    audio,
    heard,
    said,
    tool_call,
    turn_complete,
)

pytestmark = [pytest.mark.integration]

DASHBOARD = Path(__file__).resolve().parent.parent / "bench" / "grafana" / "intake-relay.json"
TOKEN = "metrics-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHUNK = b"\x01\x00" * 1600  # 100 ms of 16 kHz PCM16
RECORD = MedicalIntake(
    patient_info=PatientInfo(name="Test Patient", phone="(555) 123-4567"),
    present_illness=PresentIllness(chief_complaints=[ChiefComplaint(complaint="headache")]),
    medications=[Medication(name="Lisinopril", dose="20 mg", frequency="daily")],
    allergies=[Allergy(allergen="Penicillin", reaction=["hives"], severity="life-threatening")],
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def receive_until(ws: WebSocketTestSession, wanted: str) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    for _ in range(200):
        raw = ws.receive()
        assert raw["type"] != "websocket.close", (raw, seen)
        if raw.get("bytes") is not None:
            seen.append({"type": "audio"})
            continue
        seen.append(json.loads(raw["text"]))
        if seen[-1]["type"] == wanted:
            return seen
    raise AssertionError(f"no {wanted!r}")


def intake() -> FakeLiveSession:
    return FakeLiveSession(
        script=[
            Step(
                1,
                [heard("I have a headache."), said("I'm sorry."), audio(b"\x10\x00" * 2400), turn_complete()],
            ),
            Step(2, [heard("That's all."), tool_call("call-1")]),
            Step(2, [said("Thank you."), audio(b"\x20\x00" * 2400), turn_complete()]),
        ]
    )


@pytest.fixture
def metered(settings):
    return settings.model_copy(update={"METRICS_TOKEN": SecretStr(TOKEN)})


def test_an_intake_through_the_relay_shows_in_the_metrics(make_app, metered):
    app = make_app(FakeConnector(intake()), FakeExtractor(RECORD), app_settings=metered)
    with TestClient(app) as client:
        before = scrape(client)
        with client.websocket_connect("/ws") as ws:
            receive_until(ws, "status")
            receive_until(ws, "status")  # ready
            during = scrape(client)
            ws.send_bytes(CHUNK)
            receive_until(ws, "turn_complete")
            ws.send_bytes(CHUNK)
            receive_until(ws, "intake_complete")
            ws.send_json({"type": "end_session"})
            while ws.receive()["type"] != "websocket.close":
                pass
        deadline = time.monotonic() + 5
        while (after := scrape(client)) and not grew(before, after, "intake_event_loop_lag_seconds_count"):
            assert time.monotonic() < deadline, "the event-loop ticker never reported"

    assert grew(before, during, "intake_sessions_active") == 1
    assert ("intake_queue_depth", frozenset({("queue", "upstream_mailbox")})) in during
    assert grew(before, after, "intake_sessions_active") == 0
    assert grew(before, after, "intake_sessions_ended_total", outcome="end_session") == 1
    assert grew(before, after, "intake_complete_intake_calls_total") == 1
    assert grew(before, after, "intake_extractions_total", kind="final", result="ok") == 1
    assert grew(before, after, "intake_extraction_latency_seconds_count", kind="final") == 1
    assert grew(before, after, "intake_records_at_end_total", status="completed") == 1
    assert grew(before, after, "intake_audio_frames_total", direction="upstream") == 2
    assert grew(before, after, "intake_audio_frames_total", direction="downstream") == 2
    assert grew(before, after, "intake_relay_latency_seconds_count", direction="upstream") >= 1
    assert grew(before, after, "intake_relay_latency_seconds_count", direction="downstream") >= 1
    # Each reply followed patient speech: two replies, two end-of-speech-to-first-audio times.
    assert grew(before, after, "intake_reply_latency_seconds_count") == 2
    assert grew(before, after, "intake_storage_write_seconds_count") >= 1


def test_metrics_need_the_metrics_token_even_past_the_access_token(make_app, metered):
    guarded = metered.model_copy(update={"ACCESS_TOKEN": SecretStr("door-code")})
    with TestClient(make_app(FakeConnector(FakeLiveSession()), app_settings=guarded)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer door-code"}).status_code == 401
        assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        answer = client.get("/metrics", headers=AUTH)
        assert answer.status_code == 200
        assert "intake_sessions_active" in answer.text
        # The exemption is for /metrics only: the rest of the site still wants the access token.
        assert client.get("/", headers=AUTH).status_code == 401


def test_metrics_are_off_without_a_token_and_the_server_still_answers(make_app):
    with TestClient(make_app(FakeConnector(FakeLiveSession()))) as client:
        assert client.get("/metrics", headers=AUTH).status_code == 404
        assert client.get("/health").json()["status"] == "healthy"


def test_every_series_the_dashboard_draws_is_served(make_app, metered):
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        re.sub(r"_(bucket|total|count|sum)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\b(?:intake|process)_[a-z_]+", target["expr"])
    }
    with TestClient(make_app(FakeConnector(FakeLiveSession()), app_settings=metered)) as client:
        scraped = client.get("/metrics", headers=AUTH).text
    served = {family.name for family in text_string_to_metric_families(scraped)}
    assert len(queried) >= 12 and queried <= served, queried - served
