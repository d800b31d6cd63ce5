"""The database engine: owner-only SQLite by default, PostgreSQL through asyncpg; migrations at start-up."""

import logging
import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

# aiosqlite logs every statement with its parameters (patient words) at DEBUG: never wanted.
logging.getLogger("aiosqlite").setLevel(logging.WARNING)

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
MIGRATE_COMMAND = "alembic upgrade head"


class SchemaOutdated(RuntimeError):
    pass


def prepare_data_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if not database or database == ":memory:":
        return
    path = Path(database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Created owner-only before SQLite opens it; its -wal and -shm files copy these permissions.
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    path.chmod(0o600)


def create_engine(url: str, **connect_args: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        _prepare_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": 15, **connect_args})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the staff API read while the writer commits; foreign keys make purges cascade.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# Any fixed number: the advisory lock that serializes migrations across processes.
MIGRATION_LOCK = 0x1A7A4E


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def alembic_config() -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return config


def _upgrade(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _is_current(connection: Connection, config: Config) -> bool:
    current = set(MigrationContext.configure(connection).get_current_heads())
    return current == set(ScriptDirectory.from_config(config).get_heads())


async def migrate(engine: AsyncEngine, *, auto: bool) -> None:
    """Brings the schema to head, or with `auto` off refuses when it is not there already."""
    config = alembic_config()
    async with engine.begin() as connection:
        if auto:
            if connection.dialect.name == "postgresql":
                # Replicas starting together on an empty database would race to create the same
                # tables; the transaction-scoped lock makes the others wait and find them made.
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            await connection.run_sync(_upgrade, config)
            return
        if not await connection.run_sync(_is_current, config):
            raise SchemaOutdated(f"the database schema is not up to date; run: {MIGRATE_COMMAND}")
