"""Which sessions are open, who may open another, and telling them all to stop."""

import asyncio
from collections import Counter
from typing import Protocol


class Stoppable(Protocol):
    def request_stop(self, reason: str) -> None: ...

    async def wait_closed(self) -> None: ...


class SessionRegistry:
    def __init__(self, *, max_sessions: int, max_per_client: int) -> None:
        self._max = max_sessions
        self._max_per_client = max_per_client
        self._per_client: Counter[str] = Counter()
        self._sessions: dict[Stoppable, str] = {}
        self.shutting_down = False

    @property
    def open_sessions(self) -> int:
        return sum(self._per_client.values())

    @property
    def sessions(self) -> list[Stoppable]:
        return list(self._sessions)

    def refusal(self, client: str) -> str | None:
        """Why a new session from `client` must be refused, or None to admit it."""
        if self.shutting_down:
            return "The server is shutting down."
        if self.open_sessions >= self._max:
            return f"The server is at its limit of {self._max} sessions; try again shortly."
        if self._per_client[client] >= self._max_per_client:
            return f"Too many sessions from your address (limit {self._max_per_client})."
        return None

    def reserve(self, client: str) -> None:
        self._per_client[client] += 1

    def attach(self, session: Stoppable, client: str) -> None:
        self._sessions[session] = client

    def release(self, client: str, session: Stoppable | None = None) -> None:
        self._per_client[client] -= 1
        if self._per_client[client] <= 0:
            del self._per_client[client]
        if session is not None:
            self._sessions.pop(session, None)

    async def shutdown_all(self, grace: float) -> None:
        self.shutting_down = True
        sessions = list(self._sessions)
        for session in sessions:
            session.request_stop("server_shutdown")
        if sessions:
            await asyncio.wait(
                [asyncio.ensure_future(s.wait_closed()) for s in sessions], timeout=grace + 1.0
            )
