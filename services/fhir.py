"""An intake record as a FHIR R4 Bundle (type collection), built with fhir.resources' R4B models.

Everything in it was said by the patient to an AI assistant: conditions and allergies are
`unconfirmed`, and a value the record does not hold is left out rather than guessed.
"""

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from fhir.resources.R4B.allergyintolerance import AllergyIntolerance
from fhir.resources.R4B.bundle import Bundle, BundleEntry
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.familymemberhistory import FamilyMemberHistory
from fhir.resources.R4B.medicationstatement import MedicationStatement
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.procedure import Procedure
from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.resource import Resource

from schemas import Allergy, ChiefComplaint, MedicalIntake, Medication
from utils.validators import is_critical_allergy, validate_allergy_severity, validate_date_of_birth

CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
PROVENANCE_AGENT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
LOINC = "http://loinc.org"

# Social history item -> LOINC code and display; exercise has no plain LOINC history code, so text only.
SOCIAL_CODES: dict[str, tuple[str | None, str]] = {
    "smoking": ("72166-2", "Tobacco smoking status"),
    "alcohol": ("11331-6", "History of Alcohol use"),
    "drugs": ("11343-1", "History of Other nonmedical drug use"),
    "occupation": ("11341-5", "History of Occupation"),
    "exercise": (None, "Exercise habits"),
}
# Our allergy severities -> FHIR reaction severity (mild | moderate | severe).
REACTION_SEVERITY = {
    "mild": "mild",
    "moderate": "moderate",
    "serious": "severe",
    "life-threatening": "severe",
}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _text(value: str) -> dict[str, Any]:
    return {"text": value}


class _Builder:
    def __init__(self, recorded: datetime) -> None:
        self.recorded = recorded
        self.entries: list[tuple[str, Resource]] = []
        self.patient_ref = self._new_ref()

    @staticmethod
    def _new_ref() -> str:
        return f"urn:uuid:{uuid.uuid4()}"

    def add(self, resource: Resource, ref: str | None = None) -> str:
        ref = ref or self._new_ref()
        resource.id = ref.removeprefix("urn:uuid:")
        self.entries.append((ref, resource))
        return ref

    @property
    def subject(self) -> dict[str, str]:
        return {"reference": self.patient_ref}


def _patient(record: MedicalIntake) -> Patient:
    info = record.patient_info
    data: dict[str, Any] = {}
    if info is not None:
        if info.name:
            data["name"] = [{"text": info.name}]
        if info.date_of_birth and (dob := validate_date_of_birth(info.date_of_birth)).ok:
            data["birthDate"] = dob.value
        telecom = [{"system": "phone", "value": info.phone}] if info.phone else []
        telecom += [{"system": "email", "value": info.email}] if info.email else []
        if telecom:
            data["telecom"] = telecom
    return Patient.model_validate(data)


def _complaint(complaint: ChiefComplaint, builder: _Builder) -> Condition:
    notes = [
        f"{label}: {value}"
        for label, value in (("Duration", complaint.duration), ("Onset", complaint.onset))
        if value
    ]
    data: dict[str, Any] = {
        "clinicalStatus": _coding(CONDITION_CLINICAL, "active"),
        "verificationStatus": _coding(CONDITION_VERIFICATION, "unconfirmed"),
        "category": [_coding(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
        "code": _text(complaint.complaint),
        "subject": builder.subject,
        "recordedDate": builder.recorded.isoformat(),
    }
    if complaint.severity:
        data["severity"] = _text(complaint.severity)
    if complaint.location:
        data["bodySite"] = [_text(complaint.location)]
    if notes:
        data["note"] = [{"text": "; ".join(notes)}]
    return Condition.model_validate(data)


def _past_condition(condition: str, builder: _Builder) -> Condition:
    return Condition.model_validate(
        {
            "verificationStatus": _coding(CONDITION_VERIFICATION, "unconfirmed"),
            "category": [_coding(CONDITION_CATEGORY, "problem-list-item", "Problem List Item")],
            "code": _text(condition),
            "subject": builder.subject,
            "recordedDate": builder.recorded.isoformat(),
        }
    )


def _medication(medication: Medication, builder: _Builder) -> MedicationStatement:
    dosage_text = ", ".join(
        part for part in (medication.dose, medication.frequency, medication.route) if part
    )
    data: dict[str, Any] = {
        "status": "active",
        "medicationCodeableConcept": _text(medication.name),
        "subject": builder.subject,
        "informationSource": builder.subject,
        "dateAsserted": builder.recorded.isoformat(),
    }
    dosage: dict[str, Any] = {}
    if dosage_text:
        dosage["text"] = dosage_text
    if medication.frequency:
        dosage["timing"] = {"code": _text(medication.frequency)}
    if medication.route:
        dosage["route"] = _text(medication.route)
    if dosage:
        data["dosage"] = [dosage]
    if medication.indication:
        data["reasonCode"] = [_text(medication.indication)]
    notes = [
        f"{label}: {value}"
        for label, value in (("Adherence", medication.adherence), ("Effectiveness", medication.effectiveness))
        if value
    ]
    if notes:
        data["note"] = [{"text": "; ".join(notes)}]
    return MedicationStatement.model_validate(data)


def _allergy(allergy: Allergy, builder: _Builder) -> AllergyIntolerance:
    severity = validate_allergy_severity(allergy.severity)
    data: dict[str, Any] = {
        "clinicalStatus": _coding(ALLERGY_CLINICAL, "active"),
        "verificationStatus": _coding(ALLERGY_VERIFICATION, "unconfirmed"),
        "code": _text(allergy.allergen),
        "patient": builder.subject,
        "recordedDate": builder.recorded.isoformat(),
    }
    if is_critical_allergy(allergy):
        data["criticality"] = "high"
    elif severity.ok and severity.value == "mild":
        data["criticality"] = "low"
    reactions = [reaction for reaction in allergy.reaction if reaction.strip()]
    if reactions:
        reaction: dict[str, Any] = {"manifestation": [_text(r) for r in reactions]}
        if severity.ok and severity.value in REACTION_SEVERITY:
            reaction["severity"] = REACTION_SEVERITY[severity.value]
        data["reaction"] = [reaction]
    if allergy.requires_emergency_treatment:
        data["note"] = [{"text": "Needs emergency treatment (EpiPen or emergency room)"}]
    return AllergyIntolerance.model_validate(data)


def _family(condition: str, builder: _Builder) -> FamilyMemberHistory:
    # The record does not say which relative: the generic "family member" code, never a guess.
    return FamilyMemberHistory.model_validate(
        {
            "status": "partial",
            "patient": builder.subject,
            "relationship": _coding(ROLE_CODE, "FAMMEMB", "family member"),
            "condition": [{"code": _text(condition)}],
        }
    )


def _social(item: str, value: str, builder: _Builder) -> Observation:
    code, display = SOCIAL_CODES[item]
    return Observation.model_validate(
        {
            "status": "final",
            "category": [_coding(OBSERVATION_CATEGORY, "social-history", "Social History")],
            "code": {**(_coding(LOINC, code, display) if code else {}), "text": display},
            "subject": builder.subject,
            "effectiveDateTime": builder.recorded.isoformat(),
            "valueString": value,
        }
    )


def _surgery(surgery: str, builder: _Builder) -> Procedure:
    return Procedure.model_validate(
        {"status": "completed", "code": _text(surgery), "subject": builder.subject}
    )


def _clinical(record: MedicalIntake, builder: _Builder) -> Iterator[Resource]:
    if record.present_illness is not None:
        for complaint in record.present_illness.chief_complaints:
            yield _complaint(complaint, builder)
    history = record.past_medical_history
    if history is not None:
        yield from (_past_condition(c, builder) for c in history.conditions if c.strip())
        yield from (_surgery(s, builder) for s in history.surgeries if s.strip())
    yield from (_medication(m, builder) for m in record.medications)
    yield from (_allergy(a, builder) for a in record.allergies)
    if record.family_history is not None:
        yield from (_family(c, builder) for c in record.family_history.conditions if c.strip())
    if record.social_history is not None:
        for item, value in record.social_history.model_dump().items():
            if value:
                yield _social(item, value, builder)


def intake_bundle(record: MedicalIntake, *, recorded: datetime, model: str | None = None) -> Bundle:
    """`recorded`: when the record was saved (aware); `model`: the model that extracted it."""
    builder = _Builder(recorded)
    builder.add(_patient(record), builder.patient_ref)
    for resource in _clinical(record, builder):
        builder.add(resource)
    assistant = "AI intake assistant" + (f" ({model})" if model else "")
    provenance = Provenance.model_validate(
        {
            "target": [{"reference": ref} for ref, _ in builder.entries],
            "recorded": recorded.isoformat(),
            "activity": _text("Patient interview with an AI assistant"),
            "agent": [
                {"type": _coding(PROVENANCE_AGENT, "author", "Author"), "who": {"display": assistant}},
                {"type": _coding(PROVENANCE_AGENT, "informant", "Informant"), "who": builder.subject},
            ],
        }
    )
    builder.add(provenance)
    return Bundle.model_validate(
        {
            "type": "collection",
            "timestamp": recorded.isoformat(),
            "entry": [
                BundleEntry.model_validate({"fullUrl": ref, "resource": res}) for ref, res in builder.entries
            ],
        }
    )
