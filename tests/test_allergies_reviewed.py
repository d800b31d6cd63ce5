"""The record tells "reviewed, none" from "never asked"."""

from schemas import Allergy, ChiefComplaint, MedicalIntake, PatientInfo, PresentIllness
from utils.validators import missing_sections, normalize_intake

BASE = MedicalIntake(
    patient_info=PatientInfo(name="Lee Park"),
    present_illness=PresentIllness(chief_complaints=[ChiefComplaint(complaint="headache")]),
)


def test_never_asked_is_missing_but_reviewed_none_is_complete() -> None:
    assert missing_sections(BASE) == ["allergies"]
    reviewed = BASE.model_copy(update={"allergies_reviewed": True})
    assert missing_sections(reviewed) == []


def test_a_listed_allergy_means_the_question_was_asked() -> None:
    record = BASE.model_copy(update={"allergies": [Allergy(allergen="latex", severity="mild")]})
    normalized, _ = normalize_intake(record)
    assert normalized.allergies_reviewed is True
    assert normalize_intake(BASE)[0].allergies_reviewed is False
