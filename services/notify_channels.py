"""Where staff notifications go, and what they carry: a signed webhook and an e-mail."""

import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime
from email.message import EmailMessage
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib
import httpx
from pydantic import BaseModel, Field

EventName = Literal["intake.completed", "intake.emergency"]
DeliveryStatus = Literal["pending", "delivered", "failed"]
SIGNATURE_HEADER = "X-Intake-Signature"
SEND_TIMEOUT_SECONDS = 10.0


class NotificationFlags(BaseModel):
    life_threatening_allergy: bool
    emergency_allergy: bool
    emergency_reported: Literal["model", "server"] | None


class NotificationSummary(BaseModel):
    chief_complaint: str | None
    emergency_reason: str | None = None
    emergency_symptoms: list[str] = Field(default_factory=list)


class NotificationPayload(BaseModel):
    id: str = Field(description="The event's id: the same for every channel and every retry")
    event: EventName
    intake_id: str
    status: Literal["in_progress", "completed"]
    flags: NotificationFlags
    occurred_at: datetime
    summary: NotificationSummary | None = Field(None, description="Only with NOTIFY_INCLUDE_SUMMARY=true")


class DeliveryRecord(BaseModel):
    event_id: str
    intake_id: str
    event: EventName
    channel: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class DeliveryFailed(Exception):
    pass


class Channel(Protocol):
    name: str

    async def deliver(self, payload: NotificationPayload, body: bytes) -> None: ...


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookChannel:
    name = "webhook"

    def __init__(self, url: str, secret: str, client: httpx.AsyncClient) -> None:
        self._url = url
        self._secret = secret
        self._client = client

    async def deliver(self, payload: NotificationPayload, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(self._secret, body),
            "X-Intake-Event": payload.event,
            "X-Intake-Delivery": payload.id,
        }
        try:
            response = await self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # The URL may carry a token: only the kind of failure is kept.
            raise DeliveryFailed(f"the webhook could not be reached ({type(exc).__name__})") from None
        if not response.is_success:
            raise DeliveryFailed(f"the webhook answered HTTP {response.status_code}")


class EmailChannel:
    name = "email"

    def __init__(self, smtp_url: str, sender: str, recipients: Sequence[str], workspace: str) -> None:
        parts = urlsplit(smtp_url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("SMTP_URL must be smtp://[user:password@]host[:port] or smtps://...")
        self._host = parts.hostname
        self._port = parts.port
        self._implicit_tls = parts.scheme == "smtps"
        self._user = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._sender = sender
        self._recipients = list(recipients)
        self._workspace = workspace

    def message(self, payload: NotificationPayload) -> EmailMessage:
        message = EmailMessage()
        urgent = payload.event == "intake.emergency"
        message["Subject"] = (
            "EMERGENCY flagged during an intake" if urgent else "An intake is ready for review"
        )
        message["From"] = self._sender
        message["To"] = ", ".join(self._recipients)
        message["X-Intake-Event"] = payload.event
        message["X-Intake-Delivery"] = payload.id
        message.set_content(
            "\n".join(
                [
                    "An emergency was flagged: see the patient now." if urgent else "An intake is complete.",
                    "",
                    f"Open it: {self._workspace}#/intakes/{payload.intake_id}",
                    "",
                    payload.model_dump_json(
                        indent=2, exclude={"summary"} if payload.summary is None else None
                    ),
                ]
            )
        )
        return message

    async def deliver(self, payload: NotificationPayload, body: bytes) -> None:
        try:
            await aiosmtplib.send(
                self.message(payload),
                hostname=self._host,
                port=self._port,
                username=self._user,
                password=self._password,
                use_tls=self._implicit_tls,
                # None: STARTTLS when the server offers it.
                start_tls=None if not self._implicit_tls else False,
                timeout=SEND_TIMEOUT_SECONDS,
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise DeliveryFailed(
                f"the mail server refused or could not be reached ({type(exc).__name__})"
            ) from None
