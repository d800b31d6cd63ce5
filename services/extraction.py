"""Turns a finished conversation into a validated MedicalIntake record."""

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

from google import genai
from google.genai import errors, types
from pydantic import ValidationError

from schemas import MedicalIntake, Turn
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
    """Calls generate_content with MedicalIntake as the response schema, then validates."""

    def __init__(self, client: genai.Client, model: str, *, timeout: float, attempts: int = 2):
        self._client = client
        self._model = model
        self._timeout = timeout
        self._attempts = attempts

    async def extract(self, turns: Sequence[Turn]) -> tuple[MedicalIntake, list[str]]:
        if not turns:
            raise ExtractionError("there is no conversation to extract from yet")
        last_error = ExtractionError("extraction was not attempted")
        for attempt in range(1, self._attempts + 1):
            try:
                async with asyncio.timeout(self._timeout):
                    record = await self._request(turns)
            except TimeoutError:
                last_error = ExtractionError(f"extraction timed out after {self._timeout:g} s")
            except errors.APIError as exc:
                last_error = ExtractionError(f"extraction request failed ({exc.code})")
            except ValidationError as exc:
                last_error = ExtractionError(
                    f"extraction answer did not match the intake schema ({exc.error_count()} errors)"
                )
            else:
                return normalize_intake(record)
            logger.warning("extraction attempt %d failed: %s", attempt, last_error)
        raise last_error

    async def _request(self, turns: Sequence[Turn]) -> MedicalIntake:
        response = await self._client.aio.models.generate_content(
            model=self._model,
            contents=transcript_text(turns),
            config=types.GenerateContentConfig(
                system_instruction=EXTRACTION_INSTRUCTION,
                response_mime_type="application/json",
                response_schema=MedicalIntake,
                temperature=0.0,
            ),
        )
        return MedicalIntake.model_validate_json(response.text or "")
