import logging
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from schemas import Allergy, ChiefComplaint, MedicalIntake, Medication, PatientInfo, PresentIllness
from services.emr_service import EMRService, IntakeStore, RecordNotFound
from services.insurance_service import (
    Benefit,
    InsuranceService,
    InvalidMemberId,
    PayerGateway,
    Policy,
    PolicyTableGateway,
    normalize_provider,
)
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


def test_emr_service_satisfies_the_store_protocol() -> None:
    store: IntakeStore = EMRService()
    assert store is not None


async def test_saved_record_can_be_read_back() -> None:
    store = EMRService()
    before = datetime.now(UTC)
    saved = await store.save_intake(_intake(), session_id="session-1")

    assert saved.created_at.tzinfo is UTC and before <= saved.created_at <= datetime.now(UTC)
    assert saved.updated_at is None
    assert await store.get_record(saved.record_id) == saved


async def test_each_save_gets_its_own_id() -> None:
    store = EMRService()
    first = await store.save_intake(_intake(), session_id="s")
    second = await store.save_intake(_intake(), session_id="s")
    assert first.record_id != second.record_id


async def test_changing_a_returned_record_does_not_change_the_store() -> None:
    store = EMRService()
    record = _intake()
    saved = await store.save_intake(record, session_id="s")
    record.allergies.clear()
    saved.record.medications.clear()

    stored = await store.get_record(saved.record_id)
    assert len(stored.record.allergies) == 1
    assert len(stored.record.medications) == 2


async def test_unknown_record_is_not_found() -> None:
    store = EMRService()
    with pytest.raises(RecordNotFound, match="no intake record with id nope"):
        await store.get_record("nope")
    with pytest.raises(RecordNotFound):
        await store.update_record("nope", {"medications": []})


async def test_update_merges_nested_sections_and_stamps_the_time() -> None:
    store = EMRService()
    saved = await store.save_intake(_intake(), session_id="s")

    updated = await store.update_record(
        saved.record_id, {"patient_info": {"phone": "(415) 555-0199"}, "allergies": []}
    )

    assert updated.record.patient_info == PatientInfo(
        name="Jane Doe",
        date_of_birth="1980-03-05",
        phone="(415) 555-0199",
        email="jane@example.com",
    )
    assert updated.record.allergies == []
    assert updated.created_at == saved.created_at
    assert updated.updated_at is not None and updated.updated_at >= saved.created_at
    assert await store.get_record(saved.record_id) == updated


@pytest.mark.parametrize(
    "updates",
    [
        {"allergies": [{"allergen": "latex"}]},
        {"medications": "ibuprofen"},
        {"patiant_info": {"name": "typo"}},
        {"patient_info": {"phon": "212-555-0123"}},
    ],
)
async def test_invalid_update_is_refused_and_leaves_the_record(updates: dict[str, object]) -> None:
    store = EMRService()
    saved = await store.save_intake(_intake(), session_id="s")
    with pytest.raises(ValidationError):
        await store.update_record(saved.record_id, updates)
    assert await store.get_record(saved.record_id) == saved


async def test_search_matches_normalised_name_dob_and_phone() -> None:
    store = EMRService()
    jane = await store.save_intake(
        _intake(name="Jane  Doe", dob="March 5, 1980", phone="+1 212 555 0123"), session_id="a"
    )
    await store.save_intake(_intake(name="John Roe", dob="1975-01-02", phone="415-555-0100"), session_id="b")

    assert await store.search(name="jane doe") == [jane]
    assert await store.search(dob="03/05/1980") == [jane]
    assert await store.search(phone="(212) 555-0123") == [jane]
    assert await store.search(name="JANE DOE", dob="1980-03-05", phone="2125550123") == [jane]
    assert await store.search(name="Jane Doe", dob="1975-01-02") == []
    assert await store.search(name="Jane") == []


async def test_search_finds_records_whose_stored_values_were_invalid() -> None:
    store = EMRService()
    saved = await store.save_intake(_intake(phone="555-123-4567"), session_id="s")
    assert await store.search(phone="(555) 123 4567") == [saved]


async def test_search_needs_a_criterion() -> None:
    with pytest.raises(ValueError, match="at least one"):
        await EMRService().search()
    with pytest.raises(ValueError, match="at least one"):
        await EMRService().search(name="  ")


async def test_records_without_patient_info_are_not_found_by_search() -> None:
    store = EMRService()
    await store.save_intake(MedicalIntake(), session_id="s")
    assert await store.search(name="Jane Doe") == []


async def test_patient_history_is_that_patients_records_oldest_first() -> None:
    store = EMRService()
    first = await store.save_intake(_intake(), session_id="visit-1")
    await store.save_intake(_intake(name="John Roe"), session_id="visit-2")
    second = await store.save_intake(_intake(dob="3/5/1980"), session_id="visit-3")

    history = await store.get_patient_history(name="jane doe", dob="1980-03-05")
    assert [r.record_id for r in history] == [first.record_id, second.record_id]


async def test_patient_history_needs_name_and_dob() -> None:
    with pytest.raises(ValueError, match="both"):
        await EMRService().get_patient_history(name="Jane Doe", dob="")


async def test_emr_logs_record_ids_but_no_patient_data(caplog: pytest.LogCaptureFixture) -> None:
    store = EMRService()
    with caplog.at_level(logging.DEBUG, logger="services.emr_service"):
        saved = await store.save_intake(_intake(), session_id="s")
        await store.update_record(saved.record_id, {"patient_info": {"name": "Janet Doe"}})
        await store.search(name="Janet Doe")
    assert saved.record_id in caplog.text
    for secret in ["Jane", "1980-03-05", "212-555-0123", "jane@example.com", "migraine"]:
        assert secret not in caplog.text


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


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("aetna", "Aetna"),
        ("AETNA", "Aetna"),
        ("BCBS", "Blue Cross Blue Shield"),
        ("Blue Cross Blue Shield", "Blue Cross Blue Shield"),
        ("cigna", "Cigna"),
        ("UHC", "UnitedHealthcare"),
        ("United Healthcare", "UnitedHealthcare"),
        ("kaiser", "Kaiser Permanente"),
        ("Kaiser-Permanente", "Kaiser Permanente"),
        ("  AmeriHealth   Caritas ", "AmeriHealth Caritas"),
    ],
)
def test_provider_names_are_normalised(raw: str, expected: str) -> None:
    assert normalize_provider(raw) == expected


def test_empty_provider_is_refused() -> None:
    with pytest.raises(ValueError, match="provider is empty"):
        normalize_provider(" - ")


TODAY = date(2025, 6, 15)
OFFICE_VISIT = Benefit(copay=Decimal("25"), coinsurance_percent=80)
SPECIALIST = Benefit(copay=Decimal("50"), coinsurance_percent=80, referral_required=True)
POLICIES = [
    Policy(
        member_id="abc-123-456",
        provider="aetna",
        plan="PPO Gold",
        effective_date=date(2024, 1, 1),
        benefits={"Office_Visit": OFFICE_VISIT, "specialist_visit": SPECIALIST},
    ),
    Policy(
        member_id="XYZ987654",
        provider="UHC",
        plan="HMO",
        effective_date=date(2020, 1, 1),
        termination_date=date(2024, 12, 31),
    ),
    Policy(member_id="FUT000001", provider="cigna", plan="EPO", effective_date=date(2025, 7, 1)),
]


def _insurance() -> tuple[InsuranceService, PolicyTableGateway]:
    gateway = PolicyTableGateway(POLICIES, today=lambda: TODAY)
    return InsuranceService(gateway), gateway


def test_table_gateway_is_a_payer_gateway() -> None:
    gateway: PayerGateway = _insurance()[1]
    assert gateway is not None


async def test_coverage_of_an_active_policy_comes_from_the_table() -> None:
    service, _ = _insurance()
    result = await service.verify_coverage("ABC 123 456", "Aetna")
    assert result.status == "active"
    assert (result.member_id, result.provider, result.plan) == ("ABC123456", "Aetna", "PPO Gold")
    assert result.effective_date == date(2024, 1, 1) and result.termination_date is None


@pytest.mark.parametrize(
    ("member_id", "provider", "status"),
    [
        ("XYZ987654", "uhc", "inactive"),
        ("FUT000001", "Cigna", "inactive"),
        ("NOBODY123", "aetna", "not_found"),
        ("ABC123456", "cigna", "not_found"),
    ],
)
async def test_coverage_is_inactive_or_not_found_as_the_table_says(
    member_id: str, provider: str, status: str
) -> None:
    result = await _insurance()[0].verify_coverage(member_id, provider)
    assert result.status == status
    if status == "not_found":
        assert result.plan is None


@pytest.mark.parametrize(
    ("member_id", "service_type", "status", "benefit"),
    [
        ("ABC123456", "office_visit", "eligible", OFFICE_VISIT),
        ("ABC123456", " Specialist_Visit ", "eligible", SPECIALIST),
        ("ABC123456", "dental", "not_covered", None),
        ("XYZ987654", "office_visit", "inactive", None),
        ("NOBODY123", "office_visit", "not_found", None),
    ],
)
async def test_eligibility_answers_from_the_policy_benefits(
    member_id: str, service_type: str, status: str, benefit: Benefit | None
) -> None:
    provider = "uhc" if member_id.startswith("XYZ") else "aetna"
    result = await _insurance()[0].check_eligibility(member_id, provider, service_type)
    assert (result.status, result.benefit) == (status, benefit)


async def test_benefits_are_given_only_for_active_policies() -> None:
    service, _ = _insurance()
    active = await service.get_benefits("ABC123456", "aetna")
    assert active.benefits == {"office_visit": OFFICE_VISIT, "specialist_visit": SPECIALIST}
    inactive = await service.get_benefits("XYZ987654", "uhc")
    assert (inactive.status, inactive.benefits) == ("inactive", {})


async def test_pre_authorization_is_recorded_for_review_never_approved() -> None:
    service, gateway = _insurance()
    result = await service.submit_pre_authorization("ABC123456", "aetna", "99213", "g43.909")
    assert result.status == "pending_review" and result.reference
    assert (result.procedure_code, result.diagnosis_code) == ("99213", "G43.909")
    assert gateway.pre_authorizations == [result]

    inactive = await service.submit_pre_authorization("XYZ987654", "uhc", "99213", "R51")
    assert (inactive.status, inactive.reference) == ("inactive", None)
    assert gateway.pre_authorizations == [result]


async def test_eligibility_needs_a_service_type() -> None:
    with pytest.raises(ValueError, match="service type is empty"):
        await _insurance()[0].check_eligibility("ABC123456", "aetna", " ")


@pytest.mark.parametrize(
    ("procedure", "diagnosis", "message"),
    [("9921", "R51", "procedure code"), ("99213", "51", "diagnosis code")],
)
async def test_malformed_codes_are_refused(procedure: str, diagnosis: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        await _insurance()[0].submit_pre_authorization("ABC123456", "aetna", procedure, diagnosis)


@pytest.mark.parametrize("member_id", ["", "AB1", "ABC#12345"])
async def test_invalid_member_ids_are_refused_before_the_gateway(member_id: str) -> None:
    service, _ = _insurance()
    with pytest.raises(InvalidMemberId):
        await service.verify_coverage(member_id, "aetna")
    with pytest.raises(InvalidMemberId):
        await service.check_eligibility(member_id, "aetna")


def test_table_with_duplicate_or_invalid_member_ids_is_refused() -> None:
    with pytest.raises(ValueError, match="share a member ID"):
        PolicyTableGateway([POLICIES[0], POLICIES[0].model_copy(update={"member_id": "ABC123456"})])
    bad = POLICIES[0].model_copy(update={"member_id": "x"})
    with pytest.raises(InvalidMemberId):
        PolicyTableGateway([bad])


async def test_insurance_logs_no_member_ids(caplog: pytest.LogCaptureFixture) -> None:
    service, _ = _insurance()
    with caplog.at_level(logging.DEBUG, logger="services.insurance_service"):
        await service.verify_coverage("ABC123456", "aetna")
        await service.submit_pre_authorization("ABC123456", "aetna", "99213", "R51")
    assert "active" in caplog.text
    assert "ABC123456" not in caplog.text
