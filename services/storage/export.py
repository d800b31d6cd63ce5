"""Writes saved intakes as JSON documents, one file each (python -m services.storage.export --help)."""

import argparse
import asyncio
import getpass
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from pathlib import Path

from config import Settings, get_settings
from services.storage.audit import audit_events, audit_line
from services.storage.db import create_engine, prepare_data_dir, sessionmaker
from services.storage.intakes import IntakeStore
from services.storage.views import IntakeDetail
from services.storage.writer import StorageWriter


def document(intake: IntakeDetail) -> dict[str, object]:
    """The shape the JSON files had, with the versions, times and review state added."""
    return {
        "session_id": intake.id,
        "status": intake.status,
        "intake_completed": intake.status == "completed",
        "practice": intake.practice,
        "started_at": intake.started_at.isoformat(),
        "ended_at": intake.ended_at.isoformat() if intake.ended_at else None,
        "end_reason": intake.end_reason,
        "conversation": [{"role": t.role, "text": t.text} for t in intake.transcript],
        "transcript": [t.model_dump(mode="json") for t in intake.transcript],
        "record": intake.record.model_dump(mode="json") if intake.record else None,
        "validation_warnings": intake.warnings,
        "versions": [v.model_dump(mode="json") for v in intake.versions],
        "review": intake.review.model_dump(mode="json"),
    }


def _day(text: str) -> datetime:
    return datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


async def export(
    settings: Settings,
    out: Path,
    *,
    intake_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    practice: bool = False,
    audit: bool = False,
) -> list[Path]:
    if settings.DATABASE_URL is None:
        prepare_data_dir(settings.DATA_DIR)
    engine = create_engine(settings.database_url)
    sessions = sessionmaker(engine)
    store = IntakeStore(sessions, StorageWriter(sessions))
    await asyncio.to_thread(out.mkdir, mode=0o700, parents=True, exist_ok=True)
    written = []
    try:
        async for intake in store.documents(
            intake_id=intake_id,
            since=since,
            until=until,
            practice=practice,
            staff=f"export:{getpass.getuser()}",
        ):
            path = out / f"{intake.id}.json"
            await asyncio.to_thread(_write_private, path, json.dumps(document(intake), indent=2))
            written.append(path)
        if audit:
            async with sessions() as session:
                events = await audit_events(session, since=since, until=until, intake_id=intake_id)
            path = out / "audit.jsonl"
            await asyncio.to_thread(_write_private, path, "".join(audit_line(e) + "\n" for e in events))
            written.append(path)
    finally:
        await engine.dispose()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.storage.export", description=__doc__)
    parser.add_argument("--id", dest="intake_id", help="export this intake only")
    parser.add_argument("--since", type=_day, help="first day (YYYY-MM-DD, UTC) of sessions to export")
    parser.add_argument("--until", type=_day, help="day (YYYY-MM-DD, UTC) after the last one to export")
    parser.add_argument("--practice", action="store_true", help="export practice (simulator) intakes")
    parser.add_argument("--audit", action="store_true", help="also write the audit events as audit.jsonl")
    parser.add_argument("--out", type=Path, default=Path("./export"), help="directory (default ./export)")
    args = parser.parse_args(argv)
    written = asyncio.run(
        export(
            get_settings(),
            args.out,
            intake_id=args.intake_id,
            since=args.since,
            until=args.until,
            practice=args.practice,
            audit=args.audit,
        )
    )
    print(f"wrote {len(written)} file(s) to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
