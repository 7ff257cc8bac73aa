"""Fixtures of the fault-injection suite, and the table of counts printed after the session."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial

import pytest

from tests.armsim import SCENARIOS, ArmSimulator, load_estate
from tests.armsim.scripted import ScriptedNodes, addresses_of
from tests.azurite import AzuriteUnavailable, azurite  # noqa: F401
from tests.faults.arm_cases import run_case
from tests.faults.azurite_disk import DiskAzurite
from tests.faults.probe_rig import NodeTamper, ProbeRig
from tests.faults.rigs import ScanRig, run_parallel
from tests.faults.tally import TALLY, Counts
from tests.skips import cannot_run


@pytest.fixture(scope="session")
def node_tamper() -> NodeTamper:
    return NodeTamper(ScriptedNodes(addresses_of(load_estate(SCENARIOS / "demo.json"))))


@pytest.fixture(scope="session")
def fault_sim(node_tamper: NodeTamper) -> Iterator[ArmSimulator]:
    """One simulator for every fault run (faults are swapped per run); scripted nodes answer
    run commands."""
    with ArmSimulator(load_estate(SCENARIOS / "demo.json"), executor=node_tamper) as sim:
        yield sim


@pytest.fixture(scope="session")
def scan_rig(fault_sim: ArmSimulator, azurite: str) -> ScanRig:  # noqa: F811
    return ScanRig(fault_sim, azurite)


@pytest.fixture(scope="session")
def probe_rig(fault_sim: ArmSimulator, node_tamper: NodeTamper, azurite: str) -> ProbeRig:  # noqa: F811
    return ProbeRig(fault_sim, node_tamper, azurite)


@pytest.fixture(scope="session")
def disk_azurite() -> Iterator[DiskAzurite]:
    """An Azurite of the storage-fault runs alone: they stop, kill and restart it."""
    try:
        az = DiskAzurite()
        az.start()
    except AzuriteUnavailable as exc:
        cannot_run(f"needs Azurite (make test installs it from npm): {exc}")
    try:
        yield az
    finally:
        az.close()


@pytest.fixture(scope="session")
def storage_rig(fault_sim: ArmSimulator, disk_azurite: DiskAzurite) -> ScanRig:
    return ScanRig(fault_sim, disk_azurite.connection_string)


WORKERS = 3  # ARM fault runs at once, each on a simulator of its own (they mostly wait)


@pytest.fixture(scope="session")
def arm_results(
    request: pytest.FixtureRequest,
    scan_rig: ScanRig,
    azurite: str,  # noqa: F811
) -> Iterator[dict[tuple[object, object], Counts]]:
    """Every selected ARM case of the session (tests taking this fixture and a `case`), run
    up front in parallel; each test then reads its own counts."""
    cases = {
        item.callspec.params["case"]
        for item in request.session.items
        if "arm_results" in getattr(item, "fixturenames", ()) and hasattr(item, "callspec")
    }
    with ExitStack() as stack:
        sims = [
            stack.enter_context(ArmSimulator(load_estate(SCENARIOS / "demo.json")))
            for _ in range(WORKERS - 1)
        ]
        rigs = [scan_rig, *(ScanRig(sim, azurite) for sim in sims)]
        yield run_parallel({case: partial(run_case, case) for case in cases}, rigs)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = TALLY.lines()
    if not lines:
        return
    terminalreporter.section("fault injection: stored findings vs a fault-free run")
    for line in lines:
        terminalreporter.write_line(line)
