"""An HTTPS ARM simulator the real Azure SDK clients talk to (tests only, not shipped).

    from tests.armsim import ArmSimulator, load_estate
    with ArmSimulator(load_estate("tests/armsim_scenarios/demo.json")) as sim:
        ...  # sim.endpoint, sim.ca_path, sim.credential(), sim.calls

See tests/armsim/README.md for the scenario format and the simulator's options.
"""

from __future__ import annotations

from pathlib import Path

from tests.armsim.build import build_estate
from tests.armsim.credential import StaticTokenCredential
from tests.armsim.estate import Estate
from tests.armsim.faults import Failure, Faults, Throttle
from tests.armsim.generate import generate_estate, generate_scenario
from tests.armsim.runcommand import Executor, RunCommandRecord, format_result
from tests.armsim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from tests.armsim.server import ArmSimulator, CallRecord

__all__ = [
    "ArmSimulator",
    "CallRecord",
    "Estate",
    "Executor",
    "Failure",
    "Faults",
    "RunCommandRecord",
    "Scenario",
    "ScenarioError",
    "StaticTokenCredential",
    "Throttle",
    "build_estate",
    "format_result",
    "generate_estate",
    "generate_scenario",
    "load_estate",
    "load_scenario",
    "parse_scenario",
]

SCENARIOS = Path(__file__).resolve().parent.parent / "armsim_scenarios"


def load_estate(path: str | Path) -> Estate:
    """Read, validate and expand a scenario file."""
    return build_estate(load_scenario(path))
