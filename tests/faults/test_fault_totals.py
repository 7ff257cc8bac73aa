"""The suite's size: the issue asks for at least 40 fault runs in `make test`."""

from __future__ import annotations

from tests.faults import test_arm_faults, test_probe_faults, test_storage_faults


def test_at_least_40_fault_runs_are_in_make_test() -> None:
    runs = (
        len(test_arm_faults.CASES) + len(test_arm_faults.RANDOM_CASES)
        + len(test_probe_faults.FAULTS) + len(test_probe_faults.OUTPUTS) + 2
        + len(test_storage_faults.IN_SCAN) + len(test_storage_faults.CLI)
    )  # fmt: skip
    assert runs >= 40
