"""What a session writes as it goes: its start, each finalized turn, audit events, record versions."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from schemas import MedicalIntake, Turn
from services.storage.audit import audit_row
from services.storage.keys import now, take_latest
from services.storage.models import IntakeRow, TurnRow, VersionRow
from services.storage.resumption import ResumeStore
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
    # The hash of the page's resume token; None when resuming is off.
    resume_token_hash: str | None = None


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

    def handle(self, handle: str) -> None: ...

    async def release(self, *, handle: str | None) -> None: ...

    async def discard(self) -> None: ...


class StoredSession:
    """One session's writes; fire-and-forget ones that are lost fail the next awaited save."""

    def __init__(self, writer: StorageWriter, session_id: str, resumes: ResumeStore | None = None) -> None:
        self._writer = writer
        self._id = session_id
        # Set when dropped connections are resumable: this process holds the session's row.
        self._resumes = resumes
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
        owner = live_until = resumable_until = None
        if self._resumes is not None and info.resume_token_hash is not None:
            owner = self._resumes.owner
            live_until, resumable_until = self._resumes.deadlines(info.started_at)

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
                    resume_token_hash=info.resume_token_hash,
                    owner=owner,
                    live_until=live_until,
                    resumable_until=resumable_until,
                    generation=0,
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
                .values(
                    status=status,
                    end_reason=reason,
                    ended_at=at,
                    last_activity_at=at,
                    owner=None,
                    live_until=None,
                    resumable_until=None,
                    resume_token_hash=None,
                    resume_handle=None,
                )
            )

        await self._writer.commit(write)

    def handle(self, handle: str) -> None:
        """The newest upstream resumption handle, for whichever process resumes the intake."""
        if self._resumes is None:
            return
        owner = self._resumes.owner

        async def write(session: AsyncSession) -> None:
            await session.execute(
                update(IntakeRow)
                .where(IntakeRow.id == self._id, IntakeRow.owner == owner)
                .values(resume_handle=handle)
            )

        self._submit(write, counted=False)

    async def release(self, *, handle: str | None) -> None:
        """The connection dropped: the intake stays resumable for the grace period, held by nobody."""
        if self._resumes is None:
            return
        owner = self._resumes.owner
        resumable_until = self._resumes.released_until()
        values: dict[str, Any] = {"owner": None, "live_until": None, "resumable_until": resumable_until}
        if handle is not None:
            values["resume_handle"] = handle

        async def write(session: AsyncSession) -> None:
            await session.execute(
                update(IntakeRow).where(IntakeRow.id == self._id, IntakeRow.owner == owner).values(**values)
            )

        await self._writer.commit(write)

    async def discard(self) -> None:
        """A session that a resume replaced before anything was said leaves no row."""

        async def write(session: AsyncSession) -> None:
            await session.execute(
                delete(IntakeRow).where(IntakeRow.id == self._id, IntakeRow.patient_turns == 0)
            )

        await self._writer.commit(write)
