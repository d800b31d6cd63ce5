"""The Live API wire format: client messages parsed at the edge, server messages built here.

The SDK sends snake_case top-level keys (`realtime_input`) with camelCase or snake_case
inside (`audioStreamEnd`, `mime_type`), so every model accepts both spellings.
"""

import base64
import binascii
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from simulator.audio import MODEL_RATE

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
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    name: str | None = None
    response: JsonObject | None = None


class ToolResponse(_Wire):
    function_responses: list[FunctionResponse] = []


class FunctionDeclaration(_Wire):
    model_config = ConfigDict(extra="allow")

    name: str


class Tool(_Wire):
    model_config = ConfigDict(extra="allow")

    function_declarations: list[FunctionDeclaration] = []


class SessionResumption(_Wire):
    model_config = ConfigDict(extra="allow")

    handle: str | None = None


class AutomaticActivityDetection(_Wire):
    model_config = ConfigDict(extra="allow")

    disabled: bool = False


class RealtimeInputConfig(_Wire):
    model_config = ConfigDict(extra="allow")

    automatic_activity_detection: AutomaticActivityDetection | None = None


class Setup(_Wire):
    # Setup carries many settings the simulator has no use for (voice, prompt, VAD tuning).
    model_config = ConfigDict(extra="allow")

    model: str
    tools: list[Tool] = []
    realtime_input_config: RealtimeInputConfig | None = None
    session_resumption: SessionResumption | None = None
    context_window_compression: JsonObject | None = None
    input_audio_transcription: JsonObject | None = None
    output_audio_transcription: JsonObject | None = None

    @property
    def function_names(self) -> set[str]:
        return {decl.name for tool in self.tools for decl in tool.function_declarations}

    @property
    def automatic_activity_detection(self) -> bool:
        config = self.realtime_input_config
        detection = config.automatic_activity_detection if config else None
        return not (detection and detection.disabled)


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


def decode_base64(data: str) -> bytes:
    # Google accepts both alphabets; the Python SDK sends the URL-safe one.
    standard = data.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error as exc:
        raise ProtocolError("Invalid value at 'data' (TYPE_BYTES), invalid base64") from exc


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        name = error["loc"][-1]
        return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
    return f"Invalid JSON payload received. {where or 'message'}: {error['msg']}"


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


def turn_complete(prompt_tokens: int, response_tokens: int) -> JsonObject:
    return {
        "serverContent": {"turnComplete": True},
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


def resumption_update(handle: str) -> JsonObject:
    return {"sessionResumptionUpdate": {"newHandle": handle, "resumable": True}}
