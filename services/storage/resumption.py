"""Resumable intakes in the database: the page's token, the upstream handle, which process holds it.

A live session's row names its process (`owner`) and stays claimed while that process's heartbeat
renews `live_until`. A resume first rotates the token and bumps `generation` (so one token works
once), then waits for the holder to let go, or for its heartbeat to lapse when it was killed, and
only then takes the row and reads the turns and record, so nothing the holder wrote is missed.
"""

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import ValidationError
from sqlalchemy import Select, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from schemas import MedicalIntake, Role
from services.storage.keys import now
from services.storage.models import IntakeRow, TurnRow, VersionRow

# A process renews its sessions this often; one that has not for LIVE_FOR is taken as gone.
HEARTBEAT = timedelta(seconds=1)
LIVE_FOR = timedelta(seconds=3)

T = TypeVar("T")


def _unlocked(rows: Select[T]) -> Select[T]:
    """Those of `rows` no other transaction is writing, locked for this one (PostgreSQL; SQLite
    locks the whole file). The heartbeat and the expiry touch many rows at once, and the storage
    writer commits many sessions' rows in one batch, in another order: waiting on each other's
    rows, the two deadlocked under load. A row skipped now is renewed (or expired) at the next
    heartbeat, a second later, well inside LIVE_FOR."""
    return rows.with_for_update(skip_locked=True)


def new_token() -> tuple[str, str]:
    """A resume token (192 random bits) and the hash that is stored in its place."""
    token = secrets.token_urlsafe(24)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class ResumeRefused(Exception):
    pass


@dataclass(frozen=True)
class Claim:
    session_id: str
    generation: int
    token: str
    # Another process (or this one) still holds the session: it must let go first.
    held_by: str | None


@dataclass(frozen=True)
class RestoredTurn:
    index: int
    role: Role
    text: str


@dataclass(frozen=True)
class RestoredIntake:
    session_id: str
    generation: int
    token: str
    handle: str | None
    turns: list[RestoredTurn]
    record: MedicalIntake | None
    emergency: str | None


class ResumeStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, owner: str, grace: timedelta) -> None:
        self._sessions = sessions
        self.owner = owner
        self._grace = grace

    def deadlines(self, at: datetime | None = None) -> tuple[datetime, datetime]:
        """(live_until, resumable_until) for a session this process holds now."""
        at = at or now()
        return at + LIVE_FOR, at + LIVE_FOR + self._grace

    def released_until(self) -> datetime:
        """Until when an intake whose connection just dropped can be resumed."""
        return now() + self._grace

    async def claim(self, session_id: str, token: str) -> Claim:
        at = now()
        async with self._sessions() as session:
            row = await session.get(IntakeRow, session_id)
            if row is None or row.resume_token_hash is None:
                raise ResumeRefused("no resumable intake with that id")
            if not hmac.compare_digest(row.resume_token_hash, token_hash(token)):
                raise ResumeRefused("the resume token does not match (it is used once)")
            if row.status != "in_progress" or row.resumable_until is None or row.resumable_until < at:
                raise ResumeRefused("the intake is no longer resumable")
            stored_hash, generation, held_by = row.resume_token_hash, row.generation, row.owner
            alive = held_by is not None and row.live_until is not None and row.live_until > at
        # A transaction of its own, guarded by what was read: on SQLite a transaction that read
        # and then writes fails at once if another connection wrote in between.
        fresh, fresh_hash = new_token()
        async with self._sessions() as session, session.begin():
            rotated = await session.execute(
                update(IntakeRow)
                .where(
                    IntakeRow.id == session_id,
                    IntakeRow.resume_token_hash == stored_hash,
                    IntakeRow.generation == generation,
                )
                .values(resume_token_hash=fresh_hash, generation=generation + 1)
            )
        if rotated.rowcount != 1:  # type: ignore[attr-defined]
            raise ResumeRefused("the resume token was used by another connection")
        return Claim(session_id, generation + 1, fresh, held_by if alive else None)

    async def wait_released(self, session_id: str, *, poll: float = 0.1) -> None:
        """Until the holder lets go, or its heartbeat lapses (at most LIVE_FOR)."""
        deadline = now() + LIVE_FOR
        while now() < deadline:
            async with self._sessions() as session:
                row = await session.get(IntakeRow, session_id)
                if row is None or row.owner is None or row.live_until is None or row.live_until < now():
                    return
            await asyncio.sleep(poll)

    async def take(self, claim: Claim) -> RestoredIntake:
        live_until, resumable_until = self.deadlines()
        async with self._sessions() as session, session.begin():
            taken = await session.execute(
                update(IntakeRow)
                .where(IntakeRow.id == claim.session_id, IntakeRow.generation == claim.generation)
                .values(owner=self.owner, live_until=live_until, resumable_until=resumable_until)
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise ResumeRefused("another connection resumed the intake meanwhile")
            row = await session.get(IntakeRow, claim.session_id, populate_existing=True)
            assert row is not None
            turns = await session.scalars(
                select(TurnRow).where(TurnRow.intake_id == claim.session_id).order_by(TurnRow.index)
            )
            latest = await session.scalar(
                select(VersionRow)
                .where(VersionRow.intake_id == claim.session_id)
                .order_by(VersionRow.version.desc())
                .limit(1)
            )
            record = None
            if latest is not None:
                try:
                    record = MedicalIntake.model_validate(latest.record)
                except ValidationError:
                    record = None
            return RestoredIntake(
                session_id=claim.session_id,
                generation=claim.generation,
                token=claim.token,
                handle=row.resume_handle,
                turns=[RestoredTurn(t.index, t.role, t.text) for t in turns],  # type: ignore[arg-type]
                record=record,
                emergency=row.emergency_reported,
            )

    async def heartbeat(self, generations: dict[str, int]) -> list[str]:
        """Renews this process's sessions; returns those another connection has resumed since."""
        if not generations:
            return []
        live_until, resumable_until = self.deadlines()
        ids = list(generations)
        async with self._sessions() as session, session.begin():
            # Only sessions running here: a row whose session was cut short without letting go
            # lapses after LIVE_FOR, so a resume does not wait on it for ever.
            mine = select(IntakeRow.id).where(IntakeRow.id.in_(ids), IntakeRow.owner == self.owner)
            await session.execute(
                update(IntakeRow)
                .where(IntakeRow.id.in_(_unlocked(mine)))
                .values(live_until=live_until, resumable_until=resumable_until)
                .execution_options(synchronize_session=False)
            )
            rows = await session.execute(
                select(IntakeRow.id, IntakeRow.generation).where(IntakeRow.id.in_(ids))
            )
            return [id_ for id_, generation in rows if generation != generations[id_]]

    async def expire(self) -> int:
        """Intakes nobody resumed within the grace period end as abandoned."""
        at = now()
        async with self._sessions() as session, session.begin():
            lapsed = select(IntakeRow.id).where(
                IntakeRow.status == "in_progress",
                IntakeRow.resumable_until < at,
                or_(IntakeRow.owner.is_(None), IntakeRow.live_until < at),
            )
            result = await session.execute(
                update(IntakeRow)
                .where(IntakeRow.id.in_(_unlocked(lapsed)))
                .execution_options(synchronize_session=False)
                .values(
                    status="abandoned",
                    end_reason="not_resumed",
                    ended_at=at,
                    owner=None,
                    live_until=None,
                    resume_token_hash=None,
                    resume_handle=None,
                )
            )
            return result.rowcount or 0  # type: ignore[attr-defined]
