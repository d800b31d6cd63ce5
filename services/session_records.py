"""Session records as owner-only files: a JSONL audit trail and one JSON document per conversation,
written by one bounded background writer per process."""

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gemini_live.records import IntakeStatus, SessionInfo, StorageError
from schemas import MedicalIntake, Turn

logger = logging.getLogger(__name__)

_FILE_MODE = 0o600
_DIR_MODE = 0o700
# Each session writes a few lines a turn; 2048 pending writes is minutes of every session at
# once. When it is full a write is dropped and logged (once) rather than stalling a session.
WRITER_QUEUE = 2048


def private_dir(path: Path) -> Path:
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, _DIR_MODE)
    return path


def write_private(path: Path, data: str, *, append: bool = False) -> None:
    """Write a file that only its owner can read, whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, _FILE_MODE)
    with os.fdopen(fd, "a" if append else "w", encoding="utf-8") as handle:
        handle.write(data)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


Job = Callable[[], None]


class RecordWriter:
    """One task that performs every blocking write, in order, off the event loop."""

    def __init__(self, max_pending: int = WRITER_QUEUE) -> None:
        self._queue: asyncio.Queue[tuple[Job, asyncio.Future[None] | None]] = asyncio.Queue(max_pending)
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="record-writer")

    async def stop(self) -> None:
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        await asyncio.wait([self._task])
        self._task = None

    def submit(self, job: Job) -> None:
        try:
            self._queue.put_nowait((job, None))
        except asyncio.QueueFull:
            self._warn("the record writer is full; a write was dropped")

    async def commit(self, job: Job) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((job, done))
        except asyncio.QueueFull:
            raise StorageError("the record writer is full") from None
        await done

    def _warn(self, text: str) -> None:
        if not self._warned:
            self._warned = True
            logger.error(text)

    async def _run(self) -> None:
        while True:
            job, done = await self._queue.get()
            try:
                await asyncio.to_thread(job)
            except OSError as exc:
                self._warn(f"a record write failed: {type(exc).__name__}: {exc.strerror}")
                if done is not None and not done.done():
                    done.set_exception(StorageError(f"the write failed ({exc.strerror})"))
            else:
                if done is not None and not done.done():
                    done.set_result(None)
            finally:
                self._queue.task_done()


class FileRecords:
    """One session's records: audit events (no transcript text unless `with_content`) and the
    conversation document, rewritten on every saved version and at the end."""

    def __init__(
        self,
        writer: RecordWriter,
        session_id: str,
        *,
        audit_dir: Path | None,
        conversation_dir: Path | None,
        with_content: bool,
    ) -> None:
        self._writer = writer
        self._id = session_id
        self._audit = None if audit_dir is None else audit_dir / f"{session_id}.jsonl"
        self._document = None if conversation_dir is None else conversation_dir / f"{session_id}.json"
        self._with_content = with_content
        self._turns: list[Turn] = []
        self._versions = 0
        self._record: MedicalIntake | None = None
        self._warnings: list[str] = []
        self._info: dict[str, Any] = {}

    def started(self, info: SessionInfo) -> None:
        self._info = {**asdict(info), "started_at": info.started_at.isoformat()}

    def turn(
        self, index: int, turn: Turn, *, interrupted: bool, started_at: datetime, ended_at: datetime
    ) -> None:
        self._turns.append(turn)
        content = {"text": turn.text} if self._with_content else {"chars": len(turn.text)}
        self.event("turn", index=index, role=turn.role, interrupted=interrupted, **content)

    def event(self, name: str, **fields: Any) -> None:
        if self._audit is None:
            return
        line = json.dumps({"ts": _now(), "session_id": self._id, "event": name, **fields}, default=str)
        path = self._audit
        self._writer.submit(lambda: write_private(path, line + "\n", append=True))

    async def save_version(
        self, record: MedicalIntake, *, final: bool, warnings: list[str], model: str, latency_s: float
    ) -> int:
        self._versions += 1
        self._record, self._warnings = record, list(warnings)
        await self._write_document(status="completed" if final else "in_progress")
        self.event("record_saved", version=self._versions, final=final)
        return self._versions

    async def ended(self, *, reason: str, status: IntakeStatus) -> None:
        if self._turns or self._record is not None:
            await self._write_document(status=status, reason=reason)

    async def _write_document(self, *, status: IntakeStatus, reason: str | None = None) -> None:
        if self._document is None:
            return
        document = {
            "session": self._info,
            "saved_at": _now(),
            "status": status,
            "end_reason": reason,
            "intake_completed": status == "completed",
            "conversation": [turn.model_dump() for turn in self._turns],
            "record": None if self._record is None else self._record.model_dump(mode="json"),
            "validation_warnings": self._warnings,
        }
        path, text = self._document, json.dumps(document, indent=2)
        await self._writer.commit(lambda: write_private(path, text))
