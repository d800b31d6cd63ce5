"""What a session persists, as the session sees it; the storage layer implements it."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from schemas import MedicalIntake, Turn

IntakeStatus = Literal["in_progress", "completed", "incomplete", "failed", "abandoned"]


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    started_at: datetime
    upstream: str
    live_model: str
    # A session with the built-in simulator: scripted replies, an invented patient.
    practice: bool
    client: str


class StorageError(Exception):
    """A write did not reach durable storage; the message is safe to log."""


class SessionRecords(Protocol):
    """One session's writes. The non-async calls enqueue on the process's bounded writer and
    return at once, so storage never sits on the audio path; the async ones wait for the commit."""

    def started(self, info: SessionInfo) -> None: ...

    def turn(
        self, index: int, turn: Turn, *, interrupted: bool, started_at: datetime, ended_at: datetime
    ) -> None: ...

    def event(self, name: str, **fields: Any) -> None: ...

    async def save_version(
        self, record: MedicalIntake, *, final: bool, warnings: list[str], model: str, latency_s: float
    ) -> int: ...

    async def ended(self, *, reason: str, status: IntakeStatus) -> None: ...
