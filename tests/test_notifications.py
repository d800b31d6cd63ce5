"""Staff notifications against a real HTTP receiver and a real SMTP server: signed, retried, logged."""

import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from config import Settings
from gemini_live.alerts import Emergency
from schemas import Allergy, ChiefComplaint, MedicalIntake, PatientInfo, PresentIllness
from services.notifications import Notifier, deliveries
from services.storage.runtime import Storage, open_storage
from tests.conftest import AppFactory
from tests.fakes import (
    FakeConnector,
    FakeExtractor,
    FakeLiveSession,
    Step,
    heard,
    said,
    tool_call,
    turn_complete,
)
from tests.receivers import smtp_receiver, webhook_receiver
from tests.ws_support import CHUNK, end, open_ready, receive_until

pytestmark = [pytest.mark.integration, pytest.mark.services]

SECRET = "webhook-secret-abcdef"
STAFF = "clinician-token-0123456789"
RECORD = MedicalIntake(
    patient_info=PatientInfo(name="Test Patient"),
    present_illness=PresentIllness(chief_complaints=[ChiefComplaint(complaint="headache")]),
    allergies=[Allergy(allergen="peanuts", severity="life-threatening", requires_emergency_treatment=True)],
    allergies_reviewed=True,
)


def with_settings(settings: Settings, **extra: Any) -> Settings:
    base = {**settings.model_dump(), "NOTIFY_BACKOFF_SECONDS": 0.01, "STAFF_TOKENS": {"carol": STAFF}}
    return Settings(_env_file=None, **{**base, **extra})  # type: ignore[call-arg]


@pytest.fixture
async def storage(settings: Settings) -> AsyncIterator[Storage]:
    opened = await open_storage(settings, purge=False)
    try:
        yield opened
    finally:
        await opened.close()


async def test_a_webhook_that_fails_twice_gets_the_signed_event_on_the_third_attempt(
    settings: Settings, storage: Storage
) -> None:
    with webhook_receiver(fail_first=2) as (url, hooks):
        notifier = Notifier.from_settings(
            with_settings(settings, NOTIFY_WEBHOOK_URL=url, NOTIFY_WEBHOOK_SECRET=SECRET), storage.sessions
        )
        notifier.completed("intake-1", RECORD, None)
        await notifier.idle()
        await notifier.close(1)
        [hook] = hooks.items
        assert hooks.attempts == 3
    expected = "sha256=" + hmac.new(SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
    assert hook.headers["X-Intake-Signature"] == expected
    assert hook.headers["X-Intake-Event"] == "intake.completed"
    assert hook.json == {
        "id": hook.headers["X-Intake-Delivery"],
        "event": "intake.completed",
        "intake_id": "intake-1",
        "status": "completed",
        "flags": {"life_threatening_allergy": True, "emergency_allergy": True, "emergency_reported": None},
        "occurred_at": hook.json["occurred_at"],
    }
    [logged] = await deliveries(storage.sessions)
    assert (logged.channel, logged.status, logged.attempts, logged.last_error) == (
        "webhook",
        "delivered",
        3,
        "the webhook answered HTTP 503",
    )


async def test_a_delivery_that_never_succeeds_is_logged_failed_and_the_next_one_still_goes(
    settings: Settings, storage: Storage
) -> None:
    with webhook_receiver(fail_first=3) as (url, hooks):
        notifier = Notifier.from_settings(
            with_settings(settings, NOTIFY_WEBHOOK_URL=url, NOTIFY_WEBHOOK_SECRET=SECRET, NOTIFY_ATTEMPTS=3),
            storage.sessions,
        )
        notifier.emergency("intake-2", Emergency("server", "red-flag phrase", ["chest pain"]), None)
        await notifier.idle()
        [failed] = await deliveries(storage.sessions, status="failed")
        assert (failed.event, failed.attempts) == ("intake.emergency", 3)
        assert hooks.items == []
        notifier.completed("intake-2", RECORD, None)
        await notifier.idle()
        await notifier.close(1)
        [delivered] = hooks.items
    assert delivered.json["event"] == "intake.completed"
    assert [d.status for d in await deliveries(storage.sessions)] == ["delivered", "failed"]


async def test_email_goes_to_a_real_smtp_server_with_ids_and_flags_only(
    settings: Settings, storage: Storage
) -> None:
    with smtp_receiver(fail_first=1) as (url, mails):
        notifier = Notifier.from_settings(
            with_settings(
                settings, SMTP_URL=url, NOTIFY_EMAIL_TO=["desk@clinic.example", "dr@clinic.example"]
            ),
            storage.sessions,
        )
        notifier.emergency("intake-3", Emergency("model", "crushing chest pain", ["chest pain"]), RECORD)
        await notifier.idle()
        await notifier.close(1)
        [(recipients, message)] = mails.items
    assert recipients == ["desk@clinic.example", "dr@clinic.example"]
    assert message["Subject"] == "EMERGENCY flagged during an intake"
    body = message.get_payload()
    assert "intake-3" in body and '"emergency_reported": "model"' in body
    assert "chest" not in body and "headache" not in body and "Test Patient" not in body
    [logged] = await deliveries(storage.sessions)
    assert (logged.channel, logged.status, logged.attempts) == ("email", "delivered", 2)


async def test_the_summary_is_sent_only_when_asked_for(settings: Settings, storage: Storage) -> None:
    with webhook_receiver() as (url, hooks):
        notifier = Notifier.from_settings(
            with_settings(
                settings, NOTIFY_WEBHOOK_URL=url, NOTIFY_WEBHOOK_SECRET=SECRET, NOTIFY_INCLUDE_SUMMARY=True
            ),
            storage.sessions,
        )
        notifier.emergency("intake-4", Emergency("model", "crushing chest pain", ["chest pain"]), RECORD)
        await notifier.idle()
        await notifier.close(1)
        [hook] = hooks.items
    assert hook.json["summary"] == {
        "chief_complaint": "headache",
        "emergency_reason": "crushing chest pain",
        "emergency_symptoms": ["chest pain"],
    }


def test_settings_refuse_an_unsigned_webhook_and_mail_without_recipients(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NOTIFY_WEBHOOK_SECRET"):
        Settings(_env_file=None, NOTIFY_WEBHOOK_URL="http://127.0.0.1:9/hook")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="NOTIFY_EMAIL_TO"):
        Settings(_env_file=None, SMTP_URL="smtp://127.0.0.1:25")  # type: ignore[call-arg]
    ok = Settings(_env_file=None, NOTIFY_WEBHOOK_URL="http://h/x", NOTIFY_WEBHOOK_SECRET="s")  # type: ignore[call-arg]
    assert ok.NOTIFY_WEBHOOK_URL == "http://h/x"


def test_a_completed_intake_notifies_staff_and_an_unreachable_receiver_never_touches_the_session(
    settings: Settings, make_app: AppFactory
) -> None:
    upstream = FakeLiveSession(
        script=[
            Step(1, [heard("I have a headache."), said("How long?"), turn_complete()]),
            Step(2, [heard("Yes, that's right."), tool_call("call-42")]),
            Step(2, [said("Thank you, goodbye."), turn_complete()]),
        ]
    )
    with webhook_receiver() as (good_url, hooks):
        # The e-mail goes nowhere (nothing listens on port 9): the page must not notice.
        clinic = with_settings(
            settings,
            NOTIFY_WEBHOOK_URL=good_url,
            NOTIFY_WEBHOOK_SECRET=SECRET,
            SMTP_URL="smtp://127.0.0.1:9",
            NOTIFY_EMAIL_TO=["desk@clinic.example"],
            NOTIFY_ATTEMPTS=2,
        )
        with TestClient(
            make_app(FakeConnector(upstream), FakeExtractor(RECORD), app_settings=clinic)
        ) as client:
            ws, session = open_ready(client)
            session.send_bytes(CHUNK)
            receive_until(session, "turn_complete")
            session.send_bytes(CHUNK)
            seen = receive_until(session, "intake_complete")
            assert "error" not in [m["type"] for m in seen]
            assert end(ws, session) == 1000
            [hook] = hooks.wait_for(1)
            headers = {"Authorization": f"Bearer {STAFF}"}
            assert client.get("/api/notifications").status_code == 401
            failed: list[dict[str, Any]] = []
            for _ in range(2000):
                failed = client.get("/api/notifications", params={"status": "failed"}, headers=headers).json()
                if failed:
                    break
            [intake] = client.get("/api/intakes", headers=headers).json()
    assert hook.json["event"] == "intake.completed" and hook.json["intake_id"] == intake["id"]
    assert hook.json["status"] == "completed"
    assert failed[0]["channel"] == "email" and failed[0]["intake_id"] == intake["id"]
    assert failed[0]["attempts"] == 2 and "could not be reached" in failed[0]["last_error"]
