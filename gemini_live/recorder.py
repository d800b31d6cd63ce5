"""Extraction off the audio path: the last good record, the fallback, and saving the outcome."""

import asyncio
from collections.abc import Awaitable, Callable

from schemas import ErrorMessage, ExtractedDataMessage, IntakeCompleteMessage, MedicalIntake
from gemini_live.transcript import ConversationLog
from services.extraction import ExtractionError, Extractor
from services.session_records import ConversationStore, SessionAudit

Emit = Callable[[ExtractedDataMessage | IntakeCompleteMessage | ErrorMessage], Awaitable[None]]


class IntakeRecorder:
    def __init__(
        self,
        session_id: str,
        conversation: ConversationLog,
        *,
        extractor: Extractor,
        audit: SessionAudit,
        store: ConversationStore | None,
        emit: Emit,
        fallback_every: int,
        live_every: int = 0,
    ) -> None:
        self._session_id = session_id
        self._conversation = conversation
        self._extractor = extractor
        self._audit = audit
        self._store = store
        self._emit = emit
        # Live extraction, when on, comes at least as often as the fallback would.
        self._every = min(fallback_every, live_every or fallback_every)
        self._turns_at_last_extraction = 0
        self._intake_called = False
        self._running: dict[asyncio.Task[None], str | None] = {}
        self.record: MedicalIntake | None = None
        self.warnings: list[str] = []
        self.completed = False

    def on_complete_intake(self, call_id: str | None) -> None:
        self._intake_called = True
        # A progress extraction finishing after the final one would overwrite it on the page.
        for task, running_call in list(self._running.items()):
            if running_call is None:
                task.cancel()
        self._start(final=True, call_id=call_id)

    def on_turn_complete(self) -> None:
        """Before complete_intake, extract every few finalized turns (live extraction, or the
        fallback for a model that never calls the tool); one progress extraction at a time."""
        if self.completed or self._intake_called or self._running:
            return
        if len(self._conversation) - self._turns_at_last_extraction >= self._every:
            self._start(final=False, call_id=None)

    def cancel(self, call_ids: list[str]) -> None:
        for task, call_id in list(self._running.items()):
            if call_id is not None and call_id in call_ids:
                task.cancel()

    def _start(self, *, final: bool, call_id: str | None) -> None:
        self._turns_at_last_extraction = len(self._conversation)
        task = asyncio.create_task(self._extract(final), name=f"extraction:{self._session_id}")
        self._running[task] = call_id
        task.add_done_callback(self._running.pop)

    async def _extract(self, final: bool) -> None:
        try:
            record, warnings = await self._extractor.extract(list(self._conversation.turns))
        except ExtractionError as exc:
            await self._audit.record("extraction", ok=False, final=final, error=str(exc))
            await self._emit(
                ErrorMessage(code="extraction_failed", message=f"Could not build the intake record: {exc}")
            )
            if self.record is None:
                if final:
                    await self.save(completed=False)
                return
            if not final:
                return
        else:
            self.record, self.warnings = record, warnings
            await self._audit.record(
                "extraction",
                ok=True,
                final=final,
                warnings=len(warnings),
                sections=[name for name, value in record if value],
            )
        # A final call that failed still completes with the last good record.
        await self._emit(ExtractedDataMessage(data=self.record, final=final))
        if final:
            self.completed = True
            await self._emit(IntakeCompleteMessage())
            await self.save(completed=True)

    async def drain(self, grace: float) -> None:
        """Let extraction in flight finish within `grace` seconds; cancel what is left."""
        if not self._running:
            return
        _, pending = await asyncio.wait(list(self._running), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def save(self, *, completed: bool) -> None:
        if self._store is None or not (self._conversation or self.record):
            return
        await self._store.save(
            self._session_id,
            list(self._conversation.turns),
            self.record,
            completed=completed,
            warnings=self.warnings,
        )
        await self._audit.record("conversation_saved", completed=completed)
