"""The intake store: what a session writes as it goes, and what staff read, search and correct."""

import json
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas import MedicalIntake
from services.storage.audit import audit_line, audit_row, audit_trail
from services.storage.keys import dob_key, name_key, now, phone_key, take_latest
from services.storage.models import IntakeRow, TurnRow, VersionRow
from services.storage.recording import SessionInfo, SessionRecords, StoredSession
from services.storage.resumption import ResumeStore
from services.storage.views import (
    IntakeDetail,
    IntakeFlags,
    IntakeStatus,
    IntakeSummary,
    RecordVersion,
    ReviewState,
    TranscriptTurn,
)
from services.storage.writer import StorageError, StorageWriter
from utils.validators import normalize_intake

__all__ = [
    "IntakeNotFound",
    "IntakeStatus",
    "IntakeStore",
    "InvalidCorrection",
    "SessionInfo",
    "SessionRecords",
    "StorageError",
]


class IntakeNotFound(LookupError):
    def __init__(self, intake_id: str) -> None:
        super().__init__(f"no intake with id {intake_id}")


class InvalidCorrection(ValueError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("the corrected record is not a valid MedicalIntake")
        self.errors = errors


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge, null removes a member, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def _summary(row: IntakeRow) -> IntakeSummary:
    return IntakeSummary(
        id=row.id,
        status=row.status,
        patient_name=row.patient_name,
        date_of_birth=row.date_of_birth,
        chief_complaint=row.chief_complaint,
        flags=IntakeFlags(
            life_threatening_allergy=row.life_threatening_allergy,
            emergency=row.emergency,
            emergency_reported=row.emergency_reported,
        ),
        started_at=row.started_at,
        completed_at=row.completed_at,
        practice=row.practice,
    )


def _version(row: VersionRow) -> RecordVersion:
    return RecordVersion(
        version=row.version,
        final=row.final,
        created_at=row.created_at,
        record=MedicalIntake.model_validate(row.record),
        warnings=list(row.warnings),
        model=row.model,
        latency_s=row.latency_s,
        author=row.author,
        reason=row.reason,
    )


class IntakeStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        writer: StorageWriter,
        resumes: ResumeStore | None = None,
    ) -> None:
        self._sessions = sessions
        self._writer = writer
        self.resumes = resumes

    def for_session(self, session_id: str) -> SessionRecords:
        return StoredSession(self._writer, session_id, self.resumes)

    async def flush(self) -> None:
        await self._writer.flush()

    async def audit(self, intake_id: str) -> list[dict[str, Any]]:
        """One intake's audit trail, oldest first, as the JSONL export writes it."""
        await self._writer.flush()
        async with self._sessions() as session:
            return [json.loads(audit_line(row)) for row in await audit_trail(session, intake_id)]

    async def list_intakes(
        self,
        *,
        staff: str,
        status: IntakeStatus | None = None,
        since: datetime | None = None,
        practice: bool = False,
        q: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[IntakeSummary]:
        query = select(IntakeRow).where(IntakeRow.practice == practice)
        if status is not None:
            query = query.where(IntakeRow.status == status)
        if since is not None:
            query = query.where(IntakeRow.started_at >= since)
        if (wanted := name_key(q)) is not None:
            escaped = wanted.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(IntakeRow.name_key.like(f"%{escaped}%", escape="\\"))
        query = query.order_by(IntakeRow.started_at.desc(), IntakeRow.id.desc()).limit(limit).offset(offset)
        return await self._read_list(query, staff, "staff_list", practice=practice, status=status)

    async def search(
        self, *, staff: str, name: str | None = None, dob: str | None = None, phone: str | None = None
    ) -> list[IntakeSummary]:
        """A patient's intakes across visits, oldest first, by normalized name, birth date and phone."""
        wanted = [
            (column, key)
            for column, key in (
                (IntakeRow.name_key, name_key(name)),
                (IntakeRow.date_of_birth, dob_key(dob)),
                (IntakeRow.phone_key, phone_key(phone)),
            )
            if key is not None
        ]
        if not wanted:
            raise ValueError("search needs at least one of name, dob or phone")
        query = select(IntakeRow).where(IntakeRow.practice.is_(False))
        for column, key in wanted:
            query = query.where(column == key)
        return await self._read_list(query.order_by(IntakeRow.started_at), staff, "staff_search")

    async def _read_list(
        self, query: Select[IntakeRow], staff: str, event: str, **fields: Any
    ) -> list[IntakeSummary]:
        async with self._sessions() as session, session.begin():
            rows = list(await session.scalars(query))
            # Who saw which patients in a list is audited like opening each one.
            session.add(audit_row(event, intake_id=None, staff=staff, ids=[r.id for r in rows], **fields))
        return [_summary(row) for row in rows]

    async def get_intake(self, intake_id: str, *, staff: str, purpose: str = "staff_read") -> IntakeDetail:
        async with self._sessions() as session, session.begin():
            row = await session.get(IntakeRow, intake_id)
            if row is None:
                raise IntakeNotFound(intake_id)
            versions = list(
                await session.scalars(
                    select(VersionRow).where(VersionRow.intake_id == intake_id).order_by(VersionRow.version)
                )
            )
            turns = list(
                await session.scalars(
                    select(TurnRow).where(TurnRow.intake_id == intake_id).order_by(TurnRow.index)
                )
            )
            session.add(audit_row(purpose, intake_id=intake_id, staff=staff))
        return _detail(row, versions, turns)

    async def correct(
        self, intake_id: str, patch: dict[str, Any], *, staff: str, reason: str
    ) -> IntakeDetail:
        try:
            await self._save_correction(intake_id, patch, staff=staff, reason=reason)
        except (IntegrityError, OperationalError):
            # The session saved a version, or SQLite's writer held the lock, at that moment.
            raise StorageError("the record changed at the same moment; send the correction again") from None
        return await self.get_intake(intake_id, staff=staff, purpose="staff_read_after_correct")

    async def _save_correction(
        self, intake_id: str, patch: dict[str, Any], *, staff: str, reason: str
    ) -> None:
        async with self._sessions() as session, session.begin():
            row = await session.get(IntakeRow, intake_id, with_for_update=True)
            if row is None:
                raise IntakeNotFound(intake_id)
            latest = await session.scalar(
                select(VersionRow.record).where(
                    VersionRow.intake_id == intake_id, VersionRow.version == row.latest_version
                )
            )
            try:
                # Unknown keys are refused, not dropped: a misspelt field would otherwise vanish.
                checked = MedicalIntake.model_validate(merge_patch(latest or {}, patch), extra="forbid")
            except ValidationError as exc:
                raise InvalidCorrection(
                    [dict(e) for e in exc.errors(include_url=False, include_input=False)]
                ) from None
            record, warnings = normalize_intake(checked)
            version = row.latest_version + 1
            session.add(
                VersionRow(
                    intake_id=intake_id,
                    version=version,
                    final=True,
                    record=record.model_dump(mode="json"),
                    warnings=warnings,
                    created_at=now(),
                    author=staff,
                    reason=reason,
                )
            )
            take_latest(row, record, version)
            session.add(
                audit_row("staff_correct", intake_id=intake_id, staff=staff, version=version, reason=reason)
            )

    async def review(self, intake_id: str, *, staff: str) -> ReviewState:
        async with self._sessions() as session, session.begin():
            row = await session.get(IntakeRow, intake_id, with_for_update=True)
            if row is None:
                raise IntakeNotFound(intake_id)
            row.reviewed_by, row.reviewed_at, row.reviewed_version = staff, now(), row.latest_version
            session.add(
                audit_row("staff_review", intake_id=intake_id, staff=staff, version=row.latest_version)
            )
        return _review(row)

    async def documents(
        self,
        *,
        intake_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        practice: bool = False,
        staff: str = "export",
    ) -> AsyncIterator[IntakeDetail]:
        query = select(IntakeRow.id).where(IntakeRow.latest_version > 0)
        if intake_id is not None:
            query = query.where(IntakeRow.id == intake_id)
        else:
            query = query.where(IntakeRow.practice == practice)
        if since is not None:
            query = query.where(IntakeRow.started_at >= since)
        if until is not None:
            query = query.where(IntakeRow.started_at < until)
        async with self._sessions() as session:
            ids = list(await session.scalars(query.order_by(IntakeRow.started_at)))
        for found in ids:
            yield await self.get_intake(found, staff=staff, purpose="export")


def _review(row: IntakeRow) -> ReviewState:
    return ReviewState(
        reviewed=row.reviewed_at is not None,
        reviewed_by=row.reviewed_by,
        reviewed_at=row.reviewed_at,
        reviewed_version=row.reviewed_version,
    )


def _detail(row: IntakeRow, versions: Sequence[VersionRow], turns: Sequence[TurnRow]) -> IntakeDetail:
    latest = _version(versions[-1]) if versions else None
    return IntakeDetail(
        **_summary(row).model_dump(),
        ended_at=row.ended_at,
        end_reason=row.end_reason,
        upstream=row.upstream,
        live_model=row.live_model,
        record=latest.record if latest else None,
        warnings=latest.warnings if latest else [],
        versions=[_version(v) for v in versions],
        transcript=[
            TranscriptTurn(
                index=t.index,
                role=t.role,
                text=t.text,
                interrupted=t.interrupted,
                started_at=t.started_at,
                ended_at=t.ended_at,
            )
            for t in turns
        ],
        review=_review(row),
    )
