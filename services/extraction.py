"""Turns a finished conversation into a validated MedicalIntake record."""

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from google import genai
from google.genai import errors, types
from pydantic import ValidationError

from schemas import MedicalIntake, Turn
from services.model_profiles import extraction_thinking
from utils.validators import normalize_intake

logger = logging.getLogger(__name__)

EXTRACTION_INSTRUCTION = """You turn a medical intake conversation between an assistant and a \
patient into a structured record. Use only what the patient said or confirmed; when the patient \
corrected something, keep the corrected value. Leave a field empty rather than guess. Allergy \
severity is one of: mild, moderate, serious, life-threatening. Dates of birth are YYYY-MM-DD."""


class ExtractionError(Exception):
    """The record could not be produced; the message is safe to show and log."""


class Extractor(Protocol):
    async def extract(self, turns: Sequence[Turn]) -> tuple[MedicalIntake, list[str]]: ...


def transcript_text(turns: Sequence[Turn]) -> str:
    return "\n".join(f"{turn.role.upper()}: {turn.text}" for turn in turns)


class IntakeExtractor:
    """Calls generate_content with MedicalIntake as the response schema, then validates.

    Transport failures (connection errors, timeouts, 408, 429, 5xx) are retried by the SDK
    with the client's `HttpRetryOptions` (see `services.gemini_client.EXTRACTION_RETRY`);
    an answer that fails schema validation is asked for once more; nothing else is retried.
    `timeout` bounds the whole call, retries included."""

    def __init__(self, client: genai.Client, model: str, *, timeout: float) -> None:
        self._client = client
        self._model = model
        self._timeout = timeout
        self._config = types.GenerateContentConfig(
            system_instruction=EXTRACTION_INSTRUCTION,
            response_mime_type="application/json",
            response_schema=MedicalIntake,
            temperature=0.0,
            thinking_config=extraction_thinking(model),
        )

    async def extract(self, turns: Sequence[Turn]) -> tuple[MedicalIntake, list[str]]:
        if not turns:
            raise ExtractionError("there is no conversation to extract from yet")
        try:
            async with asyncio.timeout(self._timeout):
                record = await self._validated(transcript_text(turns))
        except TimeoutError as exc:
            raise ExtractionError(f"extraction timed out after {self._timeout:g} s") from exc
        except errors.APIError as exc:
            raise ExtractionError(f"extraction request failed ({exc.code})") from exc
        return normalize_intake(record)

    async def _validated(self, text: str) -> MedicalIntake:
        try:
            return MedicalIntake.model_validate_json(await self._ask(text))
        except ValidationError as exc:
            logger.warning("%s; asking once more", _schema_problem(exc))
        try:
            return MedicalIntake.model_validate_json(await self._ask(text))
        except ValidationError as exc:
            raise ExtractionError(_schema_problem(exc)) from exc

    async def _ask(self, text: str) -> str:
        response = await self._client.aio.models.generate_content(
            model=self._model, contents=text, config=self._config
        )
        return response.text or ""


def _schema_problem(exc: ValidationError) -> str:
    return f"extraction answer did not match the intake schema ({exc.error_count()} errors)"
