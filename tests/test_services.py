import logging
from datetime import datetime

import pytest

from schemas import Allergy, ChiefComplaint, MedicalIntake, Medication, PatientInfo, PresentIllness
from services.notification_service import (
    Appointment,
    EmailMessage,
    InvalidRecipient,
    NotificationService,
    NotificationTransport,
    OutboxTransport,
    SmsMessage,
)

pytestmark = pytest.mark.services


def _intake(name: str = "Jane Doe", dob: str = "1980-03-05", phone: str = "212-555-0123") -> MedicalIntake:
    return MedicalIntake(
        patient_info=PatientInfo(name=name, date_of_birth=dob, phone=phone, email="jane@example.com"),
        present_illness=PresentIllness(
            chief_complaints=[
                ChiefComplaint(complaint="migraine"),
                ChiefComplaint(complaint="nausea"),
            ]
        ),
        medications=[Medication(name="Sumatriptan"), Medication(name="Ibuprofen")],
        allergies=[Allergy(allergen="penicillin", severity="serious")],
    )


def test_outbox_is_a_notification_transport() -> None:
    transport: NotificationTransport = OutboxTransport()
    assert transport.name == "outbox"


async def test_email_goes_to_the_transport_with_a_normalised_address() -> None:
    outbox = OutboxTransport()
    service = NotificationService(outbox)

    sent = await service.send_email(
        "Jane@Example.COM", "Your visit", "See you soon.", cc=["desk@example.org"]
    )

    assert list(outbox.emails) == [
        EmailMessage(
            to="Jane@example.com",
            subject="Your visit",
            body="See you soon.",
            cc=("desk@example.org",),
        )
    ]
    assert (sent.channel, sent.to, sent.subject, sent.transport) == (
        "email",
        "Jane@example.com",
        "Your visit",
        "outbox",
    )
    assert service.history() == [sent]


async def test_sms_goes_to_the_transport_in_e164() -> None:
    outbox = OutboxTransport()
    sent = await NotificationService(outbox).send_sms("(212) 555-0123", "Hello")
    assert list(outbox.sms) == [SmsMessage(to="+12125550123", body="Hello")]
    assert sent.channel == "sms" and sent.subject is None


@pytest.mark.parametrize(
    ("to", "cc"),
    [("not-an-address", None), ("", None), ("jane@example.com", ["desk@"])],
)
async def test_invalid_email_recipients_are_refused_and_nothing_is_sent(
    to: str, cc: list[str] | None
) -> None:
    outbox = OutboxTransport()
    service = NotificationService(outbox)
    with pytest.raises(InvalidRecipient, match="invalid e-mail recipient"):
        await service.send_email(to, "Subject", "Body", cc=cc)
    assert not outbox.emails and service.history() == []


@pytest.mark.parametrize("to", ["12345", "", "+44 20 7946 0958", "555-123-4567"])
async def test_invalid_sms_recipients_are_refused(to: str) -> None:
    outbox = OutboxTransport()
    with pytest.raises(InvalidRecipient, match="invalid SMS recipient"):
        await NotificationService(outbox).send_sms(to, "Hello")
    assert not outbox.sms


async def test_empty_content_is_refused() -> None:
    service = NotificationService()
    with pytest.raises(ValueError, match="subject is empty"):
        await service.send_email("jane@example.com", " ", "Body")
    with pytest.raises(ValueError, match="message is empty"):
        await service.send_sms("212-555-0123", "")


async def test_appointment_confirmation_goes_by_email_and_sms() -> None:
    outbox = OutboxTransport()
    service = NotificationService(outbox, clinic_name="Hillside Clinic", clinic_phone="(212) 555-0100")
    appointment = Appointment(
        starts_at=datetime(2025, 7, 1, 14, 30), provider="Dr. Okafor", location="Room 4"
    )

    sent = await service.send_appointment_confirmation(
        appointment, email="jane@example.com", phone="212-555-0123"
    )

    assert [n.channel for n in sent] == ["email", "sms"]
    body = outbox.emails[0].body
    assert "Dr. Okafor at Room 4" in body and "Tuesday, July 1, 2025 at 02:30 PM" in body
    assert "(212) 555-0100" in body and "Hillside Clinic" in body
    assert outbox.sms[0].body.startswith("Hillside Clinic: appointment confirmed")


async def test_appointment_confirmation_without_a_clinic_phone_offers_no_number() -> None:
    outbox = OutboxTransport()
    appointment = Appointment(starts_at=datetime(2025, 7, 1, 9, 0), provider="Dr. Okafor")
    await NotificationService(outbox).send_appointment_confirmation(appointment, phone="2125550123")
    assert not outbox.emails
    assert "reschedule" not in outbox.sms[0].body


async def test_a_bad_phone_stops_the_email_from_going_too() -> None:
    outbox = OutboxTransport()
    appointment = Appointment(starts_at=datetime(2025, 7, 1, 9, 0), provider="Dr. Okafor")
    with pytest.raises(InvalidRecipient):
        await NotificationService(outbox).send_appointment_confirmation(
            appointment, email="jane@example.com", phone="12345"
        )
    assert not outbox.emails and not outbox.sms


async def test_notifications_need_a_recipient() -> None:
    with pytest.raises(InvalidRecipient, match="no e-mail address or phone number"):
        await NotificationService().send_intake_completion(MedicalIntake())


async def test_intake_completion_summarises_the_record_and_keeps_sms_free_of_it() -> None:
    outbox = OutboxTransport()
    sent = await NotificationService(outbox).send_intake_completion(_intake())

    assert [n.to for n in sent] == ["jane@example.com", "+12125550123"]
    body = outbox.emails[0].body
    assert "Main concern: migraine" in body
    assert "Medications listed: 2" in body and "Allergies listed: 1" in body
    assert "migraine" not in outbox.sms[0].body


async def test_intake_completion_for_a_record_without_complaints_says_so() -> None:
    outbox = OutboxTransport()
    await NotificationService(outbox).send_intake_completion(MedicalIntake(), email="jane@example.com")
    assert "Main concern: not recorded" in outbox.emails[0].body


async def test_reminder_is_an_sms() -> None:
    outbox = OutboxTransport()
    sent = await NotificationService(outbox, clinic_name="Hillside").send_reminder(
        "212-555-0123", "appointment", "tomorrow at 9:00"
    )
    assert sent.channel == "sms"
    assert outbox.sms[0].body == "Hillside reminder (appointment): tomorrow at 9:00"


async def test_history_returns_the_latest_and_stays_bounded() -> None:
    service = NotificationService(history_size=3)
    sent = [await service.send_sms("212-555-0123", f"message {i}") for i in range(5)]
    assert service.history() == sent[2:]
    assert service.history(limit=2) == sent[3:]
    assert service.history(limit=0) == []
    with pytest.raises(ValueError, match="limit"):
        service.history(limit=-1)


async def test_outbox_drops_the_oldest_when_full() -> None:
    outbox = OutboxTransport(max_messages=2)
    service = NotificationService(outbox)
    for i in range(3):
        await service.send_sms("212-555-0123", f"message {i}")
    assert [m.body for m in outbox.sms] == ["message 1", "message 2"]


async def test_notifications_log_no_recipient_or_content(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="services.notification_service"):
        await NotificationService().send_intake_completion(_intake())
    assert "email" in caplog.text
    for secret in ["jane@example.com", "2125550123", "migraine"]:
        assert secret not in caplog.text


class _FailingTransport:
    name = "failing"

    async def send_email(self, message: EmailMessage) -> None:
        raise ConnectionError("smtp down")

    async def send_sms(self, message: SmsMessage) -> None:
        raise ConnectionError("sms gateway down")


async def test_transport_failure_reaches_the_caller_and_is_not_recorded() -> None:
    service = NotificationService(_FailingTransport())
    with pytest.raises(ConnectionError):
        await service.send_email("jane@example.com", "Subject", "Body")
    assert service.history() == []
