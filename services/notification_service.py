"""E-mail and SMS to patients through a pluggable transport."""

import logging
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Literal, Protocol

import phonenumbers
from pydantic import BaseModel, ConfigDict

from schemas import MedicalIntake
from utils.validators import validate_email, validate_phone

logger = logging.getLogger(__name__)

Channel = Literal["email", "sms"]


class InvalidRecipient(ValueError):
    pass


class EmailMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    to: str
    subject: str
    body: str
    cc: tuple[str, ...] = ()


class SmsMessage(BaseModel):
    model_config = ConfigDict(frozen=True)

    to: str  # E.164, which is what SMS gateways take
    body: str


class Notification(BaseModel):
    model_config = ConfigDict(frozen=True)

    notification_id: str
    channel: Channel
    to: str
    subject: str | None = None
    transport: str
    accepted_at: datetime


class Appointment(BaseModel):
    model_config = ConfigDict(frozen=True)

    starts_at: datetime
    provider: str
    location: str | None = None


class NotificationTransport(Protocol):
    name: str

    async def send_email(self, message: EmailMessage) -> None: ...

    async def send_sms(self, message: SmsMessage) -> None: ...


class OutboxTransport:
    """The development transport: keeps messages in memory and delivers nothing."""

    name = "outbox"

    def __init__(self, max_messages: int = 1000) -> None:
        # A dev server can run for days; the oldest messages go first when full.
        self.emails: deque[EmailMessage] = deque(maxlen=max_messages)
        self.sms: deque[SmsMessage] = deque(maxlen=max_messages)

    async def send_email(self, message: EmailMessage) -> None:
        self.emails.append(message)

    async def send_sms(self, message: SmsMessage) -> None:
        self.sms.append(message)


def _email_address(raw: str) -> str:
    checked = validate_email(raw)
    if not checked.ok or checked.value is None:
        raise InvalidRecipient(f"invalid e-mail recipient: {checked.error}")
    return checked.value


def _sms_number(raw: str) -> str:
    checked = validate_phone(raw)
    if not checked.ok or checked.value is None:
        raise InvalidRecipient(f"invalid SMS recipient: {checked.error}")
    number = phonenumbers.parse(checked.value, "US")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _require_text(value: str, what: str) -> str:
    if not value.strip():
        raise ValueError(f"{what} is empty")
    return value


def _when(moment: datetime) -> str:
    return f"{moment:%A, %B} {moment.day}, {moment:%Y at %I:%M %p}"


class NotificationService:
    def __init__(
        self,
        transport: NotificationTransport | None = None,
        *,
        clinic_name: str = "Medical Center",
        clinic_phone: str | None = None,
        history_size: int = 1000,
    ) -> None:
        self.transport: NotificationTransport = transport or OutboxTransport()
        self.clinic_name = clinic_name
        self.clinic_phone = clinic_phone
        # Metadata only (no bodies); bounded because it lives as long as the process.
        self._history: deque[Notification] = deque(maxlen=history_size)

    def _record(self, channel: Channel, to: str, subject: str | None) -> Notification:
        sent = Notification(
            notification_id=str(uuid.uuid4()),
            channel=channel,
            to=to,
            subject=subject,
            transport=self.transport.name,
            accepted_at=datetime.now(UTC),
        )
        self._history.append(sent)
        logger.info("%s %s accepted by %s", channel, sent.notification_id, sent.transport)
        return sent

    async def send_email(self, to: str, subject: str, body: str, cc: list[str] | None = None) -> Notification:
        message = EmailMessage(
            to=_email_address(to),
            subject=_require_text(subject, "subject"),
            body=_require_text(body, "body"),
            cc=tuple(_email_address(address) for address in cc or ()),
        )
        await self.transport.send_email(message)
        return self._record("email", message.to, message.subject)

    async def send_sms(self, to: str, message: str) -> Notification:
        sms = SmsMessage(to=_sms_number(to), body=_require_text(message, "message"))
        await self.transport.send_sms(sms)
        return self._record("sms", sms.to, None)

    async def _send_both(
        self, email: str | None, phone: str | None, subject: str, body: str, sms: str
    ) -> list[Notification]:
        if not email and not phone:
            raise InvalidRecipient("no e-mail address or phone number to notify")
        # Check both recipients before sending either, so a bad phone never follows a sent e-mail.
        if email:
            _email_address(email)
        if phone:
            _sms_number(phone)
        sent = []
        if email:
            sent.append(await self.send_email(email, subject, body))
        if phone:
            sent.append(await self.send_sms(phone, sms))
        return sent

    def _reschedule_line(self) -> str:
        return f" To reschedule, call {self.clinic_phone}." if self.clinic_phone else ""

    async def send_appointment_confirmation(
        self, appointment: Appointment, *, email: str | None = None, phone: str | None = None
    ) -> list[Notification]:
        when = _when(appointment.starts_at)
        where = f" at {appointment.location}" if appointment.location else ""
        body = (
            f"Your appointment with {appointment.provider}{where} is confirmed for {when}."
            f"{self._reschedule_line()}\n\n{self.clinic_name}"
        )
        sms = f"{self.clinic_name}: appointment confirmed for {when}.{self._reschedule_line()}"
        return await self._send_both(email, phone, "Appointment confirmation", body, sms)

    async def send_intake_completion(
        self, record: MedicalIntake, *, email: str | None = None, phone: str | None = None
    ) -> list[Notification]:
        info = record.patient_info
        email = email or (info.email if info else None)
        phone = phone or (info.phone if info else None)
        complaints = record.present_illness.chief_complaints if record.present_illness else []
        complaint = complaints[0].complaint if complaints else "not recorded"
        body = (
            "Thank you for completing your medical intake. Your provider will review it "
            "before your appointment.\n\n"
            f"Main concern: {complaint}\n"
            f"Medications listed: {len(record.medications)}\n"
            f"Allergies listed: {len(record.allergies)}\n\n"
            f"{self.clinic_name}"
        )
        # SMS is less private than e-mail, so it carries no clinical content.
        sms = f"{self.clinic_name}: your medical intake is complete. Thank you."
        return await self._send_both(email, phone, "Medical intake completed", body, sms)

    async def send_reminder(self, to: str, reminder_type: str, details: str) -> Notification:
        kind = _require_text(reminder_type, "reminder_type").strip()
        text = _require_text(details, "details").strip()
        return await self.send_sms(to, f"{self.clinic_name} reminder ({kind}): {text}")

    def history(self, limit: int = 10) -> list[Notification]:
        if limit < 0:
            raise ValueError("limit must not be negative")
        # [-0:] would be the whole history.
        return list(self._history)[-limit:] if limit else []
