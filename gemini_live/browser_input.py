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
    ResumeMessage,
    client_message_adapter,
)

Command = Literal["interrupt", "end_session", "start"]
KNOWN_TYPES = ("interrupt", "end_session", "control", "resume")
# The protocol's messages are flat objects; these bounds stop a frame from reaching Python's
# recursion limit or its 4300-digit int conversion limit, whose errors would end the session.
MAX_JSON_DEPTH = 8
MAX_NUMBER_CHARS = 32


class _RefusedJSON(ValueError):
    pass


def _number(text: str) -> int | float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _RefusedJSON(f"a number longer than {MAX_NUMBER_CHARS} characters")
    return float(text) if any(c in text for c in ".eE") else int(text)


def _json_depth(text: str) -> int:
    """The deepest nesting of objects and arrays, strings skipped; counted before parsing."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(text: str) -> object:
    """json.loads with a depth and a number-size limit; every failure is a ValueError."""
    if _json_depth(text) > MAX_JSON_DEPTH:
        raise _RefusedJSON(f"nesting deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(text, parse_int=_number, parse_float=_number, parse_constant=_no_constant)


def _no_constant(text: str) -> object:
    raise _RefusedJSON(f"{text} is not JSON")


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
) -> BrowserInput | Command | ResumeMessage | ErrorMessage:
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
        payload = parse_json(text)
    except _RefusedJSON as exc:
        return _error("bad_message", f"Refused JSON: {exc}.")
    except json.JSONDecodeError as exc:
        return _error("bad_message", f"Malformed JSON at position {exc.pos}.")
    except (ValueError, RecursionError):
        # Only our own wording reaches the browser, never Python's exception text.
        return _error("bad_message", "Malformed JSON.")
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
        case ResumeMessage():
            return message
    raise AssertionError(f"unhandled message {message!r}")
