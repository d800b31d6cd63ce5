"""Streamed transcript pieces joined into finalized turns, in the order they were spoken."""

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas import Role, Turn


@dataclass(frozen=True)
class FinalTurn:
    index: int
    turn: Turn
    interrupted: bool
    started_at: datetime
    ended_at: datetime


class ConversationLog:
    def __init__(self, max_turns: int) -> None:
        # What extraction reads; `count` keeps counting past the bound.
        self.turns: deque[Turn] = deque(maxlen=max_turns)
        self.count = 0
        self._role: Role | None = None
        self._parts: list[str] = []
        self._started_at = datetime.now(UTC)

    @property
    def speaking(self) -> Role | None:
        return self._role

    def add(self, role: Role, text: str) -> FinalTurn | None:
        """Append a piece; returns the other role's turn when this piece finalized it."""
        finished = self.finalize() if self._role not in (None, role) else None
        if self._role is None:
            self._started_at = datetime.now(UTC)
        self._role = role
        self._parts.append(text)
        return finished

    def finalize(self, *, interrupted: bool = False) -> FinalTurn | None:
        text = "".join(self._parts).strip()
        role, self._role, self._parts = self._role, None, []
        if role is None or not text:
            return None
        turn = Turn(role=role, text=text)
        self.turns.append(turn)
        final = FinalTurn(self.count, turn, interrupted, self._started_at, datetime.now(UTC))
        self.count += 1
        return final

    def restore(self, turns: list[tuple[int, Turn]]) -> None:
        """The finalized turns of an intake resumed after a dropped connection."""
        for index, turn in turns:
            self.turns.append(turn)
            self.count = max(self.count, index + 1)

    def __len__(self) -> int:
        return self.count
