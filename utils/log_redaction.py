"""Logging set-up that keeps API keys and access tokens out of every log line."""

import logging
import re
from typing import Any

_SECRET_PARAM = re.compile(r"(?i)\b(api_key|key|token|access_token)=([^&\s\"']+)")
_GOOGLE_KEY = re.compile(r"AIza[0-9A-Za-z_\-]{20,}")


def redact(text: str) -> str:
    text = _SECRET_PARAM.sub(lambda m: f"{m.group(1)}=[redacted]", text)
    return _GOOGLE_KEY.sub("[redacted]", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def logging_config(level: str) -> dict[str, Any]:
    """A dictConfig for the app and uvicorn alike, every handler behind the redaction filter."""
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "plain",
        "filters": ["redact"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"redact": {"()": RedactSecrets}},
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": level, "propagate": True},
            # httpx logs every request URL at INFO; keep it to warnings.
            "httpx": {"level": "WARNING"},
            "google_genai": {"level": "WARNING"},
        },
    }
