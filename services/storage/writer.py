"""One background writer per process: sessions enqueue writes without waiting, commits are batched."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.metrics import STORAGE_WRITE

logger = logging.getLogger(__name__)

Write = Callable[[AsyncSession], Awaitable[Any]]

# 50 sessions each finalizing a turn every second or so, plus audit events, stay far below this even
# through a database stall of a minute; past it a write is refused at once (never blocks the audio
# path) and the session learns of it when it next waits for a commit.
QUEUE_SIZE = 10_000
# One commit covers at most this many queued writes, so one slow batch never holds up the rest long.
BATCH_SIZE = 200


class StorageError(Exception):
    """A write that did not reach the database; the message is safe to log. A write may raise it
    itself to roll its transaction back."""


@dataclass
class _Job:
    write: Write
    done: asyncio.Future[Any] | None = None
    on_lost: Callable[[], None] | None = field(default=None, repr=False)

    def fail(self, error: StorageError) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(error)
        elif self.on_lost is not None:
            self.on_lost()


class StorageWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, queue_size: int = QUEUE_SIZE) -> None:
        self._sessions = sessions
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._queue_full_logged = False
        self._commit_failure_logged = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="storage-writer")
        self._task.add_done_callback(self._stopped)

    def _stopped(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or (error := task.exception()) is None:
            return
        # The type only: a database error's text can quote the row, which holds patient data.
        logger.error("storage writer stopped (%s); refusing writes", type(error).__name__)
        while not self._queue.empty():
            if (job := self._queue.get_nowait()) is not None:
                job.fail(StorageError("the storage writer stopped"))

    async def close(self) -> None:
        """Commits what is queued, then stops."""
        task, self._task = self._task, None
        if task is None or task.done():  # a writer that stopped on its own was logged then
            return
        await self._queue.put(None)
        await task

    async def drained(self) -> None:
        """Returns once the queue is empty and its last batch committed (or refused)."""
        await self._queue.join()

    def submit(self, write: Write, *, on_lost: Callable[[], None] | None = None) -> None:
        """Queues a write nobody waits for; `on_lost` runs if it never reaches the database."""
        if not self._enqueue(_Job(write, on_lost=on_lost)) and on_lost is not None:
            on_lost()

    async def commit(self, write: Write) -> Any:
        """Queues a write behind everything already queued and returns its result once committed."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._enqueue(_Job(write, done)):
            raise StorageError("the storage queue is full")
        return await done

    async def flush(self) -> None:
        """Returns once everything queued before the call is committed (or refused)."""

        async def nothing(_session: AsyncSession) -> None:
            return None

        await self.commit(nothing)

    def _enqueue(self, job: _Job) -> bool:
        if self._task is None or self._task.done():
            raise StorageError("the storage writer is not running")
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            if not self._queue_full_logged:
                logger.error("storage queue full (%d writes): refusing writes", self._queue.maxsize)
                self._queue_full_logged = True
            return False
        if self._queue_full_logged and self._queue.qsize() < self._queue.maxsize // 2:
            logger.warning("storage queue has room again")
            self._queue_full_logged = False
        return True

    async def _run(self) -> None:
        while True:
            first = await self._queue.get()
            batch: list[_Job] = []
            stop = first is None
            if first is not None:
                batch.append(first)
            while not stop and len(batch) < BATCH_SIZE and not self._queue.empty():
                job = self._queue.get_nowait()
                if job is None:
                    stop = True
                else:
                    batch.append(job)
            if batch:
                started = time.perf_counter()
                try:
                    await self._commit(batch)
                except BaseException:
                    for job in batch:
                        job.fail(StorageError("the storage writer stopped"))
                    raise
                STORAGE_WRITE.observe(time.perf_counter() - started)
            for _ in range(len(batch) + stop):
                self._queue.task_done()
            if stop:
                return

    async def _commit(self, batch: list[_Job]) -> None:
        try:
            results = await self._transaction(batch)
        except (SQLAlchemyError, OSError, StorageError):
            # One bad write must not sink its neighbours: retry each on its own.
            for job in batch:
                await self._commit_alone(job)
            return
        self._recovered()
        for job, result in zip(batch, results, strict=True):
            if job.done is not None and not job.done.done():
                job.done.set_result(result)

    async def _commit_alone(self, job: _Job) -> None:
        try:
            (result,) = await self._transaction([job])
        except StorageError as exc:
            job.fail(exc)  # a write that refused itself (its message says why)
            return
        except (SQLAlchemyError, OSError) as exc:
            if not self._commit_failure_logged:
                # The exception type only: its text can quote the row, which holds patient data.
                logger.error("storage commit failed (%s); writes are being lost", type(exc).__name__)
                self._commit_failure_logged = True
            job.fail(StorageError(f"the database refused the write ({type(exc).__name__})"))
            return
        self._recovered()
        if job.done is not None and not job.done.done():
            job.done.set_result(result)

    def _recovered(self) -> None:
        if self._commit_failure_logged:
            logger.warning("storage commits succeed again")
            self._commit_failure_logged = False

    async def _transaction(self, batch: list[_Job]) -> list[Any]:
        async with self._sessions() as session, session.begin():
            return [await job.write(session) for job in batch]
