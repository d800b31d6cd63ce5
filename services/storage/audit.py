"""Audit events: what a session did and which staff member read or changed which intake, when."""

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.storage.models import AuditRow


def audit_row(event: str, *, intake_id: str | None, staff: str | None = None, **fields: Any) -> AuditRow:
    # Round-tripped through JSON so a datetime or enum in the fields cannot fail the commit later.
    plain = json.loads(json.dumps(fields, default=str))
    return AuditRow(at=datetime.now(UTC), intake_id=intake_id, staff=staff, event=event, fields=plain)


async def audit_trail(session: AsyncSession, intake_id: str) -> list[AuditRow]:
    rows = await session.scalars(
        select(AuditRow).where(AuditRow.intake_id == intake_id).order_by(AuditRow.at, AuditRow.id)
    )
    return list(rows)


def audit_line(row: AuditRow) -> str:
    """One event as a line of the JSONL audit export (the format the session logs had)."""
    record = {"ts": row.at.isoformat(), "session_id": row.intake_id, "staff": row.staff, "event": row.event}
    return json.dumps({**record, **row.fields})


async def audit_events(
    session: AsyncSession, *, since: datetime | None, until: datetime | None, intake_id: str | None
) -> list[AuditRow]:
    query = select(AuditRow)
    if intake_id is not None:
        query = query.where(AuditRow.intake_id == intake_id)
    if since is not None:
        query = query.where(AuditRow.at >= since)
    if until is not None:
        query = query.where(AuditRow.at < until)
    return list(await session.scalars(query.order_by(AuditRow.at, AuditRow.id)))
