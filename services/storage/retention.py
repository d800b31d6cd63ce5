"""Retention: old sessions, practice sessions and sessions in which the patient never spoke are purged."""

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, delete, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.storage.keys import now
from services.storage.models import AuditRow, IntakeRow, TurnRow, VersionRow

logger = logging.getLogger(__name__)

PRACTICE_RETENTION = timedelta(days=1)
# A session with no finalized turn for this long has no live process behind it (the idle timeout
# closes a silent one within minutes): it was killed, so it is marked abandoned.
ABANDONED_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class PurgeResult:
    purged: int
    abandoned: int


async def purge(
    sessions: async_sessionmaker[AsyncSession],
    *,
    retention: timedelta,
    interval: timedelta,
    at: datetime | None = None,
) -> PurgeResult:
    at = at or now()
    doomed: ColumnElement[bool] = or_(
        IntakeRow.started_at < at - retention,
        and_(IntakeRow.practice.is_(True), IntakeRow.started_at < at - PRACTICE_RETENTION),
        and_(
            IntakeRow.patient_turns == 0,
            or_(IntakeRow.status != "in_progress", IntakeRow.last_activity_at < at - interval),
        ),
    )
    async with sessions() as session, session.begin():
        abandoned = await session.execute(
            update(IntakeRow)
            .where(IntakeRow.status == "in_progress", IntakeRow.last_activity_at < at - ABANDONED_AFTER)
            .values(status="abandoned", end_reason="abandoned", ended_at=at)
        )
        ids = list(await session.scalars(select(IntakeRow.id).where(doomed)))
        for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
            await session.execute(delete(TurnRow).where(TurnRow.intake_id.in_(chunk)))
            await session.execute(delete(VersionRow).where(VersionRow.intake_id.in_(chunk)))
            # The session's own events go with it; staff access events stay (they hold only ids).
            await session.execute(
                delete(AuditRow).where(AuditRow.intake_id.in_(chunk), AuditRow.staff.is_(None))
            )
            await session.execute(delete(IntakeRow).where(IntakeRow.id.in_(chunk)))
        await session.execute(delete(AuditRow).where(AuditRow.at < at - retention))
    return PurgeResult(purged=len(ids), abandoned=abandoned.rowcount or 0)  # type: ignore[attr-defined]


async def purge_forever(
    sessions: async_sessionmaker[AsyncSession], *, retention: timedelta, interval: timedelta
) -> None:
    while True:
        try:
            result = await purge(sessions, retention=retention, interval=interval)
        except (SQLAlchemyError, OSError) as exc:
            logger.error(
                "purge failed (%s); retrying in %.0f s", type(exc).__name__, interval.total_seconds()
            )
        else:
            if result.purged or result.abandoned:
                logger.info("purged %d intakes, marked %d abandoned", result.purged, result.abandoned)
        await asyncio.sleep(interval.total_seconds())
