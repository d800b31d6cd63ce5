"""Extraction off the audio path, and the record saved before anyone is told it is."""

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from google.genai import types

from gemini_live.records import IntakeStatus, SessionRecords, StorageError
from gemini_live.transcript import ConversationLog
from schemas import ErrorMessage, ExtractedDataMessage, IntakeCompleteMessage, MedicalIntake, ServerMessage
from services import metrics
from services.extraction import ExtractionError, Extractor
from utils.validators import missing_sections

logger = logging.getLogger(__name__)

Outcome = dict[str, Any]
SAVE_ATTEMPTS = 3


class IntakeRecorder:
    def __init__(
        self,
        session_id: str,
        conversation: ConversationLog,
        *,
        extractor: Extractor,
        records: SessionRecords,
        model: str,
        emit: Callable[[ServerMessage], None],
        answer: Callable[[types.FunctionCall, Outcome], None],
        on_completed: Callable[[], None],
        fallback_every: int,
        live_every: int = 0,
        save_backoff: float = 0.5,
    ) -> None:
        self._session_id = session_id
        self._conversation = conversation
        self._extractor = extractor
        self._records = records
        self._model = model
        self._emit = emit
        self._answer = answer
        self._on_completed = on_completed
        # Live extraction, when on, comes at least as often as the fallback would.
        self._every = min(fallback_every, live_every or fallback_every)
        self._save_backoff = save_backoff
        self._turns_at_last_extraction = 0
        self._intake_called = False
        self._final_failed = False
        self._running: dict[asyncio.Task[None], str | None] = {}
        self.record: MedicalIntake | None = None
        self.warnings: list[str] = []
        self.completed = False

    def restore(self, record: MedicalIntake | None) -> None:
        """An intake resumed after a dropped connection: its latest record, and no extraction owed."""
        self.record = record
        self._turns_at_last_extraction = len(self._conversation)

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def on_complete_intake(self, call: types.FunctionCall) -> None:
        metrics.COMPLETE_INTAKE_CALLS.inc()
        self._intake_called = True
        # A progress extraction finishing after the final one would overwrite it on the page.
        for task, running_call in list(self._running.items()):
            if running_call is None:
                task.cancel()
        self._start(self._finalize(call), call.id)

    def on_turn_complete(self) -> None:
        """Before complete_intake, extract every few finalized turns (live extraction, or the
        fallback for a model that never calls the tool); one progress extraction at a time."""
        if self.completed or self._intake_called or self._running:
            return
        if len(self._conversation) - self._turns_at_last_extraction >= self._every:
            self._start(self._progress(), None)

    def cancel(self, call_ids: list[str]) -> None:
        for task, call_id in list(self._running.items()):
            if call_id is not None and call_id in call_ids:
                task.cancel()

    def status_at_end(self) -> IntakeStatus:
        if self.completed:
            return "completed"
        return "failed" if self._final_failed else "incomplete"

    def _start(self, body: Coroutine[Any, Any, None], call_id: str | None) -> None:
        self._turns_at_last_extraction = len(self._conversation)
        task = asyncio.create_task(self._guarded(body), name=f"extraction:{self._session_id}")
        self._running[task] = call_id
        task.add_done_callback(self._running.pop)
        # A task cancelled before its first step never starts `body`; close it so it is not left
        # unawaited (closing a finished coroutine does nothing).
        task.add_done_callback(lambda _: body.close())

    async def _guarded(self, body: Coroutine[Any, Any, None]) -> None:
        # The task's boundary: nothing escapes into "Task exception was never retrieved".
        try:
            await body
        except Exception:
            logger.exception("session %s: extraction task failed", self._session_id)
            self._records.event("extraction", ok=False, error="internal error")
            self._emit(
                ErrorMessage(code="extraction_failed", message="The intake record could not be built.")
            )

    async def _extract(self, *, final: bool) -> tuple[MedicalIntake, list[str], float] | None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            record, warnings = await self._extractor.extract(list(self._conversation.turns))
        except ExtractionError as exc:
            reason = str(exc)
            logger.warning("session %s: extraction failed: %s", self._session_id, reason)
        except Exception as exc:
            # The SDK's HTTP transport raises its own errors (connection refused, reset, TLS).
            reason = f"the extraction service could not be reached ({type(exc).__name__})"
            logger.exception("session %s: extraction failed", self._session_id)
        else:
            latency = loop.time() - started
            metrics.extraction("final" if final else "progress", ok=True, latency=latency)
            self._records.event(
                "extraction",
                ok=True,
                final=final,
                warnings=len(warnings),
                sections=[name for name, value in record if value],
                latency_s=round(latency, 3),
            )
            return record, warnings, latency
        metrics.extraction("final" if final else "progress", ok=False)
        self._records.event("extraction", ok=False, final=final, error=reason)
        self._emit(
            ErrorMessage(code="extraction_failed", message=f"Could not build the intake record: {reason}")
        )
        return None

    async def _progress(self) -> None:
        extracted = await self._extract(final=False)
        if extracted is None:
            return
        self.record, self.warnings, latency = extracted
        self._emit(ExtractedDataMessage(data=self.record, final=False))
        try:
            await self._records.save_version(
                self.record, final=False, warnings=self.warnings, model=self._model, latency_s=latency
            )
        except StorageError as exc:
            logger.warning("session %s: progress record not saved: %s", self._session_id, exc)

    async def _finalize(self, call: types.FunctionCall) -> None:
        extracted = await self._extract(final=True)
        if extracted is None:
            self._final_failed = True
            self._answer(
                call,
                {
                    "status": "failed",
                    "message": "The record could not be built. Tell the patient their answers are "
                    "kept and the clinic staff will go through them.",
                },
            )
            return
        record, warnings, latency = extracted
        self.record, self.warnings = record, warnings
        if missing := missing_sections(record):
            self._intake_called = False
            self._emit(ExtractedDataMessage(data=record, final=False))
            await self._save(record, final=False, latency=latency)
            self._answer(
                call,
                {
                    "status": "incomplete",
                    "missing": missing,
                    "message": "Not saved as complete: ask the patient for " + ", ".join(missing) + ".",
                },
            )
            return
        if not await self._save(record, final=True, latency=latency):
            self._final_failed = True
            self._answer(
                call,
                {
                    "status": "failed",
                    "message": "The record could not be saved. Tell the patient to let the front desk know.",
                },
            )
            return
        self._final_failed = False
        self.completed = True
        self._answer(call, {"status": "saved", "message": "The intake record is saved."})
        self._emit(ExtractedDataMessage(data=record, final=True))
        self._emit(IntakeCompleteMessage())
        self._on_completed()

    async def _save(self, record: MedicalIntake, *, final: bool, latency: float) -> bool:
        for attempt in range(1, SAVE_ATTEMPTS + 1):
            try:
                await self._records.save_version(
                    record, final=final, warnings=self.warnings, model=self._model, latency_s=latency
                )
                return True
            except StorageError as exc:
                logger.error(
                    "session %s: saving the record failed (attempt %d): %s", self._session_id, attempt, exc
                )
                self._records.event("save_failed", final=final, attempt=attempt, error=str(exc))
                if not final:
                    return False
                if attempt == 1:
                    self._emit(
                        ErrorMessage(
                            code="save_failed", message="Your answers could not be saved yet; retrying."
                        )
                    )
            if attempt < SAVE_ATTEMPTS:
                await asyncio.sleep(self._save_backoff * 2 ** (attempt - 1))
        self._emit(
            ErrorMessage(
                code="save_failed",
                message="Your answers could not be saved. Please tell the front desk before you leave.",
            )
        )
        return False

    async def drain(self, grace: float) -> None:
        """Let extraction in flight finish within `grace` seconds; cancel what is left."""
        if not self._running:
            return
        _, pending = await asyncio.wait(list(self._running), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
