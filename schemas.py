"""The intake record and the browser WebSocket protocol, written down once."""

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    field_serializer,
)

from utils.tutorial_view import tutorial_view


class Medication(BaseModel):
    name: str = Field(description="Medication name, brand or generic")
    dose: str | None = Field(None, description="Dose with unit, e.g. '500 mg'")
    frequency: str | None = Field(None, description="How often it is taken")
    route: str | None = Field("oral", description="Administration route")
    indication: str | None = Field(None, description="What it is taken for")
    adherence: str | None = Field(None, description="Whether it is taken as prescribed")
    effectiveness: str | None = Field(None, description="How well it works")


class Allergy(BaseModel):
    allergen: str = Field(description="What causes the allergy")
    reaction: list[str] = Field(default_factory=list, description="Symptoms or reactions")
    severity: str = Field(description="mild, moderate, serious, or life-threatening")
    requires_emergency_treatment: bool = Field(False, description="Needs an EpiPen or the ER")


class ChiefComplaint(BaseModel):
    complaint: str = Field(description="Main symptom or issue")
    duration: str | None = Field(None, description="How long it has lasted")
    severity: str | None = Field(None, description="Severity on a 1-10 scale")
    onset: str | None = Field(None, description="sudden or gradual")
    location: str | None = Field(None, description="Body location")


class PatientInfo(BaseModel):
    name: str | None = None
    date_of_birth: str | None = Field(None, description="YYYY-MM-DD")
    phone: str | None = None
    email: str | None = None


class PresentIllness(BaseModel):
    chief_complaints: list[ChiefComplaint] = Field(default_factory=list)
    symptoms: list[str] = Field(default_factory=list)
    timeline: str | None = None


class PastMedicalHistory(BaseModel):
    conditions: list[str] = Field(default_factory=list)
    surgeries: list[str] = Field(default_factory=list)
    hospitalizations: list[str] = Field(default_factory=list)


class FamilyHistory(BaseModel):
    conditions: list[str] = Field(default_factory=list)


class SocialHistory(BaseModel):
    smoking: str | None = None
    alcohol: str | None = None
    drugs: str | None = None
    occupation: str | None = None
    exercise: str | None = None


class MedicalIntake(BaseModel):
    patient_info: PatientInfo | None = None
    present_illness: PresentIllness | None = None
    medications: list[Medication] = Field(default_factory=list)
    allergies: list[Allergy] = Field(default_factory=list)
    # Tells "reviewed, none" (True, no allergies) from "never asked" (False).
    allergies_reviewed: bool = Field(
        False, description="True once the patient has answered about allergies, including 'none'"
    )
    past_medical_history: PastMedicalHistory | None = None
    family_history: FamilyHistory | None = None
    social_history: SocialHistory | None = None


Role = Literal["assistant", "patient"]


class Turn(BaseModel):
    role: Role
    text: str


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InterruptMessage(_Message):
    type: Literal["interrupt"]


class EndSessionMessage(_Message):
    type: Literal["end_session"]


class ControlMessage(_Message):
    type: Literal["control"]
    action: Literal["start", "stop", "interrupt"]


class ResumeMessage(_Message):
    """The first message on a new socket: pick up an intake whose connection dropped."""

    type: Literal["resume"]
    session_id: str = Field(min_length=1, max_length=64)
    resume_token: str = Field(min_length=1, max_length=128)


ClientMessage = Annotated[
    InterruptMessage | EndSessionMessage | ControlMessage | ResumeMessage, Field(discriminator="type")
]
client_message_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)

ConversationState = Literal["listening", "speaking", "processing", "idle"]
# The connection's states, and (for clients written against the tutorial) the conversation's.
SessionState = Literal[
    "connecting", "ready", "reconnecting", "closing", "listening", "speaking", "processing", "idle"
]
UpstreamKind = Literal["google", "simulator", "custom"]


class StatusMessage(_Message):
    type: Literal["status"] = "status"
    state: SessionState
    message: str
    upstream: UpstreamKind | None = None
    session_id: str | None = None
    conversation: ConversationState | None = None
    # On `ready`: what a page presents to resume this intake after a drop (rotated on each resume).
    resume_token: str | None = None
    resumed: bool | None = None


class TranscriptMessage(_Message):
    type: Literal["transcript"] = "transcript"
    role: Role
    text: str


class TurnCompleteMessage(_Message):
    type: Literal["turn_complete"] = "turn_complete"


class InterruptedMessage(_Message):
    type: Literal["interrupted"] = "interrupted"


class ExtractedDataMessage(_Message):
    type: Literal["extracted_data"] = "extracted_data"
    data: MedicalIntake
    final: bool = False

    @field_serializer("data", mode="wrap")
    def _with_tutorial_keys(
        self, data: MedicalIntake, handler: SerializerFunctionWrapHandler, info: SerializationInfo
    ) -> dict[str, object]:
        # The tutorial's frontend reads `chief_complaint` and `current_medications` inside `data`;
        # they are a view of the canonical record, added beside its fields (utils/tutorial_view.py).
        return {**handler(data), **tutorial_view(data).model_dump(exclude_none=info.exclude_none)}


class IntakeCompleteMessage(_Message):
    type: Literal["intake_complete"] = "intake_complete"
    message: str = "The intake is complete and saved."


class EmergencyMessage(_Message):
    """An emergency was flagged: the page shows `instructions` until the session ends."""

    type: Literal["emergency"] = "emergency"
    # model: the assistant called flag_emergency; server: a red-flag phrase in the patient's words.
    source: Literal["model", "server"]
    instructions: str


class HistoryMessage(_Message):
    """After a resume: the conversation so far and the latest record, as they were first sent."""

    type: Literal["history"] = "history"
    turns: list[TranscriptMessage]
    record: ExtractedDataMessage | None = None


ErrorCode = Literal[
    "bad_message",
    "unknown_type",
    "frame_too_large",
    "odd_length_audio",
    "no_api_key",
    "upstream_error",
    "upstream_auth",
    "upstream_unreachable",
    "bad_api_key",
    "assistant_stalled",
    "save_failed",
    "extraction_failed",
    "audio_dropped",
    "audio_too_fast",
    "idle_timeout",
    "too_many_sessions",
    "unauthorized",
    "server_shutdown",
    "internal_error",
    "resume_refused",
    "superseded",
]


class ErrorMessage(_Message):
    type: Literal["error"] = "error"
    message: str
    code: ErrorCode


ServerMessage = Annotated[
    StatusMessage
    | TranscriptMessage
    | TurnCompleteMessage
    | InterruptedMessage
    | ExtractedDataMessage
    | IntakeCompleteMessage
    | EmergencyMessage
    | HistoryMessage
    | ErrorMessage,
    Field(discriminator="type"),
]
server_message_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
