"""One browser connection relayed to one Gemini Live session."""

from gemini_live.session import IntakeSession, SessionDeps, SessionEnded

__all__ = ["IntakeSession", "SessionDeps", "SessionEnded"]
