"""The intake store on SQLite and PostgreSQL: what a session writes, when it is committed, what
happens when the writer cannot keep up or the database refuses, migrations, permissions, retention."""

import asyncio
import logging
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, select, text, update

from config import Settings
from schemas import MedicalIntake, PatientInfo, Turn
from services.storage.db import SchemaOutdated, alembic_config, create_engine, migrate, sessionmaker
from services.storage.intakes import IntakeStore, SessionInfo, StorageError
from services.storage.models import AuditRow, IntakeRow, TurnRow
from services.storage.resumption import Claim, ResumeRefused, new_token
from services.storage.retention import purge
from services.storage.runtime import Storage, open_storage
from services.storage.writer import StorageWriter
from tests import storage_support
from tests.storage_support import scenario_record, scenario_turns, seed

pytestmark = pytest.mark.integration
PATIENT_WORDS = "penicillin"


def storage_settings(database_url: str, tmp_path: Path, **changes: object) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        DATABASE_URL=database_url,
        DATA_DIR=tmp_path / "data",
        **changes,
    )


@pytest.fixture
async def storage(database_url: str, tmp_path: Path) -> AsyncIterator[Storage]:
    opened = await open_storage(storage_settings(database_url, tmp_path), purge=False)
    yield opened
    await opened.close()


def info(session_id: str, *, practice: bool = False, started_at: datetime | None = None) -> SessionInfo:
    return SessionInfo(
        session_id=session_id,
        started_at=started_at or datetime.now(UTC),
        upstream="simulator" if practice else "google",
        live_model="live",
        practice=practice,
        client="127.0.0.1",
    )


async def test_migration_upgrades_an_empty_database_to_head(database_url):
    engine = create_engine(database_url)
    try:
        await migrate(engine, auto=True)
        async with engine.connect() as connection:
            tables = set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
            version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        assert {"intakes", "turns", "record_versions", "audit_events"} <= tables
        assert version == "0004"
        await migrate(engine, auto=False)  # at head: starts without migrating
    finally:
        await engine.dispose()


async def test_without_auto_migrate_an_empty_database_is_refused_naming_the_command(database_url, tmp_path):
    settings = storage_settings(database_url, tmp_path, DB_AUTO_MIGRATE=False)
    with pytest.raises(SchemaOutdated, match="run: alembic upgrade head"):
        await open_storage(settings, purge=False)
    migrated = await open_storage(storage_settings(database_url, tmp_path), purge=False)
    await migrated.close()
    again = await open_storage(settings, purge=False)
    await again.close()


def test_alembic_config_finds_the_migrations():
    assert alembic_config().get_main_option("script_location", "").endswith("migrations")


async def test_sqlite_file_and_data_dir_are_owner_only(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    settings = Settings(_env_file=None, DATA_DIR=data)  # type: ignore[call-arg]
    opened = await open_storage(settings, purge=False)
    try:
        await seed(opened.store)
    finally:
        await opened.close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "intake.db").stat().st_mode) == 0o600


async def test_a_whole_intake_is_stored_as_the_session_writes_it(storage):
    intake_id = await seed(storage.store, "medications_allergy")
    intake = await storage.store.get_intake(intake_id, staff="alice")
    assert [Turn(role=t.role, text=t.text) for t in intake.transcript] == scenario_turns(
        "medications_allergy"
    )
    assert [t.index for t in intake.transcript] == list(range(len(intake.transcript)))
    assert intake.record == scenario_record("medications_allergy")
    assert intake.status == "completed" and intake.end_reason == "intake_complete"
    assert intake.completed_at is not None and intake.ended_at is not None
    assert intake.started_at.tzinfo is not None
    assert [(v.version, v.final, v.model, v.latency_s) for v in intake.versions] == [
        (1, True, "test-extractor", 1.5)
    ]
    assert intake.flags.life_threatening_allergy and intake.flags.emergency
    assert intake.patient_name == "James Carter" and not intake.practice


async def test_a_turn_is_committed_with_nobody_waiting_for_it(storage):
    session_id = uuid.uuid4().hex
    records = storage.store.for_session(session_id)
    records.started(info(session_id))
    now = datetime.now(UTC)
    records.turn(
        0, Turn(role="patient", text="My throat hurts."), interrupted=True, started_at=now, ended_at=now
    )
    sessions = sessionmaker(storage.engine)
    async with asyncio.timeout(5):
        while True:
            async with sessions() as session:
                row = await session.scalar(select(TurnRow).where(TurnRow.intake_id == session_id))
            if row is not None:
                break
            await asyncio.sleep(0.01)
    assert (row.role, row.text, row.interrupted, row.started_at) == ("patient", "My throat hurts.", True, now)


async def test_save_version_returns_after_the_sessions_queued_turns_are_committed(storage):
    session_id = uuid.uuid4().hex
    records = storage.store.for_session(session_id)
    records.started(info(session_id))
    now = datetime.now(UTC)
    for index in range(300):
        records.turn(
            index, Turn(role="patient", text=f"turn {index}"), interrupted=False, started_at=now, ended_at=now
        )
    first = await records.save_version(MedicalIntake(), final=False, warnings=["w"], model="m", latency_s=0.2)
    async with sessionmaker(storage.engine)() as session:
        stored = await session.scalar(
            select(TurnRow.index).where(TurnRow.intake_id == session_id).order_by(TurnRow.index.desc())
        )
    assert stored == 299
    second = await records.save_version(
        scenario_record("simple_visit"), final=True, warnings=[], model="m", latency_s=0.1
    )
    await records.ended(reason="intake_complete", status="completed")
    assert (first, second) == (1, 2)
    intake = await storage.store.get_intake(session_id, staff="alice")
    assert [v.final for v in intake.versions] == [False, True]
    assert intake.versions[0].warnings == ["w"] and intake.record == scenario_record("simple_visit")


async def test_saving_for_a_session_whose_start_was_never_stored_fails_and_the_next_session_saves(
    storage, caplog
):
    records = storage.store.for_session("never-started")
    with caplog.at_level(logging.DEBUG, logger="services.storage"):
        with pytest.raises(StorageError, match="start was never stored"):
            await records.save_version(
                scenario_record("medications_allergy"), final=True, warnings=[], model="m", latency_s=1
            )
    assert PATIENT_WORDS not in caplog.text and "James" not in caplog.text
    intake_id = await seed(storage.store)
    assert (await storage.store.get_intake(intake_id, staff="alice")).status == "completed"


async def test_a_refused_turn_does_not_sink_its_neighbours_and_fails_the_next_save(storage, caplog):
    other = uuid.uuid4().hex
    session_id = uuid.uuid4().hex
    records, neighbour = storage.store.for_session(session_id), storage.store.for_session(other)
    records.started(info(session_id))
    neighbour.started(info(other))
    now = datetime.now(UTC)
    secret = Turn(role="patient", text=f"I am allergic to {PATIENT_WORDS}.")
    with caplog.at_level(logging.DEBUG, logger="services.storage"):
        records.turn(0, secret, interrupted=False, started_at=now, ended_at=now)
        records.turn(0, secret, interrupted=False, started_at=now, ended_at=now)  # same index: refused
        neighbour.turn(0, Turn(role="patient", text="hello"), interrupted=False, started_at=now, ended_at=now)
        with pytest.raises(StorageError, match="1 earlier write"):
            await records.save_version(MedicalIntake(), final=True, warnings=[], model="m", latency_s=1)
        assert (
            await neighbour.save_version(MedicalIntake(), final=True, warnings=[], model="m", latency_s=1)
            == 1
        )
    assert PATIENT_WORDS not in caplog.text and caplog.text.count("storage commit failed") == 1
    assert "storage commits succeed again" in caplog.text
    assert [t.text for t in (await storage.store.get_intake(other, staff="a")).transcript] == ["hello"]
    assert len((await storage.store.get_intake(session_id, staff="a")).transcript) == 1


async def test_a_full_queue_refuses_at_once_logs_once_and_then_writes_again(storage, caplog):
    writer = StorageWriter(sessionmaker(storage.engine), queue_size=4)
    writer.start()
    store = IntakeStore(sessionmaker(storage.engine), writer)
    session_id = uuid.uuid4().hex
    records = store.for_session(session_id)
    now = datetime.now(UTC)
    with caplog.at_level(logging.DEBUG, logger="services.storage"):
        records.started(info(session_id))
        for index in range(10):  # nothing awaited: the writer cannot drain in between
            records.turn(
                index,
                Turn(role="patient", text=PATIENT_WORDS),
                interrupted=False,
                started_at=now,
                ended_at=now,
            )
        records.event("never_raises")
        with pytest.raises(StorageError, match="did not reach the database"):
            await records.save_version(MedicalIntake(), final=True, warnings=[], model="m", latency_s=1)
        await asyncio.wait_for(writer.drained(), 5)  # the queued writes commit; then there is room
        intake_id = await seed(store, "simple_visit", turns=[Turn(role="patient", text="Hello.")])
    await writer.close()
    assert caplog.text.count("storage queue full") == 1 and PATIENT_WORDS not in caplog.text
    assert (await storage.store.get_intake(intake_id, staff="a")).status == "completed"


async def test_list_is_newest_first_keeps_practice_apart_and_filters(storage):
    now = datetime.now(UTC)
    older = await seed(storage.store, "simple_visit", started_at=now - timedelta(hours=3))
    newer = await seed(storage.store, "medications_allergy", started_at=now - timedelta(hours=1))
    going = await seed(storage.store, "barge_in_correction", status="in_progress", started_at=now)
    practice = await seed(storage.store, "simple_visit", practice=True)
    store = storage.store
    assert [i.id for i in await store.list_intakes(staff="a")] == [going, newer, older]
    assert [i.id for i in await store.list_intakes(staff="a", practice=True)] == [practice]
    assert [i.id for i in await store.list_intakes(staff="a", status="completed")] == [newer, older]
    assert [i.id for i in await store.list_intakes(staff="a", status="in_progress")] == [going]
    assert [i.id for i in await store.list_intakes(staff="a", since=now - timedelta(hours=2))] == [
        going,
        newer,
    ]
    assert [i.id for i in await store.list_intakes(staff="a", q="  maria LOP")] == [older]
    assert await store.list_intakes(staff="a", q="100%_") == []
    (summary,) = await store.list_intakes(staff="a", q="carter")
    assert summary.chief_complaint == "follow-up visit"
    assert summary.flags.life_threatening_allergy and summary.completed_at is not None
    assert [i.id for i in await store.list_intakes(staff="a", limit=1, offset=1)] == [newer]


def _with_patient(name: str, dob: str, phone: str) -> MedicalIntake:
    record = scenario_record("simple_visit")
    record.patient_info = PatientInfo(name=name, date_of_birth=dob, phone=phone)
    return record


async def test_search_finds_a_patients_intakes_across_visits_oldest_first(storage):
    now = datetime.now(UTC)
    jane = _with_patient("Jane  Doe", "1980-03-05", "212-555-0123")
    first = await seed(storage.store, record=jane, started_at=now - timedelta(days=2))
    second = await seed(
        storage.store, record=_with_patient("jane doe", "03/05/1980", "(212) 555-0123"), started_at=now
    )
    await seed(storage.store, record=_with_patient("Jane Doe", "1991-01-01", "212-555-0999"))
    await seed(storage.store, record=jane, practice=True)
    store = storage.store
    assert [i.id for i in await store.search(staff="a", name="JANE DOE", dob="1980-03-05")] == [first, second]
    assert [i.id for i in await store.search(staff="a", phone="+1 212 555 0123")] == [first, second]
    assert await store.search(staff="a", name="Nobody") == []
    with pytest.raises(ValueError, match="at least one"):
        await store.search(staff="a", name=" ")


async def test_retention_purges_old_practice_and_silent_sessions_and_keeps_the_rest(storage):
    now = datetime.now(UTC)
    store = storage.store
    kept = await seed(store, started_at=now - timedelta(days=29))
    old = await seed(store, started_at=now - timedelta(days=31))
    old_practice = await seed(store, practice=True, started_at=now - timedelta(days=2))
    new_practice = await seed(store, practice=True, started_at=now - timedelta(hours=2))
    silent = await seed(
        store, turns=[Turn(role="assistant", text="Hello, what brings you in?")], status="incomplete"
    )
    live_silent = await seed(store, turns=[], status="in_progress", started_at=now)
    stale = await seed(store, status="in_progress", started_at=now - timedelta(hours=3))
    await store.get_intake(old, staff="alice")
    result = await purge(
        sessionmaker(storage.engine), retention=timedelta(days=30), interval=timedelta(hours=1), at=now
    )
    remaining = {
        i.id: i.status
        for i in await store.list_intakes(staff="a") + await store.list_intakes(staff="a", practice=True)
    }
    assert remaining == {
        kept: "completed",
        new_practice: "completed",
        live_silent: "in_progress",
        stale: "abandoned",
    }
    assert (result.purged, result.abandoned) == (3, 1)
    async with sessionmaker(storage.engine)() as session:
        events = list(
            await session.scalars(select(AuditRow).where(AuditRow.intake_id.in_([old, silent, old_practice])))
        )
    # Who read the purged record stays on file; the session's own events went with it.
    assert [(e.event, e.staff) for e in events] == [("staff_read", "alice")]


async def test_staff_reads_are_audited_with_the_staff_name(storage):
    intake_id = await seed(storage.store)
    await storage.store.get_intake(intake_id, staff="alice")
    await storage.store.list_intakes(staff="bob")
    async with sessionmaker(storage.engine)() as session:
        events = [
            (e.event, e.staff, e.intake_id, e.fields)
            for e in await session.scalars(
                select(AuditRow).where(AuditRow.staff.is_not(None)).order_by(AuditRow.id)
            )
        ]
    assert events == [
        ("staff_read", "alice", intake_id, {}),
        ("staff_list", "bob", None, {"ids": [intake_id], "practice": False, "status": None}),
    ]


async def test_a_writer_that_stops_on_a_bug_fails_its_callers_and_a_new_writer_works(storage, caplog):
    writer = StorageWriter(sessionmaker(storage.engine))
    writer.start()

    async def buggy(_session: object) -> None:
        raise TypeError(PATIENT_WORDS)

    with caplog.at_level(logging.DEBUG, logger="services.storage"):
        with pytest.raises(StorageError, match="stopped"):
            await writer.commit(buggy)
        await asyncio.sleep(0)  # the done-callback runs on the next loop pass
        with pytest.raises(StorageError, match="not running"):
            writer.submit(buggy)
    await writer.close()
    assert "storage writer stopped (TypeError)" in caplog.text and PATIENT_WORDS not in caplog.text
    assert await seed(storage.store)  # the server's own writer goes on


async def _resumable(storage: Storage, session_id: str) -> str:
    token, hashed = new_token()
    records = storage.store.for_session(session_id)
    records.started(SessionInfo(**{**info(session_id).__dict__, "resume_token_hash": hashed}))
    await storage.writer.flush()
    return token


async def test_a_resume_token_works_once_even_when_two_sockets_race_with_it(storage):
    resumes = storage.store.resumes
    assert resumes is not None
    token = await _resumable(storage, "s1")
    await storage.store.for_session("s1").release(handle="h1")
    results = await asyncio.gather(
        resumes.claim("s1", token), resumes.claim("s1", token), return_exceptions=True
    )
    claims = [r for r in results if isinstance(r, Claim)]
    assert len(claims) == 1 and sum(isinstance(r, ResumeRefused) for r in results) == 1
    restored = await resumes.take(claims[0])
    assert restored.handle == "h1" and restored.generation == 1
    # The rotated token works next, the first one never again.
    with pytest.raises(ResumeRefused):
        await resumes.claim("s1", token)
    assert (await resumes.claim("s1", restored.token)).generation == 2


async def test_a_live_intake_is_kept_and_a_lapsed_one_is_abandoned(storage):
    resumes = storage.store.resumes
    assert resumes is not None
    await _resumable(storage, "live")
    await _resumable(storage, "dropped")
    dropped = storage.store.for_session("dropped")
    await dropped.release(handle=None)
    async with storage.sessions() as session, session.begin():
        # The dropped one's grace period is over; the live one's holder keeps renewing it.
        row = await session.get(IntakeRow, "dropped")
        assert row is not None
        row.resumable_until = datetime.now(UTC) - timedelta(seconds=1)
    assert await resumes.heartbeat({"live": 0}) == []
    assert await resumes.expire() == 1
    async with storage.sessions() as session:
        statuses = dict((await session.execute(select(IntakeRow.id, IntakeRow.status))).all())
    assert statuses == {"live": "in_progress", "dropped": "abandoned"}
    # Another connection resumed "live": its holder hears of it at the next heartbeat.
    async with storage.sessions() as session, session.begin():
        row = await session.get(IntakeRow, "live")
        assert row is not None
        row.generation = 1
    assert await resumes.heartbeat({"live": 0}) == ["live"]


async def _live_until(storage: Storage) -> dict[str, datetime | None]:
    async with storage.sessions() as session:
        return dict((await session.execute(select(IntakeRow.id, IntakeRow.live_until))).all())


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_heartbeat_never_waits_on_a_row_the_storage_writer_holds(storage):
    # The writer commits many sessions' rows per transaction; a heartbeat that waited on one of
    # them while holding others deadlocked with it under load (PostgreSQL aborted one of the two).
    resumes = storage.store.resumes
    assert resumes is not None
    await _resumable(storage, "busy")
    await _resumable(storage, "free")
    before = await _live_until(storage)
    await asyncio.sleep(0.01)
    writing: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    holding = asyncio.Event()

    async def hold_busy(session: Any) -> None:
        await session.execute(update(IntakeRow).where(IntakeRow.id == "busy").values(resume_handle="h"))
        holding.set()
        await writing

    writer = asyncio.create_task(storage.writer.commit(hold_busy))
    await holding.wait()
    assert await asyncio.wait_for(resumes.heartbeat({"busy": 0, "free": 0}), 5) == []
    assert await asyncio.wait_for(resumes.expire(), 5) == 0
    renewed = await _live_until(storage)
    assert renewed["free"] > before["free"] and renewed["busy"] == before["busy"]
    writing.set_result(None)
    await writer
    # Once the write is committed, the next heartbeat renews that row too.
    await resumes.heartbeat({"busy": 0, "free": 0})
    assert (await _live_until(storage))["busy"] > before["busy"]


@pytest.fixture
def empty_postgresql(tmp_path: Path) -> Iterator[str]:
    yield from storage_support.database("postgresql", tmp_path)


async def test_replicas_migrating_an_empty_postgresql_at_once_all_start(empty_postgresql):
    engines = [create_engine(empty_postgresql) for _ in range(3)]
    try:
        await asyncio.gather(*(migrate(engine, auto=True) for engine in engines))
        await migrate(engines[0], auto=False)  # at head
    finally:
        for engine in engines:
            await engine.dispose()
