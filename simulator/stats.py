"""What the simulator saw and did, for tests and `GET /_stats`.

Only the simulator's event loop touches these objects; other threads ask that loop for a
snapshot, so nothing here needs a lock.
"""

import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class SessionStats:
    id: str
    # Empty until the key has chosen one.
    scenario: str
    model: str | None = None
    resumed: bool = False
    resumption_requested: bool = False
    compression_requested: bool = False
    async_function_calls: bool = False
    declared_functions: list[str] = field(default_factory=list)
    audio_bytes_received: int = 0
    user_turns: int = 0
    replies_completed: int = 0
    replies_interrupted: int = 0
    tool_call_ids: list[str] = field(default_factory=list)
    cancelled_call_ids: list[str] = field(default_factory=list)
    tool_response_ids: list[str] = field(default_factory=list)
    tool_response_scheduling: list[str] = field(default_factory=list)
    freezes: int = 0
    frozen: bool = False
    nudges: int = 0
    go_away_sent: bool = False
    dropped: bool = False
    script_position: int = 0
    phase: str = "conversing"
    closed: bool = False
    close_code: int | None = None
    close_reason: str = ""

    @property
    def tool_response_received(self) -> bool:
        answered = set(self.tool_response_ids)
        return any(
            call_id in answered for call_id in self.tool_call_ids if call_id not in self.cancelled_call_ids
        )

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "tool_response_received": self.tool_response_received}


@dataclass
class GenerateStats:
    model: str
    scenario: str
    matched_by: str
    schema_field: str | None
    bad_extraction: bool
    rejected: bool
    unavailable: bool = False
    thinking_level: str | None = None


# A long-running simulator keeps the most recent entries only; a test run reads far fewer.
MAX_CLOSED_SESSIONS = 200
MAX_EVENTS = 1_000


class SimulatorStats:
    def __init__(self, max_closed_sessions: int = MAX_CLOSED_SESSIONS) -> None:
        self.max_closed_sessions = max_closed_sessions
        self.sessions: dict[str, SessionStats] = {}
        self.reset()

    def reset(self) -> None:
        self.total_sessions = 0
        self.messages_received: Counter[str] = Counter()
        self.tool_calls_sent: deque[str] = deque(maxlen=MAX_EVENTS)
        self.tool_responses_received: deque[str] = deque(maxlen=MAX_EVENTS)
        self.generate_requests: deque[GenerateStats] = deque(maxlen=MAX_EVENTS)
        # Sessions still open survive a reset so `open_sessions` stays true.
        self.sessions = {key: value for key, value in self.sessions.items() if not value.closed}

    def open_session(self, scenario: str) -> SessionStats:
        self._forget_oldest_closed()
        session = SessionStats(id=f"sess-{uuid.uuid4().hex[:12]}", scenario=scenario)
        self.sessions[session.id] = session
        self.total_sessions += 1
        return session

    def _forget_oldest_closed(self) -> None:
        closed = [key for key, value in self.sessions.items() if value.closed]
        for key in closed[: max(0, len(closed) - self.max_closed_sessions + 1)]:
            del self.sessions[key]

    def snapshot(self) -> dict[str, Any]:
        return {
            "open_sessions": sum(not s.closed for s in self.sessions.values()),
            "total_sessions": self.total_sessions,
            "messages_received": dict(self.messages_received),
            "tool_calls_sent": list(self.tool_calls_sent),
            "tool_responses_received": list(self.tool_responses_received),
            "sessions": [s.summary() for s in self.sessions.values()],
            "generate_content_requests": [asdict(g) for g in self.generate_requests],
        }
