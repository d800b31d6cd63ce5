"""Storage of completed intake records: the store protocol and its in-memory implementation."""

import asyncio
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from schemas import MedicalIntake
from utils.validators import validate_date_of_birth, validate_phone

logger = logging.getLogger(__name__)


class RecordNotFound(LookupError):
    def __init__(self, record_id: str) -> None:
        super().__init__(f"no intake record with id {record_id}")
        self.record_id = record_id


class SavedRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    record_id: str
    session_id: str
    record: MedicalIntake
    created_at: datetime
    updated_at: datetime | None = None


class IntakeStore(Protocol):
    async def save_intake(self, record: MedicalIntake, *, session_id: str) -> SavedRecord: ...

    async def get_record(self, record_id: str) -> SavedRecord: ...

    async def update_record(self, record_id: str, updates: Mapping[str, Any]) -> SavedRecord: ...

    async def search(
        self, *, name: str | None = None, dob: str | None = None, phone: str | None = None
    ) -> list[SavedRecord]: ...

    async def get_patient_history(self, *, name: str, dob: str) -> list[SavedRecord]: ...


def _name_key(value: str | None) -> str | None:
    return " ".join(value.split()).casefold() if value else None


def _dob_key(value: str | None) -> str | None:
    if not value:
        return None
    checked = validate_date_of_birth(value)
    return checked.value if checked.ok else value.strip()


def _phone_key(value: str | None) -> str | None:
    if not value:
        return None
    checked = validate_phone(value)
    return checked.value if checked.ok else "".join(c for c in value if c.isdigit())


def _merge(base: dict[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    # Nested sections merge, so {"patient_info": {"phone": ...}} keeps the patient's name.
    merged = dict(base)
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class EMRService:
    """In-memory IntakeStore: records live as long as the process. For development and tests."""

    def __init__(self) -> None:
        self._records: dict[str, SavedRecord] = {}
        self._lock = asyncio.Lock()

    async def save_intake(self, record: MedicalIntake, *, session_id: str) -> SavedRecord:
        saved = SavedRecord(
            record_id=str(uuid.uuid4()),
            session_id=session_id,
            record=record.model_copy(deep=True),
            created_at=datetime.now(UTC),
        )
        async with self._lock:
            self._records[saved.record_id] = saved
        logger.info("saved intake record %s", saved.record_id)
        return saved.model_copy(deep=True)

    async def get_record(self, record_id: str) -> SavedRecord:
        async with self._lock:
            saved = self._records.get(record_id)
        if saved is None:
            raise RecordNotFound(record_id)
        return saved.model_copy(deep=True)

    async def update_record(self, record_id: str, updates: Mapping[str, Any]) -> SavedRecord:
        async with self._lock:
            current = self._records.get(record_id)
            if current is None:
                raise RecordNotFound(record_id)
            # Unknown keys are refused, not dropped: a misspelt field would otherwise vanish.
            merged = MedicalIntake.model_validate(
                _merge(current.record.model_dump(), updates), extra="forbid"
            )
            saved = current.model_copy(update={"record": merged, "updated_at": datetime.now(UTC)})
            self._records[record_id] = saved
        logger.info("updated intake record %s", record_id)
        return saved.model_copy(deep=True)

    async def search(
        self, *, name: str | None = None, dob: str | None = None, phone: str | None = None
    ) -> list[SavedRecord]:
        wanted = {
            field: key
            for field, key in (
                ("name", _name_key(name)),
                ("dob", _dob_key(dob)),
                ("phone", _phone_key(phone)),
            )
            if key
        }
        if not wanted:
            raise ValueError("search needs at least one of name, dob or phone")
        async with self._lock:
            records = list(self._records.values())
        found = []
        for saved in records:
            info = saved.record.patient_info
            if info is None:
                continue
            keys = {
                "name": _name_key(info.name),
                "dob": _dob_key(info.date_of_birth),
                "phone": _phone_key(info.phone),
            }
            if all(keys[field] == key for field, key in wanted.items()):
                found.append(saved.model_copy(deep=True))
        found.sort(key=lambda saved: saved.created_at)
        return found

    async def get_patient_history(self, *, name: str, dob: str) -> list[SavedRecord]:
        if not _name_key(name) or not _dob_key(dob):
            raise ValueError("patient history needs both name and date of birth")
        return await self.search(name=name, dob=dob)
