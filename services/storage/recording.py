"""What a session writes as it goes: its start, each finalized turn, audit events, record versions."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from schemas import MedicalIntake, Turn
from services.storage.audit import audit_row
from services.storage.keys import now, take_latest
from services.storage.models import IntakeRow, TurnRow, VersionRow
from services.storage.views import IntakeStatus
from services.storage.writer import StorageError, StorageWriter


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    started_at: datetime
    upstream: str
    live_model: str
    practice: bool
    client: str


class SessionRecords(Protocol):
    def started(self, info: SessionInfo) -> None: ...

    def turn(
        self, index: int, turn: Turn, *, interrupted: bool, started_at: datetime, ended_at: datetime
    ) -> None: ...

    def event(self, name: str, **fields: Any) -> None: ...

    async def save_version(
        self, record: MedicalIntake, *, final: bool, warnings: list[str], model: str, latency_s: float
    ) -> int: ...

    async def ended(self, *, reason: str, status: IntakeStatus) -> None: ...

    def flag_emergency(self, *, source: str) -> None: ...


class StoredSession:
    """One session's writes; fire-and-forget ones that are lost fail the next awaited save."""

    def __init__(self, writer: StorageWriter, session_id: str) -> None:
        self._writer = writer
        self._id = session_id
        self._lost = 0

    def _lose(self) -> None:
        self._lost += 1

    def _check_nothing_lost(self) -> None:
        if self._lost:
            raise StorageError(f"{self._lost} earlier write(s) of this session did not reach the database")

    def _submit(self, write: Any, *, counted: bool = True) -> None:
        try:
            self._writer.submit(write, on_lost=self._lose if counted else None)
        except StorageError:
            if counted:
                self._lose()

    def started(self, info: SessionInfo) -> None:
        async def write(session: AsyncSession) -> None:
            session.add(
                IntakeRow(
                    id=info.session_id,
                    status="in_progress",
                    started_at=info.started_at,
                    last_activity_at=info.started_at,
                    upstream=info.upstream,
                    live_model=info.live_model,
                    practice=info.practice,
                    client=info.client,
                    patient_turns=0,
                    life_threatening_allergy=False,
                    emergency=False,
                    latest_version=0,
                )
            )

        self._submit(write)

    def turn(
        self, index: int, turn: Turn, *, interrupted: bool, started_at: datetime, ended_at: datetime
    ) -> None:
        spoke = int(turn.role == "patient" and bool(turn.text.strip()))

        async def write(session: AsyncSession) -> None:
            session.add(
                TurnRow(
                    intake_id=self._id,
                    index=index,
                    role=turn.role,
                    text=turn.text,
                    interrupted=interrupted,
                    started_at=started_at,
                    ended_at=ended_at,
                )
            )
            await session.execute(
                update(IntakeRow)
                .where(IntakeRow.id == self._id)
                .values(patient_turns=IntakeRow.patient_turns + spoke, last_activity_at=ended_at)
            )

        self._submit(write)

    def event(self, name: str, **fields: Any) -> None:
        row = audit_row(name, intake_id=self._id, **fields)

        async def write(session: AsyncSession) -> None:
            session.add(row)

        self._submit(write, counted=False)

    async def save_version(
        self, record: MedicalIntake, *, final: bool, warnings: list[str], model: str, latency_s: float
    ) -> int:
        self._check_nothing_lost()
        data = record.model_dump(mode="json")

        async def write(session: AsyncSession) -> int:
            # Checked again here: a write queued before this one may have failed in the meantime.
            self._check_nothing_lost()
            row = await session.get(IntakeRow, self._id, with_for_update=True)
            if row is None:
                raise StorageError("the session's start was never stored")
            version = row.latest_version + 1
            at = now()
            session.add(
                VersionRow(
                    intake_id=self._id,
                    version=version,
                    final=final,
                    record=data,
                    warnings=list(warnings),
                    created_at=at,
                    model=model,
                    latency_s=latency_s,
                )
            )
            take_latest(row, record, version)
            row.last_activity_at = at
            if final:
                row.completed_at = at
            return version

        result: int = await self._writer.commit(write)
        return result

    def flag_emergency(self, *, source: str) -> None:
        async def write(session: AsyncSession) -> None:
            # The first source stays: a later flag from the other source changes nothing.
            await session.execute(
                update(IntakeRow)
                .where(IntakeRow.id == self._id, IntakeRow.emergency_reported.is_(None))
                .values(emergency_reported=source)
            )

        self._submit(write)

    async def ended(self, *, reason: str, status: IntakeStatus) -> None:
        async def write(session: AsyncSession) -> None:
            at = now()
            await session.execute(
                update(IntakeRow)
                .where(IntakeRow.id == self._id)
                .values(status=status, end_reason=reason, ended_at=at, last_activity_at=at)
            )

        await self._writer.commit(write)
