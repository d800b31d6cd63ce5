"""Streamed transcript pieces joined into finalized turns, in the order they were spoken."""

from collections import deque

from schemas import Role, Turn


class ConversationLog:
    def __init__(self, max_turns: int) -> None:
        self.turns: deque[Turn] = deque(maxlen=max_turns)
        self._role: Role | None = None
        self._parts: list[str] = []

    def add(self, role: Role, text: str) -> Turn | None:
        """Append a piece; returns the other role's turn when this piece finalized it."""
        finished = self.finalize() if self._role not in (None, role) else None
        self._role = role
        self._parts.append(text)
        return finished

    def finalize(self) -> Turn | None:
        text = "".join(self._parts).strip()
        role, self._role, self._parts = self._role, None, []
        if role is None or not text:
            return None
        turn = Turn(role=role, text=text)
        self.turns.append(turn)
        return turn

    def __len__(self) -> int:
        return len(self.turns)
