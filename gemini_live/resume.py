"""This process's side of resuming: its live sessions by id, the heartbeat, and the hand-over."""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from services.storage.resumption import HEARTBEAT, RestoredIntake, ResumeRefused, ResumeStore
from services.storage.writer import StorageError

logger = logging.getLogger(__name__)


class Resumable(Protocol):
    id: str
    generation: int

    def supersede(self) -> None: ...

    async def wait_closed(self) -> None: ...


class ResumeDesk:
    def __init__(self, store: ResumeStore, flush: Callable[[], Awaitable[None]]) -> None:
        self._store = store
        # Commits what this process's sessions have queued, so the database shows their rows.
        self._flush = flush
        self._live: dict[str, Resumable] = {}

    def attach(self, session: Resumable) -> None:
        self._live[session.id] = session

    def detach(self, session: Resumable) -> None:
        if self._live.get(session.id) is session:
            del self._live[session.id]

    async def resume(self, session_id: str, token: str) -> RestoredIntake | str:
        """The restored intake, or why it cannot be resumed."""
        try:
            if session_id in self._live:
                # Its start, turns and newest handle may still be queued in this process's writer.
                await self._flush()
            claim = await self._store.claim(session_id, token)
            if (here := self._live.get(session_id)) is not None:
                # Its teardown releases the row, with its newest handle, before the new socket reads it.
                logger.debug("session %s: resumed here; closing its other socket", session_id)
                here.supersede()
                await here.wait_closed()
            elif claim.held_by is not None:
                logger.debug("session %s: waiting for process %s to let go", session_id, claim.held_by)
                await self._store.wait_released(session_id)
            return await self._store.take(claim)
        except ResumeRefused as exc:
            return str(exc)
        except (SQLAlchemyError, OSError, StorageError) as exc:
            logger.error("resume failed: the database could not be read (%s)", type(exc).__name__)
            return "the database could not be reached"

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT.total_seconds())
            try:
                # The sessions as they were when asked about: one that took over an id meanwhile
                # has the new generation and must not be closed for the old one's.
                live = dict(self._live)
                for id_ in await self._store.heartbeat({id_: s.generation for id_, s in live.items()}):
                    logger.info("session %s: resumed on another connection", id_)
                    live[id_].supersede()
                if expired := await self._store.expire():
                    logger.info("%d intake(s) not resumed in time: abandoned", expired)
            except (SQLAlchemyError, OSError) as exc:
                logger.error("resume heartbeat failed (%s)", type(exc).__name__)
