"""The staff API under /api on SQLite and PostgreSQL: tokens, the list, the record, corrections,
review, FHIR, the audit of who did what, and OpenAPI."""

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import select
from starlette.websockets import WebSocketDisconnect

from config import Settings
from services.storage.models import AuditRow, IntakeRow, VersionRow
from tests.fakes import FakeConnector, FakeLiveSession
from tests.storage_support import scenario_record, seed
from tests.test_relay import end, receive_until

pytestmark = pytest.mark.integration
ALICE = "alice-token-0123456789"
BOB = "bob-token-9876543210ab"
PATIENT = "patient-token-abcdef"


@pytest.fixture
def staff_client(make_app, settings: Settings, database_url: str) -> Iterator[TestClient]:
    app_settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        **{
            **settings.model_dump(),
            "DATABASE_URL": database_url,
            "STAFF_TOKENS": f"alice:{ALICE}, bob:{BOB}",
            "ACCESS_TOKEN": PATIENT,
            "ENABLE_DOCS": True,
        },
    )
    app = make_app(FakeConnector(FakeLiveSession(), FakeLiveSession()), app_settings=app_settings)
    with TestClient(app) as client:
        yield client


def as_staff(token: str = ALICE) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seeded(client: TestClient, *args: Any, **kwargs: Any) -> str:
    store = client.app.state.intake.records  # type: ignore[attr-defined]
    intake_id: str = client.portal.call(lambda: seed(store, *args, **kwargs))  # type: ignore[union-attr]
    return intake_id


def audit(client: TestClient) -> list[tuple[str, str | None, str | None]]:
    store = client.app.state.intake.records  # type: ignore[attr-defined]

    async def read() -> list[tuple[str, str | None, str | None]]:
        async with store._sessions() as session:
            rows = await session.scalars(
                select(AuditRow).where(AuditRow.staff.is_not(None)).order_by(AuditRow.id)
            )
            return [(row.event, row.staff, row.intake_id) for row in rows]

    return client.portal.call(read)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "headers",
    [{}, as_staff("wrong-token-0123456789"), as_staff(PATIENT), {"Authorization": ALICE}],
    ids=["none", "wrong", "patient-token", "not-bearer"],
)
def test_the_api_needs_a_staff_bearer_token_and_then_answers(staff_client, headers):
    refused = staff_client.get("/api/intakes", headers=headers)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert staff_client.get("/api/intakes", params={"token": ALICE}).status_code == 401
    assert staff_client.get("/api/intakes", headers=as_staff()).json() == []


def test_the_patient_socket_refuses_a_staff_token_and_opens_with_the_patient_token(staff_client):
    with pytest.raises(WebSocketDisconnect) as closed:
        with staff_client.websocket_connect(f"/ws?token={ALICE}") as refused:
            assert refused.receive_json()["code"] == "unauthorized"
            refused.receive_json()
    assert closed.value.code == 1008
    ws = staff_client.websocket_connect(f"/ws?token={PATIENT}")
    session = ws.__enter__()
    receive_until(session, "status")
    assert end(ws, session) == 1000


def test_the_list_shows_real_intakes_newest_first_and_practice_ones_when_asked(staff_client):
    older = seeded(staff_client, "simple_visit")
    newer = seeded(staff_client, "medications_allergy")
    practice = seeded(staff_client, "barge_in_correction", practice=True)
    listed = staff_client.get("/api/intakes", headers=as_staff()).json()
    assert [item["id"] for item in listed] == [newer, older]
    assert listed[0] == {
        "id": newer,
        "status": "completed",
        "patient_name": "James Carter",
        "date_of_birth": None,
        "chief_complaint": "follow-up visit",
        "flags": {"life_threatening_allergy": True, "emergency": True, "emergency_reported": None},
        "started_at": listed[0]["started_at"],
        "completed_at": listed[0]["completed_at"],
        "practice": False,
    }
    (only,) = staff_client.get("/api/intakes", params={"practice": "true"}, headers=as_staff()).json()
    assert only["id"] == practice and only["practice"] is True
    named = staff_client.get("/api/intakes", params={"q": "maria", "status": "completed"}, headers=as_staff())
    assert [item["id"] for item in named.json()] == [older]
    assert (
        staff_client.get("/api/intakes", params={"status": "nonsense"}, headers=as_staff()).status_code == 422
    )
    naive = staff_client.get("/api/intakes", params={"since": "2026-01-01T00:00:00"}, headers=as_staff())
    assert naive.status_code == 422
    aware = staff_client.get("/api/intakes", params={"since": "2000-01-01T00:00:00Z"}, headers=as_staff())
    assert len(aware.json()) == 2


def test_the_detail_has_the_record_versions_transcript_warnings_and_review_state(staff_client):
    intake_id = seeded(staff_client, "medications_allergy")
    detail = staff_client.get(f"/api/intakes/{intake_id}", headers=as_staff()).json()
    assert detail["record"] == scenario_record("medications_allergy").model_dump(mode="json")
    assert [v["version"] for v in detail["versions"]] == [1]
    assert detail["transcript"][1]["role"] == "patient" and "James Carter" in detail["transcript"][1]["text"]
    assert detail["warnings"] == [] and detail["review"] == {
        "reviewed": False,
        "reviewed_by": None,
        "reviewed_at": None,
        "reviewed_version": None,
    }
    assert staff_client.get("/api/intakes/nope", headers=as_staff()).status_code == 404


def test_a_correction_is_validated_then_saved_as_a_new_version_by_that_clinician(staff_client):
    intake_id = seeded(staff_client, "medications_allergy")
    url = f"/api/intakes/{intake_id}"
    bad = staff_client.patch(
        url, json={"patch": {"allergies": [{"allergen": "latex"}]}, "reason": "typo"}, headers=as_staff()
    )
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "patch", "allergies", 0, "severity"]
    unknown = staff_client.patch(
        url, json={"patch": {"patient_info": {"nmae": "x"}}, "reason": "typo"}, headers=as_staff()
    )
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"][-1] == "nmae"
    assert staff_client.patch(url, json={"patch": {}}, headers=as_staff()).status_code == 422  # no reason
    fixed = staff_client.patch(
        url,
        json={
            "patch": {
                "patient_info": {"date_of_birth": "03/05/1961", "phone": "212 555 0123"},
                "medications": [],
            },
            "reason": "patient called to correct",
        },
        headers=as_staff("bob-token-9876543210ab"),
    )
    assert fixed.status_code == 200, fixed.text
    body = fixed.json()
    assert body["record"]["patient_info"] == {
        "name": "James Carter",
        "date_of_birth": "1961-03-05",
        "phone": "(212) 555-0123",
        "email": None,
    }
    assert body["record"]["medications"] == [] and body["record"]["allergies"][0]["allergen"] == "penicillin"
    latest = body["versions"][-1]
    assert (latest["version"], latest["author"], latest["reason"], latest["model"]) == (
        2,
        "bob",
        "patient called to correct",
        None,
    )
    removed = staff_client.patch(
        url, json={"patch": {"patient_info": {"phone": None}}, "reason": "wrong number"}, headers=as_staff()
    ).json()
    assert removed["record"]["patient_info"]["phone"] is None and removed["versions"][-1]["version"] == 3
    found = staff_client.get(
        "/api/patients/intakes", params={"name": "james carter", "dob": "1961-03-05"}, headers=as_staff()
    )
    assert [item["id"] for item in found.json()] == [intake_id]
    assert staff_client.get("/api/patients/intakes", headers=as_staff()).status_code == 422
    assert (
        staff_client.patch(
            "/api/intakes/nope", json={"patch": {}, "reason": "x"}, headers=as_staff()
        ).status_code
        == 404
    )


def test_review_records_who_and_which_version(staff_client):
    intake_id = seeded(staff_client, "simple_visit")
    review = staff_client.post(f"/api/intakes/{intake_id}/review", headers=as_staff()).json()
    assert review["reviewed"] and review["reviewed_by"] == "alice" and review["reviewed_version"] == 1
    assert staff_client.get(f"/api/intakes/{intake_id}", headers=as_staff()).json()["review"] == review
    assert staff_client.post("/api/intakes/nope/review", headers=as_staff()).status_code == 404


def test_fhir_export_is_a_valid_r4_bundle_keeping_the_life_threatening_allergy(staff_client):
    intake_id = seeded(staff_client, "medications_allergy")
    response = staff_client.get(f"/api/intakes/{intake_id}/fhir", headers=as_staff())
    assert response.status_code == 200 and response.headers["content-type"] == "application/fhir+json"
    bundle = Bundle.model_validate_json(response.text)
    assert bundle.type == "collection"
    allergies = {
        e.resource.code.text: e.resource
        for e in bundle.entry
        if e.resource.get_resource_type() == "AllergyIntolerance"
    }
    assert allergies["penicillin"].criticality == "high"
    silent = seeded(staff_client, "simple_visit", status="incomplete")
    assert staff_client.get(f"/api/intakes/{silent}/fhir", headers=as_staff()).status_code == 404


def test_every_staff_read_and_write_is_audited_with_the_staff_name(staff_client):
    intake_id = seeded(staff_client, "simple_visit")
    staff_client.get("/api/intakes", headers=as_staff())
    staff_client.get(f"/api/intakes/{intake_id}", headers=as_staff(BOB))
    staff_client.patch(f"/api/intakes/{intake_id}", json={"patch": {}, "reason": "none"}, headers=as_staff())
    staff_client.post(f"/api/intakes/{intake_id}/review", headers=as_staff(BOB))
    staff_client.get(f"/api/intakes/{intake_id}/fhir", headers=as_staff())
    assert audit(staff_client) == [
        ("staff_list", "alice", None),
        ("staff_read", "bob", intake_id),
        ("staff_correct", "alice", intake_id),
        ("staff_read_after_correct", "alice", intake_id),
        ("staff_review", "bob", intake_id),
        ("staff_fhir", "alice", intake_id),
    ]


def test_openapi_lists_the_staff_endpoints_with_their_schemas(staff_client):
    # The docs are behind the patient access token like every page (ENABLE_DOCS turns them on).
    schema = staff_client.get("/openapi.json", headers={"Authorization": f"Bearer {PATIENT}"}).json()
    paths = schema["paths"]
    assert set(paths["/api/intakes/{intake_id}"]) == {"get", "patch"}
    for path in (
        "/api/intakes",
        "/api/intakes/{intake_id}/review",
        "/api/intakes/{intake_id}/fhir",
        "/api/patients/intakes",
    ):
        assert path in paths
    assert {"IntakeSummary", "IntakeDetail", "IntakeCorrection", "ReviewState", "MedicalIntake"} <= set(
        schema["components"]["schemas"]
    )
    assert (
        "application/fhir+json"
        in paths["/api/intakes/{intake_id}/fhir"]["get"]["responses"]["200"]["content"]
    )


def test_a_correction_racing_a_saved_version_is_refused_with_409_and_then_goes_through(staff_client):
    intake_id = seeded(staff_client, "simple_visit")
    store = staff_client.app.state.intake.records  # type: ignore[attr-defined]

    async def version_underneath(bump: bool) -> None:
        # What a session's save does, caught half-way: the version row exists, the pointer not yet.
        async with store._sessions() as session, session.begin():
            if bump:
                (await session.get(IntakeRow, intake_id)).latest_version = 2
            else:
                session.add(
                    VersionRow(
                        intake_id=intake_id,
                        version=2,
                        final=True,
                        record={},
                        warnings=[],
                        created_at=datetime.now(UTC),
                        model="m",
                    )
                )

    staff_client.portal.call(version_underneath, False)  # type: ignore[union-attr]
    body = {"patch": {"medications": []}, "reason": "stopped ibuprofen"}
    raced = staff_client.patch(f"/api/intakes/{intake_id}", json=body, headers=as_staff())
    assert raced.status_code == 409 and "send the correction again" in raced.json()["detail"]
    staff_client.portal.call(version_underneath, True)  # type: ignore[union-attr]
    again = staff_client.patch(f"/api/intakes/{intake_id}", json=body, headers=as_staff())
    assert again.status_code == 200 and again.json()["versions"][-1]["version"] == 3
