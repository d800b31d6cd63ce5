"""The storage writer under many talking sessions: what a turn costs the session and how far commits lag.

    python -m bench.storage_writer --sessions 50 --turns 20 --gap 0.5 [--postgresql]

Each session writes its start, then a turn every --gap seconds, then a final record; prints figures.
SQLite goes in a temporary directory; --postgresql makes a database of its own next to
TEST_DATABASE_URL's and drops it afterwards.
"""

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

from config import Settings
from schemas import Turn
from services.storage.intakes import SessionInfo
from services.storage.runtime import Storage, open_storage
from tests.storage_support import POSTGRES_URL, _admin, scenario_record


async def one_session(
    storage: Storage, turns: int, gap: float, enqueue: list[float], saves: list[float]
) -> None:
    await asyncio.sleep(random.uniform(0, gap))  # sessions do not all talk in step
    session_id = uuid.uuid4().hex
    records = storage.store.for_session(session_id)
    now = datetime.now(UTC)
    records.started(SessionInfo(session_id, now, "simulator", "bench", True, "127.0.0.1"))
    for index in range(turns):
        turn = Turn(role="patient" if index % 2 else "assistant", text="word " * 30)
        started = time.perf_counter()
        records.turn(index, turn, interrupted=False, started_at=now, ended_at=datetime.now(UTC))
        enqueue.append(time.perf_counter() - started)
        await asyncio.sleep(gap)
    started = time.perf_counter()
    await records.save_version(
        scenario_record("medications_allergy"), final=True, warnings=[], model="b", latency_s=1
    )
    saves.append(time.perf_counter() - started)
    await records.ended(reason="intake_complete", status="completed")


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


async def main(args: argparse.Namespace) -> int:
    url = None
    if args.postgresql:
        name = f"intake_bench_{uuid.uuid4().hex[:12]}"
        await _admin(f'CREATE DATABASE "{name}"')
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        return await measure(args, url)
    finally:
        if args.postgresql:
            await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def measure(args: argparse.Namespace, url: str | None) -> int:
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            DATA_DIR=Path(data),
            DATABASE_URL=url,
        )
        storage = await open_storage(settings, purge=False)
        enqueue: list[float] = []
        saves: list[float] = []
        started = time.perf_counter()
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(args.sessions):
                    group.create_task(one_session(storage, args.turns, args.gap, enqueue, saves))
            await storage.writer.flush()
            elapsed = time.perf_counter() - started
        finally:
            await storage.close()
    backend = "postgresql" if url else "sqlite"
    print(f"backend {backend}: {args.sessions} sessions x {args.turns} turns in {elapsed:.2f} s")
    print(f"turns committed: {len(enqueue)} ({len(enqueue) / elapsed:.0f}/s)")
    print(
        f"turn() in the session: p50 {quantile(enqueue, 50) * 1e6:.0f} us, "
        f"p99 {quantile(enqueue, 99) * 1e6:.0f} us"
    )
    print(
        f"save_version() wait: p50 {quantile(saves, 50) * 1e3:.1f} ms, p95 {quantile(saves, 95) * 1e3:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between one session's turns")
    parser.add_argument("--postgresql", action="store_true", help="a throwaway PostgreSQL database")
    sys.exit(asyncio.run(main(parser.parse_args())))
