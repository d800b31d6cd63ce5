"""generateContent: the record the request's transcript supports, shaped by the request's schema."""

import json
import uuid
from typing import Any

from simulator.protocol import JsonObject
from simulator.records import derive_record

API_KEY_INVALID = "API key not valid. Please pass a valid API key."


def request_text(body: JsonObject, *, with_instruction: bool = True) -> str:
    texts: list[str] = []
    holders = list(_as_list(body.get("contents")))
    if with_instruction:
        holders.append(body.get("systemInstruction"))
    for holder in holders:
        if isinstance(holder, dict):
            texts.extend(
                str(part["text"])
                for part in _as_list(holder.get("parts"))
                if isinstance(part, dict) and "text" in part
            )
    return "\n".join(texts)


def response_schema(body: JsonObject) -> tuple[str | None, JsonObject | None]:
    """Which schema field the request used, and the schema. The SDK sends `responseSchema`
    for `response_schema=` and `responseJsonSchema` for `response_json_schema=`."""
    config = body.get("generationConfig") or body.get("generation_config") or {}
    if not isinstance(config, dict):
        return None, None
    for name in ("responseJsonSchema", "response_json_schema", "responseSchema", "response_schema"):
        schema = config.get(name)
        if isinstance(schema, dict):
            return name, schema
    return None, None


def thinking_level(body: JsonObject) -> str | None:
    config = body.get("generationConfig") or {}
    thinking = config.get("thinkingConfig") if isinstance(config, dict) else None
    # The SDK sends the inner keys in snake_case.
    level = (
        thinking.get("thinking_level", thinking.get("thinkingLevel")) if isinstance(thinking, dict) else None
    )
    return level if isinstance(level, str) else None


def shape_to_schema(value: Any, schema: JsonObject, defs: JsonObject | None = None) -> Any:
    """Drops the keys the schema has no property for, recursively."""
    defs = defs if defs is not None else _definitions(schema)
    candidates = _branches(schema, defs)
    if isinstance(value, dict):
        for candidate in candidates:
            properties = candidate.get("properties")
            if isinstance(properties, dict):
                return {
                    key: shape_to_schema(item, properties[key], defs)
                    for key, item in value.items()
                    if key in properties
                }
    if isinstance(value, list):
        for candidate in candidates:
            items = candidate.get("items")
            if isinstance(items, dict):
                return [shape_to_schema(item, items, defs) for item in value]
    return value


def generate_response(body: JsonObject, model: str, *, malformed: bool) -> JsonObject:
    _, schema = response_schema(body)
    # Only what the conversation says: the instruction would otherwise count as patient speech.
    derived = derive_record(request_text(body, with_instruction=False))
    record = shape_to_schema(derived, schema) if schema else derived
    text = json.dumps(record, indent=2)
    if malformed:
        # A reply cut off mid-object, as when the model stops at its token limit.
        text = text[: max(len(text) // 2, 1)]
    prompt_tokens = max(len(request_text(body)) // 4, 1)
    output_tokens = max(len(text) // 4, 1)
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "MAX_TOKENS" if malformed else "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
        },
        "modelVersion": model,
        "responseId": uuid.uuid4().hex,
    }


def error_body(code: int, status: str, message: str, reason: str | None = None) -> JsonObject:
    error: JsonObject = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
            }
        ]
    return {"error": error}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _definitions(schema: JsonObject) -> JsonObject:
    defs = schema.get("$defs") or schema.get("definitions") or {}
    return defs if isinstance(defs, dict) else {}


def _resolve(schema: JsonObject, defs: JsonObject) -> JsonObject:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = defs.get(ref.rsplit("/", 1)[-1])
        if isinstance(target, dict):
            return _resolve(target, defs)
    return schema


def _branches(schema: JsonObject, defs: JsonObject) -> list[JsonObject]:
    resolved = _resolve(schema, defs)
    found = [resolved]
    for keyword in ("anyOf", "oneOf", "allOf", "any_of"):
        for branch in _as_list(resolved.get(keyword)):
            if isinstance(branch, dict):
                found.extend(_branches(branch, defs))
    return found
