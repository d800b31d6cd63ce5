"""The tutorial's flat record keys, derived from a `MedicalIntake` for clients written against it.

A compatibility view, never a second source of truth: nothing reads these keys back, and every
value is computed from the canonical record each time it is sent.
"""

from typing import TYPE_CHECKING

from pydantic import BaseModel

if TYPE_CHECKING:
    from schemas import ChiefComplaint, MedicalIntake


class TutorialMedication(BaseModel):
    name: str
    dose: str | None
    frequency: str | None


class TutorialView(BaseModel):
    chief_complaint: str | None
    current_medications: list[TutorialMedication]


def tutorial_view(intake: "MedicalIntake") -> TutorialView:
    complaints = intake.present_illness.chief_complaints if intake.present_illness else []
    return TutorialView(
        chief_complaint=complaint_sentence(complaints[0]) if complaints else None,
        current_medications=[
            TutorialMedication(name=m.name, dose=m.dose, frequency=m.frequency) for m in intake.medications
        ],
    )


def complaint_sentence(complaint: "ChiefComplaint") -> str:
    text = complaint.complaint.strip().rstrip(".")
    sentence = text[:1].upper() + text[1:]
    if complaint.duration:
        sentence += f" for {complaint.duration}"
    if complaint.severity:
        severity = complaint.severity.strip()
        # The record keeps a 1-10 scale; a bare number reads better with its scale.
        sentence += f", severity {severity}/10" if severity.isdigit() else f", severity {severity}"
    return sentence + "."
