"""Per-session audit trail (JSONL) and saved conversations, written owner-only."""

import asyncio
import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas import MedicalIntake, Turn

_FILE_MODE = 0o600
_DIR_MODE = 0o700


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    return path


def write_private(path: Path, data: str, *, append: bool = False) -> None:
    """Write a file that only its owner can read, whatever the umask."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags, _FILE_MODE)
    with os.fdopen(fd, "a" if append else "w", encoding="utf-8") as handle:
        handle.write(data)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class SessionAudit:
    """Who/what/when of one session; transcript text only when `with_content` is set."""

    def __init__(self, directory: Path | None, session_id: str, *, with_content: bool) -> None:
        self.session_id = session_id
        self._with_content = with_content
        self._path = None if directory is None else directory / f"{session_id}.jsonl"
        self._lock = asyncio.Lock()
        self._dir = directory
        self._dir_made = False

    async def record(self, event: str, **fields: Any) -> None:
        if self._path is None:
            return
        line = json.dumps({"ts": _now(), "session_id": self.session_id, "event": event, **fields})
        async with self._lock:
            await asyncio.to_thread(self._append, line + "\n")

    def _append(self, line: str) -> None:
        assert self._dir is not None and self._path is not None
        if not self._dir_made:
            _private_dir(self._dir)
            self._dir_made = True
        write_private(self._path, line, append=True)

    async def turn(self, turn: Turn) -> None:
        if self._with_content:
            await self.record("turn", role=turn.role, text=turn.text)
        else:
            await self.record("turn", role=turn.role, chars=len(turn.text))


class ConversationStore:
    """Saves a finished conversation and its record as one JSON document."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    async def save(
        self,
        session_id: str,
        turns: Sequence[Turn],
        record: MedicalIntake | None,
        *,
        completed: bool,
        warnings: Sequence[str] = (),
    ) -> Path:
        document = {
            "session_id": session_id,
            "saved_at": _now(),
            "intake_completed": completed,
            "conversation": [turn.model_dump() for turn in turns],
            "record": None if record is None else record.model_dump(mode="json"),
            "validation_warnings": list(warnings),
        }
        path = self._dir / f"{session_id}.json"
        await asyncio.to_thread(self._write, path, json.dumps(document, indent=2))
        return path

    def _write(self, path: Path, text: str) -> None:
        _private_dir(self._dir)
        write_private(path, text)
