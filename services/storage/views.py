"""What the store hands out: an intake as the staff list, the detail view and the export show it."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from schemas import MedicalIntake, Role

IntakeStatus = Literal["in_progress", "completed", "incomplete", "failed", "abandoned"]


class IntakeFlags(BaseModel):
    life_threatening_allergy: bool
    emergency: bool = Field(description="An allergy that needs emergency treatment (EpiPen, ER)")
    emergency_reported: Literal["model", "server"] | None = Field(
        None,
        description="Emergency symptoms flagged during the intake: by the assistant (model) or by the "
        "server's red-flag phrases (server)",
    )


class IntakeSummary(BaseModel):
    id: str
    status: IntakeStatus
    patient_name: str | None
    date_of_birth: str | None
    chief_complaint: str | None
    flags: IntakeFlags
    started_at: datetime
    completed_at: datetime | None
    practice: bool = Field(description="Made with the built-in simulator: an invented patient")


class RecordVersion(BaseModel):
    version: int
    final: bool
    created_at: datetime
    record: MedicalIntake
    warnings: list[str]
    model: str | None = Field(description="The extraction model; null for a clinician's correction")
    latency_s: float | None
    author: str | None = Field(description="The staff member who made this correction")
    reason: str | None


class TranscriptTurn(BaseModel):
    index: int
    role: Role
    text: str
    interrupted: bool
    started_at: datetime
    ended_at: datetime


class ReviewState(BaseModel):
    reviewed: bool
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None
    reviewed_version: int | None = None


class IntakeDetail(IntakeSummary):
    ended_at: datetime | None
    end_reason: str | None
    upstream: str
    live_model: str
    record: MedicalIntake | None = Field(description="The latest version's record")
    warnings: list[str] = Field(description="The latest version's validation warnings")
    versions: list[RecordVersion]
    transcript: list[TranscriptTurn]
    review: ReviewState
