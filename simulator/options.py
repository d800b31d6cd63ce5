"""Per-session behaviour (pace, voice detection, faults) and the API-key grammar that sets it."""

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class SessionOptions(BaseModel):
    """Only the fields a layer sets count when layers are merged (see `layered`)."""

    model_config = ConfigDict(extra="forbid")

    time_scale: float = Field(1.0, gt=0, le=100)
    vad_threshold: float = Field(500.0, gt=0, description="RMS of a 20 ms PCM16 frame")
    silence_ms: int = Field(500, ge=40, le=10_000)
    reject_key: bool = False
    goaway_after: float | None = Field(None, ge=0)
    goaway_time_left: float = Field(5.0, ge=0)
    drop_after: float | None = Field(None, ge=0)
    slow_reply: float = Field(0.0, ge=0)
    bad_extraction: bool = False
    cancel_tool_call: bool = False
    # The model goes silent after a patient turn (after an interrupted reply, or on the Nth
    # patient turn) until a clientContent turn nudges it; `ignore_nudge` keeps it silent.
    freeze_after_interrupt: bool = False
    freeze_on_turn: int | None = Field(None, ge=1)
    ignore_nudge: bool = False
    # generateContent answers 503 UNAVAILABLE this many times per key before it succeeds.
    unavailable_extractions: int = Field(0, ge=0, le=100)
    # The patient's input transcription follows the function call it led to.
    late_transcription: bool = False
    # Benchmarks: audio comes straight back as model audio, nothing else is said (simulator/echo.py).
    echo: bool = False
    # In echo mode, a resumption handle after every this many seconds of audio received, as the
    # conversation mode gives one at each turn (only to clients that asked for resumption).
    echo_handle_every: float | None = Field(None, gt=0, le=3600)

    def layered(self, override: "SessionOptions") -> "SessionOptions":
        return self.model_copy(update=override.model_dump(exclude_unset=True))


class InvalidSimulatorKey(ValueError):
    pass


@dataclass(frozen=True)
class KeyChoice:
    scenario: str | None
    options: SessionOptions
    # `bad-key` and `invalid...` keys are refused whatever the options say.
    denied: bool = False


KEY_PREFIX = "sim:"


def parse_options(text: str) -> SessionOptions:
    """Parse `name=value;flag;...` (a bare name means true)."""
    values: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair.strip():
            continue
        name, sep, value = pair.partition("=")
        values[name.strip()] = value.strip() if sep else "true"
    try:
        return SessionOptions.model_validate(values)
    except ValidationError as exc:
        raise InvalidSimulatorKey(_describe(exc)) from exc


def parse_api_key(key: str | None) -> KeyChoice:
    if not key or key == "bad-key" or key.startswith("invalid"):
        return KeyChoice(scenario=None, options=SessionOptions(), denied=True)
    if not key.startswith(KEY_PREFIX):
        return KeyChoice(scenario=None, options=SessionOptions())
    scenario, _, rest = key[len(KEY_PREFIX) :].partition(";")
    return KeyChoice(scenario=scenario.strip() or None, options=parse_options(rest))


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        name = ".".join(str(part) for part in error["loc"])
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown option {name!r}")
        else:
            problems.append(f"bad value for {name!r}: {error['msg']}")
    return "; ".join(problems)
