"""Validation and canonical forms for the values a patient gives during intake."""

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

import phonenumbers
from email_validator import EmailNotValidError
from email_validator import validate_email as _check_email

from schemas import Allergy, MedicalIntake

# Error messages never quote the input: they end up in logs and warnings, and the input is
# patient data.


@dataclass(frozen=True, slots=True)
class Validation:
    ok: bool
    value: str | None = None
    error: str | None = None


def _valid(value: str) -> Validation:
    return Validation(ok=True, value=value)


def _invalid(error: str) -> Validation:
    return Validation(ok=False, error=error)


# phonenumbers turns letters into keypad digits (1-800-FLOWERS), so free text such as
# "call me at ..." would become a number; only digits and separators get that far.
_PHONE_CHARS = re.compile(r"[\d\s().+\-]+")


def validate_phone(raw: str | None) -> Validation:
    text = (raw or "").strip()
    if not text:
        return _invalid("phone number is empty")
    if not _PHONE_CHARS.fullmatch(text):
        return _invalid("phone number may contain only digits, spaces, + - . ( )")
    try:
        number = phonenumbers.parse(text, "US")
    except phonenumbers.NumberParseException:
        return _invalid("not a phone number")
    # A 7-digit local number is "possible" to phonenumbers, but says nothing of its area.
    if number.country_code != 1 or len(phonenumbers.national_significant_number(number)) != 10:
        return _invalid("not a US phone number: expected 10 digits, or 11 starting with 1")
    if not phonenumbers.is_valid_number(number):
        return _invalid("not a valid US phone number: area code or exchange is not in use")
    if phonenumbers.region_code_for_number(number) != "US":
        return _invalid("not a US phone number")
    return _valid(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))


def validate_email(raw: str | None) -> Validation:
    text = (raw or "").strip()
    if not text:
        return _invalid("email address is empty")
    try:
        result = _check_email(text, check_deliverability=False)
    except EmailNotValidError as exc:
        # Parenthesised details from the library can quote parts of the address.
        reason = re.sub(r"\s*\([^)]*\)", "", str(exc)).strip()
        return _invalid(f"not a valid email address: {reason}")
    return _valid(result.normalized)


_MONTH_NAMES = (
    "january february march april may june july august september october november december"
).split()
_MONTHS = {
    name: number for number, month in enumerate(_MONTH_NAMES, start=1) for name in (month, month[:3])
} | {"sept": 9}
_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
# US order: month first. 03/05/1980 is March 5th, never May 3rd.
_US_DATE = re.compile(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})")
_MONTH_FIRST = re.compile(r"([a-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})")
_DAY_FIRST = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\s+([a-z]+)\.?,?\s+(\d{4})")
MAX_AGE_YEARS = 120


def _date_parts(text: str) -> tuple[int, int, int] | None:
    if m := _ISO_DATE.fullmatch(text):
        return int(m[1]), int(m[2]), int(m[3])
    if m := _US_DATE.fullmatch(text):
        return int(m[3]), int(m[1]), int(m[2])
    if (m := _MONTH_FIRST.fullmatch(text)) and m[1] in _MONTHS:
        return int(m[3]), _MONTHS[m[1]], int(m[2])
    if (m := _DAY_FIRST.fullmatch(text)) and m[2] in _MONTHS:
        return int(m[3]), _MONTHS[m[2]], int(m[1])
    return None


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year - years, day=28)


def validate_date_of_birth(raw: str | None, *, today: date | None = None) -> Validation:
    text = " ".join((raw or "").split()).lower()
    if not text:
        return _invalid("date of birth is empty")
    parts = _date_parts(text)
    if parts is None:
        return _invalid(
            "date of birth is not in a known format: use YYYY-MM-DD, MM/DD/YYYY, "
            "MM-DD-YYYY, 'March 5, 1980' or '5 March 1980'"
        )
    try:
        born = date(*parts)
    except ValueError:
        return _invalid("date of birth is not a real calendar date")
    today = today or date.today()
    if born > today:
        return _invalid("date of birth is in the future")
    if born < _years_before(today, MAX_AGE_YEARS):
        return _invalid(f"date of birth is more than {MAX_AGE_YEARS} years ago")
    return _valid(born.isoformat())


ALLERGY_SEVERITIES = ("mild", "moderate", "serious", "life-threatening")
# Only plain synonyms. Clinical judgements (e.g. "anaphylaxis" means life-threatening) are
# left to a person reading the warning, not guessed here.
_SEVERITY_SYNONYMS = {"severe": "serious"}


def validate_allergy_severity(raw: str | None) -> Validation:
    key = re.sub(r"[\s_-]+", "-", (raw or "").strip().lower())
    if not key:
        return _invalid("allergy severity is empty")
    key = _SEVERITY_SYNONYMS.get(key, key)
    if key not in ALLERGY_SEVERITIES:
        return _invalid(f"allergy severity must be one of: {', '.join(ALLERGY_SEVERITIES)}")
    return _valid(key)


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def sanitize_text(text: str | None, max_length: int | None = 500) -> str:
    if max_length is not None and max_length < 0:
        raise ValueError("max_length must not be negative")
    # Whitespace first, so a newline between two words becomes a space, not nothing.
    cleaned = _CONTROL_CHARS.sub("", " ".join((text or "").split()))
    if max_length is not None:
        cleaned = cleaned[:max_length].rstrip()
    return cleaned


_MEDICATION_CHARS = re.compile(r"(?:[^\W_]|[ ./()\-])+")


def validate_medication_name(raw: str | None) -> Validation:
    name = " ".join((raw or "").split())
    if not name:
        return _invalid("medication name is empty")
    if not 2 <= len(name) <= 100:
        return _invalid("medication name must be 2-100 characters")
    if not _MEDICATION_CHARS.fullmatch(name):
        return _invalid("medication name may contain only letters, digits, spaces and - / . ( )")
    if not any(c.isalpha() for c in name):
        return _invalid("medication name must contain a letter")
    return _valid(name)


_NUMBER_WORDS = {
    word: number for number, word in enumerate("one two three four five six seven eight nine ten".split(), 1)
}
_SEVERITY_NUMBER = re.compile(
    r"(?<![\w.])(-?\d+(?:\.\d+)?)|\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE
)


def validate_symptom_severity(raw: str | None) -> Validation:
    text = (raw or "").strip()
    if not text:
        return _invalid("symptom severity is empty")
    # The first number wins: "7/10" and "7 out of 10" are both a 7.
    match = _SEVERITY_NUMBER.search(text)
    if match is None:
        return _invalid("symptom severity must include a number from 1 to 10")
    digits, word = match.groups()
    if word:
        return _valid(str(_NUMBER_WORDS[word.lower()]))
    if "." in digits:
        return _invalid("symptom severity must be a whole number from 1 to 10")
    level = int(digits)
    if not 1 <= level <= 10:
        return _invalid("symptom severity must be between 1 and 10")
    return _valid(str(level))


def missing_sections(record: MedicalIntake) -> list[str]:
    missing = []
    info = record.patient_info
    if info is None or not any(info.model_dump().values()):
        missing.append("patient_info")
    if record.present_illness is None or not record.present_illness.chief_complaints:
        missing.append("present_illness")
    # "Reviewed, none" is complete; an empty list nobody asked about is not.
    if not record.allergies and not record.allergies_reviewed:
        missing.append("allergies")
    return missing


def is_critical_allergy(allergy: Allergy) -> bool:
    severity = validate_allergy_severity(allergy.severity)
    return allergy.requires_emergency_treatment or severity.value == "life-threatening"


def critical_allergies(allergies: Iterable[Allergy]) -> list[Allergy]:
    return [allergy for allergy in allergies if is_critical_allergy(allergy)]


TEXT_MAX_LENGTH = 500
_Check = Callable[[str | None], Validation]


def _sanitize_tree(node: object, path: str, warnings: list[str]) -> object:
    if isinstance(node, str):
        # Never truncated here: a long answer is reported, not cut.
        cleaned = sanitize_text(node, max_length=None)
        if len(cleaned) > TEXT_MAX_LENGTH:
            warnings.append(f"{path}: longer than {TEXT_MAX_LENGTH} characters")
        return cleaned
    if isinstance(node, dict):
        return {
            key: _sanitize_tree(value, f"{path}.{key}" if path else key, warnings)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_sanitize_tree(item, f"{path}[{i}]", warnings) for i, item in enumerate(node)]
    return node


def _canonicalize(fields: dict[str, Any], key: str, path: str, check: _Check, warnings: list[str]) -> None:
    value = fields.get(key)
    if value is None:
        return
    result = check(value)
    if result.ok:
        fields[key] = result.value
    else:
        warnings.append(f"{path}.{key}: {result.error}")


def normalize_intake(record: MedicalIntake, *, today: date | None = None) -> tuple[MedicalIntake, list[str]]:
    """Canonical copy of `record`; a value that fails validation is kept as given and named
    in the warnings (which never quote values)."""
    warnings: list[str] = []
    data = cast(dict[str, Any], _sanitize_tree(record.model_dump(), "", warnings))

    if (info := data.get("patient_info")) is not None:
        _canonicalize(info, "phone", "patient_info", validate_phone, warnings)
        _canonicalize(info, "email", "patient_info", validate_email, warnings)
        _canonicalize(
            info,
            "date_of_birth",
            "patient_info",
            lambda raw: validate_date_of_birth(raw, today=today),
            warnings,
        )
    for i, medication in enumerate(data["medications"]):
        _canonicalize(medication, "name", f"medications[{i}]", validate_medication_name, warnings)
    for i, allergy in enumerate(data["allergies"]):
        _canonicalize(allergy, "severity", f"allergies[{i}]", validate_allergy_severity, warnings)
        if allergy["severity"] == "life-threatening":
            allergy["requires_emergency_treatment"] = True
    if data["allergies"]:
        # An allergy on the record means the question was asked.
        data["allergies_reviewed"] = True

    return MedicalIntake.model_validate(data), warnings
