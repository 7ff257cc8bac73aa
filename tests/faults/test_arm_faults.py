"""Every ARM list and read the scan makes, failing alone: 500, 403, a 429 storm, a timeout.
Then random faults on every call at 20% and 50% (seeded: the same calls fail on every run).

Each run: the rows of a clean scan of the demo estate, the faulted scan, a clean scan again,
on tables of their own; the stored findings must match a fault-free run (snapshot.py says how
each count is taken). The runs go in parallel up front (conftest `arm_results`); the counts
of every run are printed at the end of the session.
"""

from __future__ import annotations

import pytest

from tests.faults.arm_cases import ARM_CASES, RANDOM_CASES, SCAN_OPERATIONS
from tests.faults.rigs import SUB, T0, ScanRig
from tests.faults.tally import Counts

CASES = ARM_CASES


@pytest.mark.parametrize("case", CASES, ids=[f"{o}-{k}" for o, k in CASES])
def test_one_arm_operation_failing(
    arm_results: dict[tuple[object, object], Counts], case: tuple[str, str]
) -> None:
    counts = arm_results[case]
    assert counts.bad == 0, counts.explain()


@pytest.mark.parametrize("case", RANDOM_CASES, ids=[f"{r}-seed{s}" for r, s in RANDOM_CASES])
def test_random_faults_on_every_call(
    arm_results: dict[tuple[object, object], Counts], case: tuple[float, int]
) -> None:
    counts = arm_results[case]
    assert counts.bad == 0, counts.explain()


def test_the_cases_are_every_call_a_scan_makes(scan_rig: ScanRig) -> None:
    store, queue = scan_rig.fresh()
    scan_rig.sim.reset_calls()
    scan_rig.scan(store, queue, T0)
    called = {op for op in scan_rig.sim.calls if not op.startswith("runCommand")}
    assert called == set(SCAN_OPERATIONS), f"scan of {SUB}: add the new calls to arm_cases.py"
