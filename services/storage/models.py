"""The tables: one row per session, its finalized turns, its record versions, and the audit trail."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC in and out; SQLite keeps no zone, so it stores naive UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class IntakeRow(Base):
    __tablename__ = "intakes"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="in_progress")
    started_at: Mapped[datetime]
    last_activity_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(64))
    completed_at: Mapped[datetime | None]
    upstream: Mapped[str] = mapped_column(String(16))
    live_model: Mapped[str] = mapped_column(String(128))
    practice: Mapped[bool] = mapped_column(Boolean)
    client: Mapped[str] = mapped_column(String(128))
    patient_turns: Mapped[int] = mapped_column(Integer, default=0)
    # Taken from the latest version, for the staff list and the search by name, birth date, phone.
    patient_name: Mapped[str | None] = mapped_column(Text)
    name_key: Mapped[str | None] = mapped_column(Text)
    date_of_birth: Mapped[str | None] = mapped_column(String(32))
    phone_key: Mapped[str | None] = mapped_column(String(32))
    chief_complaint: Mapped[str | None] = mapped_column(Text)
    life_threatening_allergy: Mapped[bool] = mapped_column(Boolean, default=False)
    emergency: Mapped[bool] = mapped_column(Boolean, default=False)
    # An emergency flagged during the session: "model" (flag_emergency) or "server" (red-flag phrase).
    emergency_reported: Mapped[str | None] = mapped_column(String(16))
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    reviewed_by: Mapped[str | None] = mapped_column(String(128))
    reviewed_at: Mapped[datetime | None]
    reviewed_version: Mapped[int | None] = mapped_column(Integer)
    # Resuming after a dropped connection: the page's token (hashed), the newest upstream handle,
    # the process serving the session now (NULL: none) and until when it is taken as alive, when
    # the intake stops being resumable, and a counter bumped by every resume.
    resume_token_hash: Mapped[str | None] = mapped_column(String(64))
    resume_handle: Mapped[str | None] = mapped_column(Text)
    resumable_until: Mapped[datetime | None]
    owner: Mapped[str | None] = mapped_column(String(64))
    live_until: Mapped[datetime | None]
    generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        Index("ix_intakes_started_at", "started_at"),
        Index("ix_intakes_name_key", "name_key"),
        Index("ix_intakes_phone_key", "phone_key"),
    )


class TurnRow(Base):
    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    intake_id: Mapped[str] = mapped_column(ForeignKey("intakes.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    interrupted: Mapped[bool] = mapped_column(Boolean)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("intake_id", "index", name="uq_turns_intake_index"),)


class VersionRow(Base):
    __tablename__ = "record_versions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    intake_id: Mapped[str] = mapped_column(ForeignKey("intakes.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    final: Mapped[bool] = mapped_column(Boolean)
    record: Mapped[dict[str, Any]]
    warnings: Mapped[list[Any]]
    created_at: Mapped[datetime]
    # An extraction names its model and latency; a clinician's correction names the staff member and why.
    model: Mapped[str | None] = mapped_column(String(128))
    latency_s: Mapped[float | None] = mapped_column(Float)
    author: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("intake_id", "version", name="uq_versions_intake_version"),)


class AuditRow(Base):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    # No foreign key: who read a record stays on file after the record is purged.
    intake_id: Mapped[str | None] = mapped_column(String(64))
    staff: Mapped[str | None] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(64))
    fields: Mapped[dict[str, Any]]

    __table_args__ = (Index("ix_audit_events_intake_id", "intake_id"), Index("ix_audit_events_at", "at"))


class DeliveryRow(Base):
    """One notification to one channel (webhook or email): its attempts and how it ended."""

    __tablename__ = "notification_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    # The event's id, the same in the webhook body and the e-mail: a receiver can deduplicate on it.
    event_id: Mapped[str] = mapped_column(String(64))
    # No foreign key: the log outlives a purged intake, and holds no clinical content.
    intake_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    __table_args__ = (
        Index("ix_notification_deliveries_created_at", "created_at"),
        Index("ix_notification_deliveries_intake_id", "intake_id"),
    )
