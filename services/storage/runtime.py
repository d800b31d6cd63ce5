"""The storage a server process runs: engine, schema, writer and purge loop, opened and closed once."""

import asyncio
import contextlib
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from config import Settings
from services.storage.db import create_engine, migrate, prepare_data_dir, sessionmaker
from services.storage.intakes import IntakeStore
from services.storage.resumption import ResumeStore
from services.storage.retention import purge_forever
from services.storage.writer import StorageWriter


@dataclass
class Storage:
    engine: AsyncEngine
    writer: StorageWriter
    store: IntakeStore
    purger: asyncio.Task[None] | None
    sessions: async_sessionmaker[AsyncSession]

    async def close(self) -> None:
        if self.purger is not None:
            self.purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.purger
        await self.writer.close()
        await self.engine.dispose()


async def open_storage(settings: Settings, *, purge: bool = True) -> Storage:
    """Raises SchemaOutdated when DB_AUTO_MIGRATE is off and the schema is behind."""
    if settings.DATABASE_URL is None:
        await asyncio.to_thread(prepare_data_dir, settings.DATA_DIR)
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine, auto=settings.DB_AUTO_MIGRATE)
    except BaseException:
        await engine.dispose()
        raise
    sessions = sessionmaker(engine)
    writer = StorageWriter(sessions)
    writer.start()
    purger = None
    if purge:
        purger = asyncio.create_task(
            purge_forever(
                sessions,
                retention=timedelta(days=settings.RETENTION_DAYS),
                interval=timedelta(seconds=settings.PURGE_INTERVAL_SECONDS),
            ),
            name="storage-purge",
        )
    resumes = None
    if settings.RESUME_GRACE_SECONDS > 0:
        resumes = ResumeStore(
            sessions, owner=uuid.uuid4().hex, grace=timedelta(seconds=settings.RESUME_GRACE_SECONDS)
        )
    return Storage(engine, writer, IntakeStore(sessions, writer, resumes), purger, sessions)
