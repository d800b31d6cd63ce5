"""The FHIR R4 Bundle of each simulator scenario validates, resolves its references and keeps what matters."""

from datetime import UTC, datetime

import pytest
from fhir.resources.R4B.bundle import Bundle

from schemas import Allergy, FamilyHistory, MedicalIntake, PatientInfo, SocialHistory
from services.fhir import intake_bundle
from tests.storage_support import SCENARIOS, scenario_record

RECORDED = datetime(2026, 5, 4, 10, 30, tzinfo=UTC)
SCENARIO_NAMES = sorted(path.stem for path in SCENARIOS.glob("*.json"))


def reparsed(record: MedicalIntake) -> Bundle:
    return Bundle.model_validate_json(intake_bundle(record, recorded=RECORDED, model="m").model_dump_json())


def of_type(bundle: Bundle, kind: str) -> list:
    return [entry.resource for entry in bundle.entry if entry.resource.get_resource_type() == kind]


def references(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [ref for value in node.values() for ref in references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in references(value)]
    return []


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_each_scenarios_bundle_validates_and_its_references_resolve_inside_it(name):
    bundle = reparsed(scenario_record(name))
    assert bundle.type == "collection"
    urls = {entry.fullUrl for entry in bundle.entry}
    assert set(references(bundle.model_dump(mode="json"))) <= urls
    (patient,) = of_type(bundle, "Patient")
    assert patient.name[0].text == scenario_record(name).patient_info.name
    (provenance,) = of_type(bundle, "Provenance")
    assert {target.reference for target in provenance.target} == urls - {
        e.fullUrl for e in bundle.entry if e.resource.get_resource_type() == "Provenance"
    }
    assert provenance.activity.text == "Patient interview with an AI assistant"
    complaints = [
        c for c in of_type(bundle, "Condition") if c.category[0].coding[0].code == "encounter-diagnosis"
    ]
    assert [c.code.text for c in complaints] == [
        c.complaint for c in scenario_record(name).present_illness.chief_complaints
    ]


def test_the_life_threatening_allergy_is_high_criticality_with_its_reactions():
    bundle = reparsed(scenario_record("medications_allergy"))
    allergies = {a.code.text: a for a in of_type(bundle, "AllergyIntolerance")}
    penicillin, sulfa = allergies["penicillin"], allergies["sulfa drugs"]
    assert penicillin.criticality == "high" and penicillin.reaction[0].severity == "severe"
    assert [m.text for m in penicillin.reaction[0].manifestation] == [
        "anaphylaxis",
        "throat swelling",
        "hives",
    ]
    assert sulfa.criticality == "low" and sulfa.reaction[0].severity == "mild"
    assert penicillin.verificationStatus.coding[0].code == "unconfirmed"


def test_medications_and_past_conditions_map_to_their_resources():
    bundle = reparsed(scenario_record("medications_allergy"))
    statements = of_type(bundle, "MedicationStatement")
    lisinopril = statements[0]
    assert lisinopril.status == "active" and lisinopril.medicationCodeableConcept.text == "lisinopril"
    assert lisinopril.dosage[0].text == "10 mg, once daily, oral"
    assert lisinopril.dosage[0].route.text == "oral" and lisinopril.dosage[0].timing.code.text == "once daily"
    assert lisinopril.reasonCode is None  # the patient did not say what it is for
    problems = [
        c.code.text
        for c in of_type(bundle, "Condition")
        if c.category[0].coding[0].code == "problem-list-item"
    ]
    assert problems == ["high blood pressure", "diabetes"]


def test_social_and_family_history_and_contact_details():
    record = MedicalIntake(
        patient_info=PatientInfo(
            name="Ann Lee", date_of_birth="1970-02-03", phone="+12125550123", email="a@b.org"
        ),
        family_history=FamilyHistory(conditions=["mother: breast cancer"]),
        social_history=SocialHistory(smoking="never smoked", occupation="teacher"),
    )
    bundle = reparsed(record)
    (patient,) = of_type(bundle, "Patient")
    assert patient.birthDate.isoformat() == "1970-02-03"
    assert [(t.system, t.value) for t in patient.telecom] == [("phone", "+12125550123"), ("email", "a@b.org")]
    (family,) = of_type(bundle, "FamilyMemberHistory")
    assert (
        family.condition[0].code.text == "mother: breast cancer"
        and family.relationship.coding[0].code == "FAMMEMB"
    )
    observations = {o.code.coding[0].code: o.valueString for o in of_type(bundle, "Observation")}
    assert observations == {"72166-2": "never smoked", "11341-5": "teacher"}


def test_unknown_values_stay_out_rather_than_being_invented():
    bundle = reparsed(
        MedicalIntake(
            patient_info=PatientInfo(name="Bo", date_of_birth="sometime in spring"),
            allergies=[Allergy(allergen="dust", severity="not sure")],
        )
    )
    (patient,) = of_type(bundle, "Patient")
    assert patient.birthDate is None and patient.telecom is None
    (allergy,) = of_type(bundle, "AllergyIntolerance")
    assert allergy.criticality is None and allergy.reaction is None
    assert of_type(bundle, "Observation") == [] and of_type(bundle, "MedicationStatement") == []
