"""Table Storage going away in the middle of a scan: Azurite stopped or killed (SIGKILL) at a
chosen write, back on the same ports a second later or only after the run; the same through
`tunnelwatch scan --record --json`. The run may end failed; it must not crash, and the stored
findings must come out as after a fault-free run (snapshot.py).
"""

from __future__ import annotations

import pytest

from tests.faults.azurite_disk import DiskAzurite
from tests.faults.rigs import ScanRig
from tests.faults.storage_cases import CLI_CASES, IN_SCAN_CASES, run_cli_case, run_in_scan_case

IN_SCAN = IN_SCAN_CASES
CLI = CLI_CASES


@pytest.mark.parametrize("case", IN_SCAN, ids=[c[0] for c in IN_SCAN])
def test_storage_outage_during_the_writes(
    storage_rig: ScanRig, disk_azurite: DiskAzurite, case: tuple[str, str, int, float | None]
) -> None:
    counts = run_in_scan_case(storage_rig, disk_azurite, case)
    assert counts.bad == 0, counts.explain()


@pytest.mark.parametrize("case", CLI, ids=[c[0] for c in CLI])
def test_cli_scan_with_storage_outage(
    storage_rig: ScanRig,
    disk_azurite: DiskAzurite,
    azurite: str,
    case: tuple[str, str, float | None],
) -> None:
    """The CLI's queue stays on the other Azurite: see outage.split_account."""
    counts = run_cli_case(storage_rig, disk_azurite, azurite, case)
    assert counts.bad == 0, counts.explain()
