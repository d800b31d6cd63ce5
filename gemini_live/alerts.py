"""What the session tells the clinic: an emergency flagged, an intake saved. The notifier implements it."""

from dataclasses import dataclass, field
from typing import Literal, Protocol

from schemas import MedicalIntake

EmergencySource = Literal["model", "server"]


@dataclass(frozen=True)
class Emergency:
    source: EmergencySource
    reason: str
    symptoms: list[str] = field(default_factory=list)


class ClinicAlerts(Protocol):
    def emergency(self, intake_id: str, emergency: Emergency, record: MedicalIntake | None) -> None: ...

    def completed(self, intake_id: str, record: MedicalIntake, emergency: Emergency | None) -> None: ...


class NoAlerts:
    def emergency(self, intake_id: str, emergency: Emergency, record: MedicalIntake | None) -> None:
        pass

    def completed(self, intake_id: str, record: MedicalIntake, emergency: Emergency | None) -> None:
        pass
