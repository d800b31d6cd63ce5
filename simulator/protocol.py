"""The Live API wire format: client messages parsed at the edge, server messages built here.

The SDK sends snake_case top-level keys (`realtime_input`) with camelCase or snake_case
inside (`audioStreamEnd`, `mime_type`), so every model accepts both spellings.
"""

import base64
import binascii
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.alias_generators import to_camel, to_snake

from simulator.audio import MODEL_RATE
from simulator.setup import Setup

JsonObject = dict[str, Any]


class ProtocolError(ValueError):
    """A client message Google would refuse; the session closes with 1007 and this reason."""


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, extra="forbid"
    )


class Blob(_Wire):
    data: str
    mime_type: str = ""

    def decoded(self) -> bytes:
        return decode_base64(self.data)

    @property
    def sample_rate(self) -> int | None:
        if not self.mime_type.startswith("audio/pcm"):
            return None
        match = re.search(r"rate=(\d+)", self.mime_type)
        return int(match.group(1)) if match else 16_000


class RealtimeInput(_Wire):
    audio: Blob | None = None
    video: Blob | None = None
    media_chunks: list[Blob] | None = None
    audio_stream_end: bool | None = None
    activity_start: JsonObject | None = None
    activity_end: JsonObject | None = None
    text: str | None = None


class Content(_Wire):
    model_config = ConfigDict(extra="allow")

    role: str | None = None
    parts: list[JsonObject] = []

    @property
    def text(self) -> str:
        return " ".join(str(part["text"]) for part in self.parts if "text" in part)


class ClientContent(_Wire):
    turns: list[Content] = []
    turn_complete: bool = False


class FunctionResponse(_Wire):
    id: str | None = None
    name: str | None = None
    response: JsonObject | None = None
    # Honoured for NON_BLOCKING calls only, as at Google; WHEN_IDLE when absent.
    scheduling: Literal["SCHEDULING_UNSPECIFIED", "SILENT", "WHEN_IDLE", "INTERRUPT"] | None = None
    will_continue: bool | None = None
    parts: list[JsonObject] | None = None


class ToolResponse(_Wire):
    function_responses: list[FunctionResponse] = []


class ClientMessage(_Wire):
    setup: Setup | None = None
    realtime_input: RealtimeInput | None = None
    client_content: ClientContent | None = None
    tool_response: ToolResponse | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "ClientMessage":
        present = [name for name, value in self if value is not None]
        if len(present) != 1:
            raise ValueError(f"expected exactly one message field, got {present or 'none'}")
        return self


def realtime_kinds(realtime: RealtimeInput) -> list[str]:
    return [f"realtimeInput.{to_camel(name)}" for name, value in realtime if value is not None]


def parse_client_message(raw: str | bytes) -> ClientMessage:
    try:
        payload = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError("Invalid JSON payload received.") from exc
    if not isinstance(payload, dict):
        raise ProtocolError("Invalid JSON payload received. Expected an object.")
    try:
        return ClientMessage.model_validate(payload)
    except ValidationError as exc:
        raise ProtocolError(_describe(exc)) from exc


INVALID_BASE64 = "Invalid value at 'data' (TYPE_BYTES), invalid base64"


def standard_base64(data: str) -> str:
    """Base64 text in the standard alphabet, which Google's JSON uses for bytes. Google accepts
    both alphabets; the Python SDK sends the URL-safe one."""
    if not data.isascii():
        raise ProtocolError(INVALID_BASE64)
    return data.replace("-", "+").replace("_", "/")


def decode_base64(data: str) -> bytes:
    standard = standard_base64(data.strip())
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error as exc:
        raise ProtocolError(INVALID_BASE64) from exc


def _describe(exc: ValidationError) -> str:
    # Google names the place in snake_case: Unknown name "x" at 'setup.generation_config'.
    error = exc.errors()[0]
    path = [to_snake(part) if isinstance(part, str) else str(part) for part in error["loc"]]
    if error["type"] == "extra_forbidden":
        name, parent = error["loc"][-1], ".".join(path[:-1])
        at = f" at '{parent}'" if parent else ""
        return f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.'
    where = ".".join(path)
    return f"Invalid value at '{where or 'message'}': {error['msg']}"


def encode(message: JsonObject) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def setup_complete() -> JsonObject:
    return {"setupComplete": {}}


def audio_chunk(pcm: bytes) -> JsonObject:
    blob = {"mimeType": f"audio/pcm;rate={MODEL_RATE}", "data": base64.b64encode(pcm).decode()}
    return {"serverContent": {"modelTurn": {"parts": [{"inlineData": blob}]}}}


def input_transcription(text: str) -> JsonObject:
    return {"serverContent": {"inputTranscription": {"text": text}}}


def output_transcription(text: str) -> JsonObject:
    return {"serverContent": {"outputTranscription": {"text": text}}}


def interrupted() -> JsonObject:
    return {"serverContent": {"interrupted": True}}


def generation_complete() -> JsonObject:
    return {"serverContent": {"generationComplete": True}}


def turn_complete(prompt_tokens: int, response_tokens: int, *, waiting_for_input: bool) -> JsonObject:
    content: JsonObject = {"turnComplete": True}
    if waiting_for_input:
        # The reply asked the patient something.
        content |= {"waitingForInput": True, "turnCompleteReason": "NEED_MORE_INPUT"}
    return {
        "serverContent": content,
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "responseTokenCount": response_tokens,
            "totalTokenCount": prompt_tokens + response_tokens,
        },
    }


def tool_call(call_id: str, name: str, args: JsonObject) -> JsonObject:
    return {"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": args}]}}


def tool_call_cancellation(call_ids: list[str]) -> JsonObject:
    return {"toolCallCancellation": {"ids": call_ids}}


def go_away(seconds_left: float) -> JsonObject:
    return {"goAway": {"timeLeft": f"{seconds_left:g}s"}}


def resumption_update(handle: str | None, *, last_consumed: int | None = None) -> JsonObject:
    """A new handle, or (handle None) word that the session cannot be resumed right now.
    `last_consumed` is sent to clients that asked for transparent resumption."""
    update: JsonObject = {"newHandle": handle, "resumable": True} if handle else {"resumable": False}
    if last_consumed is not None:
        update["lastConsumedClientMessageIndex"] = last_consumed
    return {"sessionResumptionUpdate": update}
