"""One browser connection relayed to one Gemini Live session."""

from gemini_live.session import IntakeSession, SessionDeps
from gemini_live.upstream import SessionEnded, UpstreamHealth

__all__ = ["IntakeSession", "SessionDeps", "SessionEnded", "UpstreamHealth"]
