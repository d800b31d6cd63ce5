"""The tutorial's flat keys inside `extracted_data.data`, derived from the canonical record."""

import json

from schemas import (
    ChiefComplaint,
    ExtractedDataMessage,
    MedicalIntake,
    Medication,
    PresentIllness,
    server_message_adapter,
)


def intake(*complaints: ChiefComplaint, medications: list[Medication] | None = None) -> MedicalIntake:
    return MedicalIntake(
        present_illness=PresentIllness(chief_complaints=list(complaints)),
        medications=medications or [],
    )


def sent(record: MedicalIntake) -> dict[str, object]:
    data: dict[str, object] = json.loads(
        ExtractedDataMessage(data=record).model_dump_json(exclude_none=True)
    )["data"]
    return data


def test_the_first_complaint_reads_as_a_sentence_with_duration_and_severity():
    record = intake(
        ChiefComplaint(complaint="sore throat", duration="3 days", severity="6/10"),
        ChiefComplaint(complaint="cough"),
    )
    assert sent(record)["chief_complaint"] == "Sore throat for 3 days, severity 6/10."


def test_a_bare_severity_gets_its_scale_and_missing_parts_are_left_out():
    assert sent(intake(ChiefComplaint(complaint="Back pain", severity="7")))["chief_complaint"] == (
        "Back pain, severity 7/10."
    )
    assert sent(intake(ChiefComplaint(complaint="Headaches.", duration="2 weeks")))["chief_complaint"] == (
        "Headaches for 2 weeks."
    )


def test_no_complaint_yet_sends_no_chief_complaint_and_an_empty_medication_list():
    data = sent(MedicalIntake())
    assert "chief_complaint" not in data
    assert data["current_medications"] == []


def test_medications_keep_name_dose_and_frequency_and_the_canonical_list_stays():
    record = intake(
        medications=[
            Medication(name="ibuprofen", dose="400 mg", frequency="every 8 hours", indication="pain"),
            Medication(name="vitamin D"),
        ]
    )
    data = sent(record)
    assert data["current_medications"] == [
        {"name": "ibuprofen", "dose": "400 mg", "frequency": "every 8 hours"},
        {"name": "vitamin D"},
    ]
    assert data["medications"] == [m.model_dump(exclude_none=True) for m in record.medications]


def test_the_view_is_never_read_back_into_the_record():
    record = intake(ChiefComplaint(complaint="cough"), medications=[Medication(name="salbutamol")])
    frame = ExtractedDataMessage(data=record, final=True).model_dump_json()
    parsed = server_message_adapter.validate_json(frame)
    assert isinstance(parsed, ExtractedDataMessage)
    assert parsed.data == record
