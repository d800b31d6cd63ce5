"""State shared by every connection: defaults, statistics, resumption handles, key memory."""

import re
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from simulator.agent import AgentState
from simulator.options import KeyChoice, SessionOptions, parse_api_key
from simulator.scenarios import Scenario, load_scenario, scenario_names
from simulator.stats import SimulatorStats

# Resumption handles and key memory are kept for the most recent entries only; a test run
# or a demo never comes near these, and a long-running simulator must not grow forever.
MAX_HANDLES = 2_000
MAX_REMEMBERED_KEYS = 500


@dataclass(frozen=True)
class Defaults:
    scenario: str
    options: SessionOptions


class ResumptionStore:
    def __init__(self, limit: int = MAX_HANDLES) -> None:
        self._limit = limit
        self._states: OrderedDict[str, AgentState] = OrderedDict()

    def save(self, state: AgentState) -> str:
        handle = f"sim-resume-{uuid.uuid4().hex}"
        self._states[handle] = state.model_copy(deep=True)
        while len(self._states) > self._limit:
            self._states.popitem(last=False)
        return handle

    def load(self, handle: str) -> AgentState | None:
        state = self._states.get(handle)
        return None if state is None else state.model_copy(deep=True)


class SimulatorHub:
    def __init__(self, defaults: Defaults) -> None:
        load_scenario(defaults.scenario)
        self.startup_defaults = defaults
        self.defaults = defaults
        self.stats = SimulatorStats()
        self.resumption = ResumptionStore()
        self._scenario_by_key: OrderedDict[str, str] = OrderedDict()
        self._unavailable_by_key: OrderedDict[str, int] = OrderedDict()

    def choose(self, api_key: str | None) -> tuple[KeyChoice, Scenario]:
        """Raises InvalidSimulatorKey or UnknownScenario for a `sim:` key that makes no sense."""
        choice = parse_api_key(api_key)
        return choice, load_scenario(choice.scenario or self.defaults.scenario)

    def options_for(self, scenario: Scenario, choice: KeyChoice) -> SessionOptions:
        # Later layers win, field by field: scenario, then simulator defaults, then the key.
        return (
            SessionOptions().layered(scenario.options).layered(self.defaults.options).layered(choice.options)
        )

    def remember_key(self, api_key: str | None, scenario: str) -> None:
        if not api_key:
            return
        self._scenario_by_key[api_key] = scenario
        self._scenario_by_key.move_to_end(api_key)
        while len(self._scenario_by_key) > MAX_REMEMBERED_KEYS:
            self._scenario_by_key.popitem(last=False)

    def take_unavailable(self, api_key: str | None, limit: int) -> bool:
        """True while this key has had fewer than `limit` 503 answers (the fault is spent after)."""
        key = api_key or ""
        used = self._unavailable_by_key.get(key, 0)
        if used >= limit:
            return False
        self._unavailable_by_key[key] = used + 1
        self._unavailable_by_key.move_to_end(key)
        while len(self._unavailable_by_key) > MAX_REMEMBERED_KEYS:
            self._unavailable_by_key.popitem(last=False)
        return True

    def scenario_for_extraction(
        self, api_key: str | None, choice: KeyChoice, text: str
    ) -> tuple[Scenario, str]:
        """The scenario a generateContent request is about, and how it was found."""
        if api_key and api_key in self._scenario_by_key:
            return load_scenario(self._scenario_by_key[api_key]), "live_session_key"
        if choice.scenario:
            return load_scenario(choice.scenario), "key"
        matched = match_scenario_by_text(text)
        if matched is not None:
            return matched, "text"
        return load_scenario(self.defaults.scenario), "default"

    def set_defaults(self, scenario: str | None, options: SessionOptions) -> Defaults:
        """Replaces the defaults: what is not given falls back to the start-up defaults."""
        base = self.startup_defaults
        name = scenario or base.scenario
        load_scenario(name)
        self.defaults = Defaults(scenario=name, options=base.options.layered(options))
        return self.defaults


def match_scenario_by_text(text: str) -> Scenario | None:
    haystack = _normalize(text)
    best: tuple[int, Scenario] | None = None
    for name in scenario_names():
        scenario = load_scenario(name)
        hits = sum(1 for turn in scenario.patient_turns if _normalize(turn) in haystack)
        if hits and (best is None or hits > best[0]):
            best = (hits, scenario)
    return None if best is None else best[1]


def _normalize(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())
