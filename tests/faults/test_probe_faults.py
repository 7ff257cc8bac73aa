"""The probe worker under run-command faults: 409 (busy, stopped), 500, a 429 storm, 403, a
failed or endless operation, polls that fail or time out, output that is garbage, cut or
empty, and an inventory outage. A fault may delay a verdict (retry, poison, inconclusive),
never close what the clean triage found open (tests/faults/probe_rig.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tests.armsim import Faults
from tests.armsim.faults import Failure, Throttle
from tests.faults.probe_rig import ProbeRig
from tests.faults.rigs import HANG_SECONDS

RUN = "virtualMachineScaleSetVMs.runCommand"
STORM = 10**6


def _fail(op: str, status: int, code: str, message: str = "armsim injected") -> Faults:
    return Faults(failures=[Failure(op, status, code, message)])


FAULTS: dict[str, Faults] = {
    "runCommand 409 Conflict": _fail(
        RUN, 409, "Conflict", "Run command extension execution is in progress."
    ),
    "runCommand 409 OperationNotAllowed": _fail(RUN, 409, "OperationNotAllowed", "VM stopped"),
    "runCommand 500": _fail(RUN, 500, "InternalServerError"),
    "runCommand 429 storm": Faults(throttles=[Throttle(RUN, first=STORM, retry_after=0)]),
    "runCommand 403": _fail(RUN, 403, "AuthorizationFailed", "no permission (armsim injected)"),
    "status poll 500": _fail("runCommand.status", 500, "InternalServerError"),
    "status poll timeout": Faults(latency_by_operation={"runCommand.status": HANG_SECONDS}),
    "inventory 500": _fail("managedClusters.list", 500, "InternalServerError"),
}

OUTPUTS: dict[str, Callable[[str], str]] = {
    "output garbage": lambda s: "\x00\x01 not the probe's output\n" * 20,
    "output empty": lambda s: "",
    "output cut in half": lambda s: s[: len(s) // 2],
    "output cut to its first line": lambda s: s.split("\n", 1)[0],
}


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_run_command_fault(probe_rig: ProbeRig, name: str) -> None:
    counts = probe_rig.run(name, FAULTS[name])
    assert counts.bad == 0, counts.explain()


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_bad_node_output(probe_rig: ProbeRig, name: str) -> None:
    def on() -> None:
        probe_rig.tamper.transform = OUTPUTS[name]

    def off() -> None:
        probe_rig.tamper.transform = None

    counts = probe_rig.run(name, before=on, after=off)
    assert counts.bad == 0, counts.explain()


def test_the_operation_fails(probe_rig: ProbeRig) -> None:
    def on() -> None:
        probe_rig.tamper.fail = True

    def off() -> None:
        probe_rig.tamper.fail = False

    counts = probe_rig.run("run command operation Failed", before=on, after=off)
    assert counts.bad == 0, counts.explain()


def test_the_command_outlives_the_worker_timeout(probe_rig: ProbeRig) -> None:
    gate = threading.Event()
    nodes = probe_rig.tamper.nodes

    def on() -> None:  # every node's command waits for the gate
        nodes.gate.update({k: gate for k in nodes.addresses})

    def off() -> None:
        gate.set()
        nodes.gate.clear()

    counts = probe_rig.run("run command outlives the worker's timeout", before=on, after=off)
    assert counts.bad == 0, counts.explain()
