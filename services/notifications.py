"""Staff notifications: a signed webhook and an e-mail on `intake.completed` and `intake.emergency`,
retried with backoff in the background and logged in the database, never in the patient's way."""

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Literal

import httpx
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from config import Settings
from gemini_live.alerts import Emergency
from schemas import MedicalIntake
from services.notify_channels import (
    SEND_TIMEOUT_SECONDS,
    Channel,
    DeliveryFailed,
    DeliveryRecord,
    DeliveryStatus,
    EmailChannel,
    EventName,
    NotificationFlags,
    NotificationPayload,
    NotificationSummary,
    WebhookChannel,
)
from services.storage.models import DeliveryRow

logger = logging.getLogger(__name__)

# Deliveries in flight at once; past this, new ones are logged as failed at once rather than
# piling up tasks while every receiver is down.
MAX_IN_FLIGHT = 500


def _flags(record: MedicalIntake | None, emergency: Emergency | None) -> NotificationFlags:
    allergies = record.allergies if record else []
    return NotificationFlags(
        life_threatening_allergy=any(a.severity == "life-threatening" for a in allergies),
        emergency_allergy=any(a.requires_emergency_treatment for a in allergies),
        emergency_reported=emergency.source if emergency else None,
    )


def _complaint(record: MedicalIntake | None) -> str | None:
    complaints = record.present_illness.chief_complaints if record and record.present_illness else []
    return "; ".join(c.complaint for c in complaints) or None


class Notifier:
    """One per process: owns every delivery task, each of which retries with backoff and logs."""

    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        channels: Sequence[Channel],
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._channels = list(channels)
        self._http = http
        self._attempts = settings.NOTIFY_ATTEMPTS
        self._backoff = settings.NOTIFY_BACKOFF_SECONDS
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return self._sessions

    @classmethod
    def from_settings(cls, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> "Notifier":
        channels: list[Channel] = []
        http = None
        if settings.NOTIFY_WEBHOOK_URL and settings.NOTIFY_WEBHOOK_SECRET is not None:
            http = httpx.AsyncClient(timeout=SEND_TIMEOUT_SECONDS, follow_redirects=False)
            secret = settings.NOTIFY_WEBHOOK_SECRET.get_secret_value()
            channels.append(WebhookChannel(settings.NOTIFY_WEBHOOK_URL, secret, http))
        if settings.SMTP_URL is not None:
            channels.append(
                EmailChannel(
                    settings.SMTP_URL.get_secret_value(),
                    settings.NOTIFY_EMAIL_FROM,
                    settings.NOTIFY_EMAIL_TO,
                    f"{settings.public_origin}/clinic/",
                )
            )
        return cls(settings, sessions, channels, http)

    def emergency(self, intake_id: str, emergency: Emergency, record: MedicalIntake | None) -> None:
        summary = NotificationSummary(
            chief_complaint=_complaint(record),
            emergency_reason=emergency.reason,
            emergency_symptoms=emergency.symptoms,
        )
        self._send("intake.emergency", intake_id, "in_progress", _flags(record, emergency), summary)

    def completed(self, intake_id: str, record: MedicalIntake, emergency: Emergency | None) -> None:
        flags = _flags(record, emergency)
        summary = NotificationSummary(chief_complaint=_complaint(record))
        self._send("intake.completed", intake_id, "completed", flags, summary)

    def _send(
        self,
        event: EventName,
        intake_id: str,
        status: Literal["in_progress", "completed"],
        flags: NotificationFlags,
        summary: NotificationSummary,
    ) -> None:
        if not self._channels or self._closing:
            return
        payload = NotificationPayload(
            id=uuid.uuid4().hex,
            event=event,
            intake_id=intake_id,
            status=status,
            flags=flags,
            occurred_at=datetime.now(UTC),
            summary=summary if self._settings.NOTIFY_INCLUDE_SUMMARY else None,
        )
        # Without the summary the body holds no clinical content at all; flags keep their nulls.
        body = payload.model_dump_json(exclude={"summary"} if payload.summary is None else None).encode()
        for channel in self._channels:
            overloaded = len(self._tasks) >= MAX_IN_FLIGHT
            task = asyncio.create_task(
                self._deliver(channel, payload, body, overloaded=overloaded),
                name=f"notify-{channel.name}:{intake_id}",
            )
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("a notification task failed", exc_info=exc)

    async def _deliver(
        self, channel: Channel, payload: NotificationPayload, body: bytes, *, overloaded: bool
    ) -> None:
        row_id = await self._log_new(channel.name, payload)
        if overloaded:
            await self._log(row_id, "failed", 0, "too many deliveries in flight")
            logger.error("notification %s dropped: too many in flight", payload.event)
            return
        error: str | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                await channel.deliver(payload, body)
            except DeliveryFailed as exc:
                error = str(exc)
                last = attempt == self._attempts
                await self._log(row_id, "failed" if last else "pending", attempt, str(exc))
                if last:
                    logger.error(
                        "%s %s not delivered after %d attempts: %s", channel.name, payload.event, attempt, exc
                    )
                    return
                logger.warning("%s %s attempt %d failed: %s", channel.name, payload.event, attempt, exc)
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            else:
                # The last error stays on a delivered row: it shows a receiver that needed retries.
                await self._log(row_id, "delivered", attempt, error)
                return

    async def _log_new(self, channel: str, payload: NotificationPayload) -> int | None:
        at = datetime.now(UTC)
        row = DeliveryRow(
            event_id=payload.id,
            intake_id=payload.intake_id,
            event=payload.event,
            channel=channel,
            status="pending",
            attempts=0,
            created_at=at,
            updated_at=at,
        )
        try:
            async with self._sessions() as session, session.begin():
                session.add(row)
        except (SQLAlchemyError, OSError) as exc:
            # The delivery still goes out; only its log line is missing.
            logger.error("the delivery log could not be written: %s", type(exc).__name__)
            return None
        return row.id

    async def _log(
        self, row_id: int | None, status: DeliveryStatus, attempts: int, error: str | None
    ) -> None:
        if row_id is None:
            return
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    update(DeliveryRow)
                    .where(DeliveryRow.id == row_id)
                    .values(status=status, attempts=attempts, last_error=error, updated_at=datetime.now(UTC))
                )
        except (SQLAlchemyError, OSError) as exc:
            logger.error("the delivery log could not be updated: %s", type(exc).__name__)

    async def idle(self) -> None:
        """Wait until every delivery in flight has finished (tests, shutdown)."""
        while self._tasks:
            await asyncio.wait(list(self._tasks))

    async def close(self, grace: float) -> None:
        """Let deliveries in flight finish within `grace` seconds; cancel the rest."""
        self._closing = True
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._http is not None:
            await self._http.aclose()


async def deliveries(
    sessions: async_sessionmaker[AsyncSession], *, status: DeliveryStatus | None = None, limit: int = 100
) -> list[DeliveryRecord]:
    query = select(DeliveryRow)
    if status is not None:
        query = query.where(DeliveryRow.status == status)
    async with sessions() as session:
        rows = await session.scalars(
            query.order_by(DeliveryRow.created_at.desc(), DeliveryRow.id.desc()).limit(limit)
        )
        return [
            DeliveryRecord(
                event_id=r.event_id,
                intake_id=r.intake_id,
                event=r.event,
                channel=r.channel,
                status=r.status,
                attempts=r.attempts,
                last_error=r.last_error,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
            for r in rows
        ]
