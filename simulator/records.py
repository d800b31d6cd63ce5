"""generateContent's record: what the patient's lines in the request say, written in English.

A small rule-based reader, not a language model: it knows a lexicon of medications,
allergens, reactions and complaints (English and Spanish), reads doses and frequencies, and
lets a later statement win over an earlier one (a corrected dose, a revised severity).
Assistant lines are ignored, so a dose the assistant misheard never reaches the record.
"""

import re
from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]

_ROLE = re.compile(r"^\s*(PATIENT|USER|ASSISTANT|MODEL)\s*:\s*(.*)$", re.IGNORECASE)

NUMBERS = {
    "one": 1, "a": 1, "an": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "twenty": 20,
    "uno": 1, "una": 1, "un": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6,
    "siete": 7, "ocho": 8, "nueve": 9, "diez": 10, "doce": 12, "veinte": 20,
}  # fmt: skip

MEDICATIONS = {
    "propranolol": "propranolol",
    "lisinopril": "lisinopril",
    "metformina?": "metformin",
    "atorvastatina?": "atorvastatin",
    "ibuprofeno?": "ibuprofen",
    "amoxicilina|amoxicillin": "amoxicillin",
    "aspirina?": "aspirin",
    "levothyroxine|levotiroxina": "levothyroxine",
    "omeprazole?": "omeprazole",
    "amlodipine|amlodipino": "amlodipine",
    "sertralina|sertraline": "sertraline",
    "albuterol|salbutamol": "albuterol",
    "insulina?": "insulin",
    "acetaminophen|paracetamol": "acetaminophen",
    "losartan|losartán": "losartan",
    "warfarina?": "warfarin",
}
ALLERGENS = {
    "penicillin|penicilina": "penicillin",
    "sulfa|sulfamidas": "sulfa drugs",
    "peanuts?|cacahuetes?|maní": "peanuts",
    "shellfish|mariscos": "shellfish",
    "latex|látex": "latex",
    "bee stings?|picaduras? de abeja": "bee stings",
    "codeine|codeína": "codeine",
    **MEDICATIONS,
}
REACTIONS = {
    "anaphylaxis|anafilaxia": "anaphylaxis",
    "throat (?:swelling|closing)|throat swell\\w*|swelling of (?:my|the) throat|"
    "hinchazón de (?:la )?garganta|se me cierra la garganta": "throat swelling",
    "hives|urticaria": "hives",
    "rash|sarpullido|erupción": "rash",
    "itching|itchy|picazón|comezón": "itching",
    "(?:trouble|difficulty) breathing|can't breathe|dificultad para respirar": "difficulty breathing",
    "vomiting|vómitos?": "vomiting",
}
COMPLAINTS = {
    "sore throat|dolor de garganta": "sore throat",
    "headaches?|dolor(?:es)? de cabeza|migrañas?": "headache",
    "chest pain|dolor (?:en el|de) pecho": "chest pain",
    "back pain|dolor de espalda|lower back": "back pain",
    "stomach pain|abdominal pain|dolor de (?:estómago|barriga)": "abdominal pain",
    "cough|tos": "cough",
    "fever|fiebre": "fever",
    "dizziness|dizzy|mareos?": "dizziness",
    "shortness of breath|falta de aire": "shortness of breath",
    "follow-up|seguimiento": "follow-up visit",
}
# A reason for the visit, not a symptom.
VISIT = "follow-up visit"
CONDITIONS = {
    "blood pressure|hypertension|presión (?:arterial|alta)|hipertensión": "high blood pressure",
    "diabetes": "diabetes",
    "asthma|asma": "asthma",
    "cholesterol|colesterol": "high cholesterol",
}
FREQUENCIES = {
    "once a day|once daily|every morning|una vez al día|cada mañana": "once daily",
    "twice a day|twice daily|two times a day|dos veces al día": "twice daily",
    "three times a day|tres veces al día": "three times daily",
    "at bedtime|before bed|at night|antes de dormir|por la noche": "at bedtime",
    "as needed|when i need it|cuando lo necesito": "as needed",
}
UNITS = {
    "milligrams?|mg|miligramos?": "mg",
    "micrograms?|mcg|microgramos?": "mcg",
    "units?|unidades": "units",
    "puffs?|inhalaciones": "puffs",
}
DURATION_UNITS = {"day|día|dia": "day", "week|semana": "week", "month|mes": "month", "year|año": "year"}

_ALLERGY_CUE = re.compile(r"allerg|alérgic|alergi|epipen|epi-pen", re.IGNORECASE)
_NO_ALLERGIES = re.compile(
    r"\bno (?:known )?(?:drug )?allergies\b|\bdon'?t have any allergies\b|\bnot allergic to anything\b|"
    r"\bno tengo (?:ninguna )?alergias?\b|\bninguna alergia\b|\bsin alergias\b",
    re.IGNORECASE,
)
_BARE_NONE = re.compile(
    r"^\W*(?:no|none|nope|ninguna|nada)(?:\W+(?:no|none|ninguna|nada|thanks|gracias))*\W*$", re.I
)
_NAME = re.compile(
    r"(?i:my name is|i'm|i am|me llamo|mi nombre es)\s+"
    r"([A-ZÁÉÍÓÚÑ][a-záéíóúñ]+(?:\s+[A-ZÁÉÍÓÚÑ][a-záéíóúñ]+)+)"
)
_SEVERITY_SCORE = re.compile(
    r"\b(\w+|\d+)\s+(?:out of ten|out of 10|de diez|de 10)\b|\b(\d+)\s*/\s*10\b", re.I
)
_NUMBER = r"(\d+(?:\.\d+)?|" + "|".join(NUMBERS) + ")"


@dataclass
class _Record:
    name: str | None = None
    complaints: list[str] = field(default_factory=list)
    chief: JsonObject | None = None
    medications: dict[str, JsonObject] = field(default_factory=dict)
    last_medication: str | None = None
    allergies: dict[str, JsonObject] = field(default_factory=dict)
    allergies_reviewed: bool = False
    conditions: list[str] = field(default_factory=list)


def patient_lines(text: str) -> list[tuple[str, str]]:
    """(role, text) per line; text with no role labels is all the patient's."""
    lines = [line for line in text.splitlines() if line.strip()]
    labelled = [_ROLE.match(line) for line in lines]
    if not any(labelled):
        return [("patient", line.strip()) for line in lines]
    out: list[tuple[str, str]] = []
    for line, match in zip(lines, labelled, strict=True):
        if match:
            role = "patient" if match.group(1).upper() in ("PATIENT", "USER") else "assistant"
            out.append((role, match.group(2).strip()))
        elif out:
            out[-1] = (out[-1][0], f"{out[-1][1]} {line.strip()}")
    return out


def derive_record(text: str) -> JsonObject:
    record = _Record()
    asked_allergies = False
    for role, line in patient_lines(text):
        if role == "assistant":
            asked_allergies = bool(re.search(r"allerg|alergi", line, re.IGNORECASE))
            continue
        _read_line(record, line, after_allergy_question=asked_allergies)
        asked_allergies = False
    return _as_json(record)


def _read_line(record: _Record, line: str, *, after_allergy_question: bool) -> None:
    if (match := _NAME.search(line)) is not None:
        record.name = match.group(1)
    no_allergies = bool(_NO_ALLERGIES.search(line))
    if no_allergies or (after_allergy_question and _BARE_NONE.match(line)):
        record.allergies_reviewed = True
    found_reactions = _found(REACTIONS, line)
    if not no_allergies and (_ALLERGY_CUE.search(line) or found_reactions):
        _read_allergies(record, line, found_reactions)
        return
    for condition in _found(CONDITIONS, line):
        if condition not in record.conditions:
            record.conditions.append(condition)
    _read_complaints(record, line)
    _read_medications(record, line)


def _read_complaints(record: _Record, line: str) -> None:
    complaints = _found(COMPLAINTS, line)
    for complaint in complaints:
        if complaint not in record.complaints and complaint != VISIT:
            record.complaints.append(complaint)
    if complaints and record.chief is None:
        record.chief = {"complaint": complaints[0]}
        if (duration := _duration(line)) is not None:
            record.chief["duration"] = duration
    if record.chief is None:
        return
    if (score := _SEVERITY_SCORE.search(line)) is not None:
        value = _number(score.group(1) or score.group(3))
        if value is not None:
            record.chief["severity"] = f"{value:g}/10"
    if re.search(r"\bgradual(?:ly)?\b|poco a poco", line, re.IGNORECASE):
        record.chief["onset"] = "gradual"
    elif re.search(r"\bsudden(?:ly)?\b|de repente", line, re.IGNORECASE):
        record.chief["onset"] = "sudden"


def _read_medications(record: _Record, line: str) -> None:
    mentions = _mentions(MEDICATIONS, line)
    if not mentions:
        # "I meant 20 milligrams, not 40": a dose with no name corrects the last medication.
        if record.last_medication is not None and (_dose(line) or _frequency(line)):
            _update_medication(record.medications[record.last_medication], line)
        return
    for index, (start, name) in enumerate(mentions):
        end = mentions[index + 1][0] if index + 1 < len(mentions) else len(line)
        medication = record.medications.setdefault(name, {"name": name})
        _update_medication(medication, line[start:end])
        record.last_medication = name


def _update_medication(medication: JsonObject, text: str) -> None:
    if (dose := _dose(text)) is not None:
        medication["dose"] = dose
    if (frequency := _frequency(text)) is not None:
        medication["frequency"] = frequency


def _read_allergies(record: _Record, line: str, reactions: list[str]) -> None:
    allergens = [name for _, name in _mentions(ALLERGENS, line)]
    if not allergens and reactions and record.allergies:
        # "It also gives me hives": more about the allergy just named.
        allergens = [list(record.allergies)[-1]]
    for allergen in allergens:
        record.allergies_reviewed = True
        allergy = record.allergies.setdefault(
            allergen, {"allergen": allergen, "reaction": [], "severity": "moderate"}
        )
        allergy["reaction"] += [r for r in reactions if r not in allergy["reaction"]]
        severity = _allergy_severity(line, allergy["reaction"])
        if severity is not None:
            allergy["severity"] = severity
        emergency = allergy["severity"] == "life-threatening" or re.search(r"epi-?pen", line, re.I)
        allergy["requires_emergency_treatment"] = bool(emergency)


def _allergy_severity(line: str, reactions: list[str]) -> str | None:
    if {"anaphylaxis", "throat swelling", "difficulty breathing"} & set(reactions) or re.search(
        r"life-threatening|epi-?pen|mortal", line, re.IGNORECASE
    ):
        return "life-threatening"
    if re.search(r"\bsevere(?:ly)?\b|\bserious\b|\bgrave\b", line, re.IGNORECASE):
        return "serious"
    if re.search(r"\bmoderate\b|\bmoderad[ao]\b", line, re.IGNORECASE):
        return "moderate"
    if re.search(r"\bmild\b|\bleve\b", line, re.IGNORECASE):
        return "mild"
    return None


def _found(lexicon: dict[str, str], line: str) -> list[str]:
    names: list[str] = []
    for _, name in _mentions(lexicon, line):
        if name not in names:
            names.append(name)
    return names


def _mentions(lexicon: dict[str, str], line: str) -> list[tuple[int, str]]:
    hits = [
        (match.start(), name)
        for pattern, name in lexicon.items()
        for match in re.finditer(rf"\b(?:{pattern})\b", line, re.IGNORECASE)
    ]
    return sorted(hits)


def _number(word: str | None) -> float | None:
    if word is None:
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", word):
        return float(word)
    value = NUMBERS.get(word.lower())
    return None if value is None else float(value)


def _dose(text: str) -> str | None:
    for match in re.finditer(rf"(\bnot\s+|\bno\s+)?{_NUMBER}\s*({'|'.join(UNITS)})\b", text, re.I):
        if match.group(1):
            continue  # "not 40 milligrams" names the wrong dose
        amount = _number(match.group(2))
        unit = next(u for pattern, u in UNITS.items() if re.fullmatch(pattern, match.group(3), re.I))
        if amount is not None:
            return f"{amount:g} {unit}"
    return None


def _frequency(text: str) -> str | None:
    every = re.search(rf"\b(?:every|cada)\s+{_NUMBER}\s+(?:hours?|horas?)\b", text, re.IGNORECASE)
    if every is not None and (hours := _number(every.group(1))) is not None:
        return f"every {hours:g} hours"
    found = _found(FREQUENCIES, text)
    return found[0] if found else None


def _duration(text: str) -> str | None:
    units = "|".join(DURATION_UNITS)
    match = re.search(
        rf"\b(?:for|desde hace|hace|durante)\s+(?:about\s+|around\s+|the (?:past|last)\s+|unos?\s+)?"
        rf"{_NUMBER}\s+({units})(?:s|es)?\b",
        text,
        re.IGNORECASE,
    )
    if match is None:
        return None
    amount = _number(match.group(1))
    unit = next(u for pattern, u in DURATION_UNITS.items() if re.fullmatch(pattern, match.group(2), re.I))
    if amount is None:
        return None
    return f"{amount:g} {unit}" + ("" if amount == 1 else "s")


def _as_json(record: _Record) -> JsonObject:
    out: JsonObject = {
        "medications": list(record.medications.values()),
        "allergies": list(record.allergies.values()),
        "allergies_reviewed": record.allergies_reviewed,
    }
    if record.name:
        out["patient_info"] = {"name": record.name}
    if record.chief is not None:
        out["present_illness"] = {"chief_complaints": [record.chief], "symptoms": list(record.complaints)}
    if record.conditions:
        out["past_medical_history"] = {"conditions": list(record.conditions)}
    return out
