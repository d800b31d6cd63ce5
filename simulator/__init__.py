"""A local stand-in for Google's Gemini Live and generateContent APIs, for the real SDK."""

from simulator.options import SessionOptions
from simulator.scenarios import Scenario, load_scenario, scenario_names
from simulator.server import RunningSimulator, SimulatorConfig, start_simulator

__all__ = [
    "RunningSimulator",
    "Scenario",
    "SessionOptions",
    "SimulatorConfig",
    "load_scenario",
    "scenario_names",
    "start_simulator",
]
