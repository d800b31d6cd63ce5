"""Validates one raw browser WebSocket frame into audio, a command, or an error to report."""

import json
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError
from starlette.types import Message

from schemas import (
    ControlMessage,
    EndSessionMessage,
    ErrorMessage,
    InterruptMessage,
    client_message_adapter,
)

Command = Literal["interrupt", "end_session", "start"]
KNOWN_TYPES = ("interrupt", "end_session", "control")


@dataclass(frozen=True)
class AudioStreamEnd:
    """The patient stopped the microphone: tell the model the audio stream ended."""


BrowserInput = bytes | AudioStreamEnd


def _error(
    code: Literal["bad_message", "unknown_type", "frame_too_large", "odd_length_audio"], message: str
) -> ErrorMessage:
    return ErrorMessage(code=code, message=message)


def read_browser_input(
    raw: Message, *, max_binary: int, max_text: int
) -> BrowserInput | Command | ErrorMessage:
    data = raw.get("bytes")
    if data is not None:
        if not data:
            return _error("bad_message", "Empty audio frame.")
        if len(data) > max_binary:
            return _error(
                "frame_too_large", f"Audio frame of {len(data)} bytes exceeds the {max_binary}-byte limit."
            )
        if len(data) % 2:
            return _error(
                "odd_length_audio", "Audio frame has an odd number of bytes; PCM16 needs 2 per sample."
            )
        return bytes(data)
    text = raw.get("text")
    if text is None:
        return _error("bad_message", "Frame carried neither text nor binary data.")
    if len(text.encode()) > max_text:
        return _error("frame_too_large", f"Text frame exceeds the {max_text}-byte limit.")
    if not text.strip():
        return _error("bad_message", "Empty text frame; expected a JSON message.")
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        return _error("bad_message", f"Malformed JSON: {exc.msg} at position {exc.pos}.")
    if not isinstance(payload, dict) or not isinstance(payload.get("type"), str):
        return _error("bad_message", 'A message must be a JSON object with a string "type".')
    if payload["type"] not in KNOWN_TYPES:
        return _error(
            "unknown_type",
            f"Unknown message type {payload['type'][:40]!r}; expected one of {', '.join(KNOWN_TYPES)}.",
        )
    try:
        message = client_message_adapter.validate_python(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "message"
        return _error("bad_message", f"Invalid {payload['type']} message: {where}: {first['msg']}.")
    match message:
        case InterruptMessage() | ControlMessage(action="interrupt"):
            return "interrupt"
        case EndSessionMessage():
            return "end_session"
        case ControlMessage(action="stop"):
            return AudioStreamEnd()
        case ControlMessage(action="start"):
            return "start"
    raise AssertionError(f"unhandled message {message!r}")
