"""Scripted intake conversations, one JSON file each in `scenarios/`."""

from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from simulator.options import SessionOptions

SCENARIO_DIR = Path(__file__).with_name("scenarios")
DEFAULT_SCENARIO = "simple_visit"


class Exchange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patient: str = Field(min_length=1)
    assistant: str = Field(min_length=1)
    # The patient's next utterance is meant to be spoken over this (long) reply.
    barge_in: bool = False
    # The model calls flag_emergency with these arguments (reason, symptoms) on hearing the
    # patient's words, before its reply; only when the client declared that function.
    emergency: dict[str, Any] | None = None


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str
    # Spoken when the client asks the model to start (clientContent turnComplete) before
    # the patient has said anything.
    opening: str = Field(min_length=1)
    exchanges: list[Exchange] = Field(min_length=1)
    confirmation: str = Field(min_length=1)
    closing: str = Field(min_length=1)
    tool_name: str = "complete_intake"
    tool_args: dict[str, Any] = Field(default_factory=dict)
    # Shaped like schemas.MedicalIntake; the tests hold the files to that model.
    record: dict[str, Any]
    options: SessionOptions = Field(default_factory=SessionOptions)

    @field_validator("exchanges")
    @classmethod
    def _ends_with_a_question(cls, exchanges: list[Exchange]) -> list[Exchange]:
        if not exchanges[-1].assistant.rstrip().endswith("?"):
            raise ValueError("the last reply must be a summary that asks for confirmation")
        return exchanges

    @property
    def patient_turns(self) -> list[str]:
        return [exchange.patient for exchange in self.exchanges] + [self.confirmation]


class UnknownScenario(LookupError):
    pass


def scenario_names() -> list[str]:
    return sorted(path.stem for path in SCENARIO_DIR.glob("*.json"))


@cache
def load_scenario(name: str) -> Scenario:
    path = SCENARIO_DIR / f"{name}.json"
    if name not in scenario_names():
        raise UnknownScenario(f"unknown scenario {name!r}; known: {', '.join(scenario_names())}")
    scenario = Scenario.model_validate_json(path.read_text(encoding="utf-8"))
    if scenario.name != name:
        raise ValueError(f"{path.name} names itself {scenario.name!r}")
    return scenario
