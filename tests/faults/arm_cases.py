"""The ARM fault cases: each operation a scan calls, failing alone in four ways, and seeded
random faults on every call. Data and one runner, shared by test_arm_faults.py and
pending_lead.py."""

from __future__ import annotations

from tests.armsim import Faults
from tests.armsim.faults import Chaos, Failure, Throttle
from tests.faults.rigs import HANG_SECONDS, ScanRig
from tests.faults.tally import Counts

__all__ = ["ARM_CASES", "KINDS", "RANDOM_CASES", "SCAN_OPERATIONS", "fault", "run_case"]

# Every operation a scan of the demo estate calls (test_arm_faults.py checks this against
# what a clean scan really calls).
SCAN_OPERATIONS = (
    "managedClusters.list",
    "virtualMachineScaleSets.listAll",
    "virtualMachineScaleSetVMs.list",
    "networkInterfaces.listVirtualMachineScaleSetNetworkInterfaces",
    "networkInterfaces.listAll",
    "networkSecurityGroups.listAll",
    "virtualNetworks.listAll",
    "loadBalancers.listAll",
    "natGateways.listAll",
    "serviceTags.list",
    "metrics.getBatch",
)
KINDS = ("500", "403", "429-storm", "timeout")
STORM = 10**6  # a 429 on every call, however many retries
ARM_CASES = [(op, kind) for op in SCAN_OPERATIONS for kind in KINDS]
RANDOM_CASES = [(rate, seed) for rate in (0.2, 0.5) for seed in (1, 2, 3)]


def fault(kind: str, operation: str) -> Faults:
    if kind == "500":
        return Faults(failures=[Failure(operation, 500)])
    if kind == "403":
        return Faults(
            failures=[
                Failure(
                    operation, 403, "AuthorizationFailed",
                    "The client does not have authorization to perform action over scope "
                    "(armsim injected).",
                )
            ]
        )  # fmt: skip
    if kind == "429-storm":  # no Retry-After: the client's own backoff, kept short here
        return Faults(throttles=[Throttle(operation, first=STORM, retry_after=0)])
    if kind == "timeout":  # answers later than the client's read timeout, every time
        return Faults(latency_by_operation={operation: HANG_SECONDS})
    raise ValueError(kind)


def run_case(case: tuple[object, object], rig: ScanRig) -> Counts:
    """One ARM case ((operation, kind) or (rate, seed)) on `rig`."""
    a, b = case
    if isinstance(a, str) and isinstance(b, str):
        return rig.run("arm", f"{a} {b}", fault(b, a))
    if isinstance(a, float) and isinstance(b, int):
        return rig.run("random", f"{int(a * 100)}% of calls, seed {b}", Faults(chaos=Chaos(a, b)))
    raise ValueError(case)
