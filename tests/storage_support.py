"""A fresh database per test on SQLite and on PostgreSQL, and intakes seeded the way a session writes them."""

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from schemas import MedicalIntake, Turn
from services.storage.intakes import IntakeStore, SessionInfo
from services.storage.views import IntakeStatus

POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
SCENARIOS = Path(__file__).resolve().parents[1] / "simulator" / "scenarios"


async def _admin(sql: str) -> None:
    engine = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


def database(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database that is gone after the test (PostgreSQL: its own database)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'intake.db'}"
        return
    name = f"intake_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def scenario(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCENARIOS / f"{name}.json").read_text())
    return loaded


def scenario_turns(name: str) -> list[Turn]:
    script = scenario(name)
    turns = [Turn(role="assistant", text=script["opening"])]
    for exchange in script["exchanges"]:
        turns += [
            Turn(role="patient", text=exchange["patient"]),
            Turn(role="assistant", text=exchange["assistant"]),
        ]
    return turns


def scenario_record(name: str) -> MedicalIntake:
    return MedicalIntake.model_validate(scenario(name)["record"])


async def seed(
    store: IntakeStore,
    name: str = "medications_allergy",
    *,
    practice: bool = False,
    status: IntakeStatus = "completed",
    started_at: datetime | None = None,
    turns: list[Turn] | None = None,
    record: MedicalIntake | None = None,
) -> str:
    """One whole intake through the SessionRecords interface the session uses."""
    session_id = uuid.uuid4().hex
    started = started_at or datetime.now(UTC)
    records = store.for_session(session_id)
    records.started(
        SessionInfo(
            session_id=session_id,
            started_at=started,
            upstream="simulator" if practice else "google",
            live_model="test-live-model",
            practice=practice,
            client="127.0.0.1",
        )
    )
    said = scenario_turns(name) if turns is None else turns
    for index, turn in enumerate(said):
        at = started + timedelta(seconds=index)
        records.turn(index, turn, interrupted=False, started_at=at, ended_at=at + timedelta(milliseconds=800))
    records.event("session_start", upstream="google")
    if status != "in_progress":
        if record is not None or status == "completed":
            await records.save_version(
                record or scenario_record(name),
                final=True,
                warnings=[],
                model="test-extractor",
                latency_s=1.5,
            )
        await records.ended(
            reason="intake_complete" if status == "completed" else "browser_left", status=status
        )
    await store.flush()
    return session_id
