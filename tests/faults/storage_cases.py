"""The storage fault cases (Azurite stopped or killed mid-scan, in-process and through the
CLI) and their runners, shared by test_storage_faults.py and pending_lead.py."""

from __future__ import annotations

from tests.faults.azurite_disk import DiskAzurite
from tests.faults.outage import Outage, cli_scan, split_account
from tests.faults.rigs import Faulted, ScanRig, TriggerFaults
from tests.faults.tally import Counts

__all__ = ["CLI_CASES", "IN_SCAN_CASES", "run_cli_case", "run_in_scan_case"]

# (name, how, before which cluster write (-1: the run row), back after seconds or None)
IN_SCAN_CASES = [
    ("stopped before the first cluster write, back after 1 s", "stop", 0, 1.0),
    ("killed before the 4th cluster write, back after the run", "kill", 3, None),
    ("stopped before the run row, back after the run", "stop", -1, None),
]
# (name, how, back after seconds or None): the outage starts while ARM is read
CLI_CASES = [
    ("CLI: tables stopped while ARM is read, back after the run", "stop", None),
    ("CLI: tables killed while ARM is read, back after 1 s", "kill", 1.0),
]


def run_in_scan_case(
    rig: ScanRig, azurite: DiskAzurite, case: tuple[str, str, int, float | None]
) -> Counts:
    name, how, write, back = case
    outage = Outage(azurite, how, back)
    counts = rig.run("storage", name, store_hook=outage.at_write(write), after_fault=outage.end)
    if not outage.fired:
        raise RuntimeError(f"{name}: the scan never reached write {write}")
    return counts


def run_cli_case(
    rig: ScanRig, azurite: DiskAzurite, queues: str, case: tuple[str, str, float | None]
) -> Counts:
    """`queues`: a connection string whose queue endpoint the CLI uses (it stays up)."""
    name, how, back = case
    outage = Outage(azurite, how, back)
    account = split_account(azurite.connection_string, queues)

    def faulted(*_: object) -> Faulted:
        rig.sim.faults = TriggerFaults(operation="serviceTags.list", action=outage)
        try:
            return cli_scan(rig.sim, account, rig.api_server_names)
        finally:
            rig.sim.faults = TriggerFaults()

    # the CLI writes the default tables ("tunnelwatch*"): the run drops and seeds them first
    counts = rig.run("cli", name, faulted=faulted, after_fault=outage.end, prefix="tunnelwatch")
    if not outage.fired:
        raise RuntimeError(f"{name}: the scan never read the service tags")
    return counts
