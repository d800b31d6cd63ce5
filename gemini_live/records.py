"""What a session persists, as the session sees it; the storage layer implements it."""

from services.storage.recording import SessionInfo, SessionRecords
from services.storage.views import IntakeStatus
from services.storage.writer import StorageError

__all__ = ["IntakeStatus", "SessionInfo", "SessionRecords", "StorageError"]
