"""How an intake is found: normalized name, birth date and phone, and the latest record's summary."""

from datetime import UTC, datetime

from schemas import MedicalIntake
from services.storage.models import IntakeRow
from utils.validators import validate_date_of_birth, validate_phone


def now() -> datetime:
    return datetime.now(UTC)


def name_key(value: str | None) -> str | None:
    return " ".join(value.split()).casefold() if value and value.strip() else None


def dob_key(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    checked = validate_date_of_birth(value)
    return checked.value if checked.ok else value.strip()


def phone_key(value: str | None) -> str | None:
    if not value or not value.strip():
        return None
    checked = validate_phone(value)
    return checked.value if checked.ok else "".join(c for c in value if c.isdigit())


def take_latest(row: IntakeRow, record: MedicalIntake, version: int) -> None:
    info = record.patient_info
    complaints = record.present_illness.chief_complaints if record.present_illness else []
    row.latest_version = version
    row.patient_name = info.name if info else None
    row.name_key = name_key(row.patient_name)
    row.date_of_birth = dob_key(info.date_of_birth) if info else None
    row.phone_key = phone_key(info.phone) if info else None
    row.chief_complaint = "; ".join(c.complaint for c in complaints) or None
    row.life_threatening_allergy = any(a.severity == "life-threatening" for a in record.allergies)
    row.emergency = any(a.requires_emergency_treatment for a in record.allergies)
