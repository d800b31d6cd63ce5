"""Logging set-up that keeps API keys, access tokens and URL credentials out of every log line.

Redaction is by construction: the one handler formats each record (message, arguments and
traceback) and then redacts the whole text, so no logger, level or format string can route
around it. Loggers that print raw request or response headers at DEBUG (websockets, httpx and
the SDK's httpx2) are kept above DEBUG, so headers never reach the log at any level.
"""

import logging
import re
from typing import Any
from urllib.parse import unquote_plus

SECRET_NAMES = frozenset(
    {"api_key", "apikey", "key", "token", "access_token", "x-goog-api-key", "password", "secret"}
)
# name=value pairs as they appear in query strings and log lines; the name is compared after
# percent-decoding, so `tok%65n=` and `api%5Fkey=` are caught like `token=` and `api_key=`.
_PARAM = re.compile(r"(?P<name>[A-Za-z0-9_.%+\-]+)=(?P<value>[^&\s\"'#;,]*)")
_USERINFO = re.compile(r"(?i)\b(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<userinfo>[^/@\s\"']+)@")
_HEADER = re.compile(
    r"(?i)(?P<name>x-goog-api-key|authorization|proxy-authorization|cookie|set-cookie)"
    r"(?P<sep>[\"']?\s*[:=,]\s*[\"']?)(?P<value>[^\r\n\"']+)"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+")
_GOOGLE_KEY = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")
REDACTED = "[redacted]"
# Loggers that write header lines (websockets' "> x-goog-api-key: …") or every URL at DEBUG/INFO.
# The database drivers log each statement with its parameters (patient words) at DEBUG.
_NOISY = (
    "websockets",
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "google_genai",
    "hpack",
    "aiosqlite",
    "asyncpg",
    "sqlalchemy",
)


def _decoded_name(name: str) -> str:
    for _ in range(3):  # double-encoded names (%2565) decode in more than one step
        decoded = unquote_plus(name)
        if decoded == name:
            break
        name = decoded
    return name.strip().lower()


def _param(match: re.Match[str]) -> str:
    if _decoded_name(match["name"]) in SECRET_NAMES and match["value"]:
        return f"{match['name']}={REDACTED}"
    return match[0]


def redact(text: str) -> str:
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
    text = _HEADER.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)
    text = _BEARER.sub(lambda m: f"{m[1]}{REDACTED}", text)
    text = _PARAM.sub(_param, text)
    return _GOOGLE_KEY.sub(REDACTED, text)


class DropHeaderLines(logging.Filter):
    """websockets logs each handshake header as its own DEBUG record ("< %s: %s"); none is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg[:2] in ("< ", "> ") and ": %s" in record.msg)


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def logging_config(level: str) -> dict[str, Any]:
    """A dictConfig for the app, uvicorn and the SDK alike: one handler, redacted output."""
    quiet = logging.getLevelName(max(logging.getLevelName(level), logging.INFO))
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {
                "()": RedactingFormatter,
                "format": "%(asctime)s %(levelname)s %(name)s: %(message)s",
            }
        },
        "filters": {"no_headers": {"()": DropHeaderLines}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "plain",
                "filters": ["no_headers"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": True},
            # Header lines at DEBUG, request URLs at INFO: never below WARNING/INFO here.
            **{name: {"handlers": [], "level": "WARNING", "propagate": True} for name in _NOISY},
            "websockets.server": {"handlers": [], "level": quiet, "propagate": True},
            "websockets.client": {"handlers": [], "level": "WARNING", "propagate": True},
        },
    }
