from datetime import date

import pytest

from schemas import (
    Allergy,
    ChiefComplaint,
    MedicalIntake,
    Medication,
    PatientInfo,
    PresentIllness,
)
from utils.validators import (
    TEXT_MAX_LENGTH,
    critical_allergies,
    missing_sections,
    normalize_intake,
    sanitize_text,
    validate_allergy_severity,
    validate_date_of_birth,
    validate_email,
    validate_medication_name,
    validate_phone,
    validate_symptom_severity,
)

pytestmark = [pytest.mark.validators, pytest.mark.unit]

TODAY = date(2025, 6, 15)


@pytest.mark.parametrize(
    "raw",
    [
        "2125550123",
        "212-555-0123",
        "212.555.0123",
        "212 555 0123",
        "(212) 555-0123",
        "(212)555-0123",
        "12125550123",
        "1-212-555-0123",
        "1 (212) 555-0123",
        "+1 212 555 0123",
        "+12125550123",
        "  212-555-0123  ",
    ],
)
def test_us_phone_formats_become_the_national_format(raw: str) -> None:
    result = validate_phone(raw)
    assert result.ok
    assert result.value == "(212) 555-0123"
    assert result.error is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "empty"),
        ("", "empty"),
        ("   ", "empty"),
        ("555-0123", "10 digits"),
        ("21255501234", "10 digits"),
        ("22125550123", "10 digits"),
        ("+44 20 7946 0958", "not a US phone number"),
        ("(416) 555-0123", "not a US phone number"),
        ("(555) 123-4567", "not in use"),
        ("(012) 555-0123", "not in use"),
        ("()", "not a phone number"),
        ("+", "not a phone number"),
        ("call 212 555 0123", "only digits"),
        ("1-800-FLOWERS", "only digits"),
        ("212-555-0123 ext 4", "only digits"),
    ],
)
def test_phone_rejections_say_why(raw: str | None, message: str) -> None:
    result = validate_phone(raw)
    assert not result.ok
    assert result.value is None
    assert result.error is not None and message in result.error


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jane.doe@example.com", "jane.doe@example.com"),
        ("Jane.Doe@Example.COM", "Jane.Doe@example.com"),
        ("  jane@example.org ", "jane@example.org"),
        ("jane+intake@mail.example.com", "jane+intake@mail.example.com"),
    ],
)
def test_valid_emails_are_normalised(raw: str, expected: str) -> None:
    assert validate_email(raw).value == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "jane",
        "jane@",
        "@example.com",
        "jane@localhost",
        "jane..doe@example.com",
        "jane doe@example.com",
        "jane@site.invalid",
    ],
)
def test_invalid_emails_are_rejected(raw: str | None) -> None:
    result = validate_email(raw)
    assert not result.ok
    assert result.error is not None and result.error.startswith(("email", "not a valid email"))


def test_email_errors_do_not_quote_the_address() -> None:
    result = validate_email("jane@exa mple.com")
    assert result.error is not None
    assert "exa" not in result.error and "jane" not in result.error


@pytest.mark.parametrize(
    "raw",
    [
        "1980-03-05",
        "1980-3-5",
        "03/05/1980",
        "3/5/1980",
        "03-05-1980",
        "March 5, 1980",
        "march 5 1980",
        "Mar. 5th, 1980",
        "5 March 1980",
        "5th March, 1980",
        "  March  5,  1980 ",
    ],
)
def test_dates_of_birth_become_iso(raw: str) -> None:
    assert validate_date_of_birth(raw, today=TODAY).value == "1980-03-05"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "empty"),
        ("", "empty"),
        ("yesterday", "known format"),
        ("1980/03/05", "known format"),
        ("05 03 1980", "known format"),
        ("Smarch 5, 1980", "known format"),
        ("02/30/1980", "not a real calendar date"),
        ("1981-02-29", "not a real calendar date"),
        ("13/01/1980", "not a real calendar date"),
        ("2025-06-16", "future"),
        ("1905-06-14", "more than 120 years"),
    ],
)
def test_impossible_dates_of_birth_are_rejected(raw: str | None, message: str) -> None:
    result = validate_date_of_birth(raw, today=TODAY)
    assert not result.ok
    assert result.error is not None and message in result.error


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("2025-06-15", "2025-06-15"), ("1905-06-15", "1905-06-15"), ("1984-02-29", "1984-02-29")],
)
def test_date_of_birth_boundaries_are_accepted(raw: str, expected: str) -> None:
    assert validate_date_of_birth(raw, today=TODAY).value == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("mild", "mild"),
        ("MODERATE", "moderate"),
        (" Serious ", "serious"),
        ("severe", "serious"),
        ("Severe", "serious"),
        ("life-threatening", "life-threatening"),
        ("Life threatening", "life-threatening"),
        ("LIFE_THREATENING", "life-threatening"),
        ("life -  threatening", "life-threatening"),
    ],
)
def test_allergy_severity_variants_are_canonical(raw: str, expected: str) -> None:
    assert validate_allergy_severity(raw).value == expected


@pytest.mark.parametrize("raw", [None, "", "anaphylaxis", "very bad", "lifethreatening", "7"])
def test_allergy_severity_outside_the_scale_is_rejected(raw: str | None) -> None:
    assert not validate_allergy_severity(raw).ok


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("", ""),
        ("  plain  ", "plain"),
        ("line one\nline two", "line one line two"),
        ("tabs\t\tand\r\nbreaks", "tabs and breaks"),
        ("bell\x07 and null\x00 gone", "bell and null gone"),
        ("del\x7f and c1\x9b gone", "del and c1 gone"),
        ("non\u00a0breaking", "non breaking"),
        ("café ☕", "café ☕"),
    ],
)
def test_sanitize_text_removes_control_characters_and_collapses_whitespace(
    raw: str | None, expected: str
) -> None:
    assert sanitize_text(raw) == expected


def test_sanitize_text_truncates_to_max_length_without_trailing_space() -> None:
    assert sanitize_text("abcd efgh", max_length=5) == "abcd"
    assert sanitize_text("x" * 600) == "x" * 500
    assert sanitize_text("x" * 600, max_length=None) == "x" * 600


def test_sanitize_text_refuses_a_negative_max_length() -> None:
    with pytest.raises(ValueError, match="max_length"):
        sanitize_text("text", max_length=-1)


@pytest.mark.parametrize(
    "raw",
    [
        "Tylenol",
        "Co-amoxiclav",
        "Tylenol (acetaminophen)",
        "Vitamin B12",
        "Albuterol HFA",
        "Sulfamethoxazole/trimethoprim",
        "Aspirin 81 mg",
        "Ibuprofène",
        "Xa",
    ],
)
def test_medication_names_accepted(raw: str) -> None:
    assert validate_medication_name(raw).value == raw


def test_medication_name_whitespace_is_collapsed() -> None:
    assert validate_medication_name("  Tylenol \n PM ").value == "Tylenol PM"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "empty"),
        ("  ", "empty"),
        ("X", "2-100"),
        ("A" * 101, "2-100"),
        ("Tylenol; DROP TABLE", "only letters"),
        ("drug_name", "only letters"),
        ("<script>", "only letters"),
        ("12345", "letter"),
    ],
)
def test_medication_names_rejected(raw: str | None, message: str) -> None:
    result = validate_medication_name(raw)
    assert not result.ok
    assert result.error is not None and message in result.error


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7", "7"),
        ("7/10", "7"),
        ("10/10", "10"),
        ("about 7", "7"),
        ("7 out of 10", "7"),
        ("1", "1"),
        ("seven", "7"),
        ("Ten out of ten", "10"),
        ("maybe a six", "6"),
        ("6-7", "6"),
    ],
)
def test_symptom_severity_is_extracted(raw: str, expected: str) -> None:
    assert validate_symptom_severity(raw).value == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (None, "empty"),
        ("", "empty"),
        ("bad", "include a number"),
        ("none", "include a number"),
        ("someone said", "include a number"),
        ("0", "between 1 and 10"),
        ("11", "between 1 and 10"),
        ("-3", "between 1 and 10"),
        ("7.5", "whole number"),
    ],
)
def test_symptom_severity_out_of_scale_is_rejected(raw: str | None, message: str) -> None:
    result = validate_symptom_severity(raw)
    assert not result.ok
    assert result.error is not None and message in result.error


def _complete_record() -> MedicalIntake:
    return MedicalIntake(
        patient_info=PatientInfo(name="Jane Doe"),
        present_illness=PresentIllness(chief_complaints=[ChiefComplaint(complaint="headache")]),
        allergies=[Allergy(allergen="penicillin", severity="mild")],
    )


def test_complete_record_has_no_missing_sections() -> None:
    assert missing_sections(_complete_record()) == []


def test_empty_record_misses_every_section() -> None:
    assert missing_sections(MedicalIntake()) == ["patient_info", "present_illness", "allergies"]


def test_sections_that_exist_but_are_empty_count_as_missing() -> None:
    record = _complete_record().model_copy(
        update={"patient_info": PatientInfo(name=""), "present_illness": PresentIllness()}
    )
    assert missing_sections(record) == ["patient_info", "present_illness"]


def test_critical_allergies_are_life_threatening_or_need_emergency_treatment() -> None:
    peanuts = Allergy(allergen="peanuts", severity="Life threatening")
    bees = Allergy(allergen="bee stings", severity="serious", requires_emergency_treatment=True)
    latex = Allergy(allergen="latex", severity="mild")
    odd = Allergy(allergen="shellfish", severity="anaphylaxis")
    assert critical_allergies([peanuts, latex, bees, odd]) == [peanuts, bees]
    assert critical_allergies([]) == []


def _messy_record() -> MedicalIntake:
    return MedicalIntake(
        patient_info=PatientInfo(
            name="  Jane\n Doe\x00 ",
            date_of_birth="March 5, 1980",
            phone="212.555.0123",
            email="Jane@Example.COM",
        ),
        present_illness=PresentIllness(
            chief_complaints=[ChiefComplaint(complaint="head\tache", severity="7/10")],
            symptoms=["nausea\r\n", " dizziness"],
        ),
        medications=[Medication(name=" Tylenol  (acetaminophen) ", dose="500\x07 mg")],
        allergies=[
            Allergy(allergen="peanuts", reaction=["hives\n"], severity="Life threatening"),
            Allergy(allergen="penicillin", severity="severe"),
        ],
    )


def test_normalize_intake_canonicalises_contact_details_and_severities() -> None:
    normal, warnings = normalize_intake(_messy_record(), today=TODAY)
    assert warnings == []
    assert normal.patient_info == PatientInfo(
        name="Jane Doe",
        date_of_birth="1980-03-05",
        phone="(212) 555-0123",
        email="Jane@example.com",
    )
    assert normal.allergies[0].severity == "life-threatening"
    assert normal.allergies[0].requires_emergency_treatment
    assert normal.allergies[0].reaction == ["hives"]
    assert normal.allergies[1].severity == "serious"
    assert not normal.allergies[1].requires_emergency_treatment
    assert normal.medications[0].name == "Tylenol (acetaminophen)"
    assert normal.medications[0].dose == "500 mg"
    assert normal.present_illness is not None
    assert normal.present_illness.chief_complaints[0].complaint == "head ache"
    assert normal.present_illness.chief_complaints[0].severity == "7/10"
    assert normal.present_illness.symptoms == ["nausea", "dizziness"]


def test_normalize_intake_returns_a_new_record_and_leaves_the_input_alone() -> None:
    record = _messy_record()
    before = record.model_dump()
    normal, _ = normalize_intake(record, today=TODAY)
    assert normal is not record
    assert record.model_dump() == before


SECRET_VALUES = {
    "phone": "555-867-5309",
    "email": "jenny.secret@",
    "date_of_birth": "31/31/1999",
}


def test_normalize_intake_keeps_invalid_values_and_warns_without_quoting_them() -> None:
    long_note = "x" * (TEXT_MAX_LENGTH + 10)
    record = MedicalIntake(
        patient_info=PatientInfo(name="Jenny", **SECRET_VALUES),
        present_illness=PresentIllness(timeline=long_note),
        medications=[Medication(name="Zzyzx_99")],
        allergies=[Allergy(allergen="shellfish", severity="anaphylaxis")],
    )
    normal, warnings = normalize_intake(record, today=TODAY)

    assert normal.patient_info is not None
    for field, value in SECRET_VALUES.items():
        assert getattr(normal.patient_info, field) == value
    assert normal.medications[0].name == "Zzyzx_99"
    assert normal.allergies[0].severity == "anaphylaxis"
    assert not normal.allergies[0].requires_emergency_treatment
    assert normal.present_illness is not None and normal.present_illness.timeline == long_note

    assert [w.split(":")[0] for w in warnings] == [
        "present_illness.timeline",
        "patient_info.phone",
        "patient_info.email",
        "patient_info.date_of_birth",
        "medications[0].name",
        "allergies[0].severity",
    ]
    for warning in warnings:
        for secret in [*SECRET_VALUES.values(), "Zzyzx", "anaphylaxis", "xxxx"]:
            assert secret not in warning


def test_normalize_intake_handles_an_empty_record() -> None:
    normal, warnings = normalize_intake(MedicalIntake())
    assert normal == MedicalIntake()
    assert warnings == []


def test_age_limit_on_a_leap_day_counts_back_to_28_february() -> None:
    leap_day = date(2020, 2, 29)  # 1900 was not a leap year
    assert validate_date_of_birth("1900-02-28", today=leap_day).ok
    assert not validate_date_of_birth("1900-02-27", today=leap_day).ok


def test_normalize_intake_leaves_absent_contact_details_absent() -> None:
    record = MedicalIntake(patient_info=PatientInfo(name="Jane Doe"))
    assert normalize_intake(record) == (record, [])
