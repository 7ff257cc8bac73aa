"""Scripted nodes for the simulator's run command: answers in the probe script's real output
format, computed from the parameters it was sent (tests and benchmarks that need many nodes or
exact failure modes; the real script on namespace nodes is tests/lab/nodelab.py).

Kept in step with shared/probe/tunnelwatch-probe.sh: open kubelet ports are only counted; the
targets that are not open get netcat-framed `nc` lines when they fit the room left under 4,000
bytes, else one `ncgz` blob of as many as fit; one `reach` record sums it all up.
"""

from __future__ import annotations

import base64
import gzip
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.probe.output import targets_digest
from tests.armsim.estate import Estate

__all__ = ["ScriptedNodes", "addresses_of"]


def _blob(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode())).decode()


@dataclass
class ScriptedNodes:
    """Answers run commands like the probe script would, from the parameters it was sent.

    `unreachable`: node addresses whose kubelet port times out; `deep_rules`: the iptables
    dump a deep probe of a node (by address) returns; `gate`: instances whose command waits
    for the event (to make the next command on them a 409).
    """

    addresses: dict[tuple[str, str], str]  # (vmss lower, instance id) -> primary address
    unreachable: set[str] = field(default_factory=set)
    deep_rules: dict[str, str] = field(default_factory=dict)
    gate: dict[tuple[str, str], threading.Event] = field(default_factory=dict)
    stdout_override: str | None = None
    name_at_most: int | None = None
    calls: list[dict[str, str]] = field(default_factory=list)

    def __call__(
        self, sub: str, rg: str, vmss: str, iid: str, script: Sequence[str],
        params: Sequence[tuple[str, str]],
    ) -> tuple[str, str]:  # fmt: skip
        values = dict(params)
        self.calls.append(values)
        gate = self.gate.get((vmss.lower(), iid))
        if gate is not None:
            gate.wait(20)
        if self.stdout_override is not None:
            return self.stdout_override, ""
        me = self.addresses[(vmss.lower(), iid)]
        mode = values.get("TW_MODE", "-")
        records = [
            "tool\tnc=openbsd\ttimeout gzip base64 crictl iptables-legacy-save ip",
            f"host\t{vmss}{iid}",
            f"addr\teth0\t{me}/16",
            "os\tubuntu\t22.04\t5.15.0-1064-azure",
        ]
        host = values.get("TW_API_HOST", "")
        if host:
            records += [
                f"api\ttarget={host}:443",
                f"api\tConnection to {host} (20.61.14.2) 443 port [tcp/https] succeeded!",
                f"api\t{host}:443 exit=0",
            ]
        records.append("component\tkonnectivity-agent\tCONTAINER_RUNNING\t0\t0\t-\t-")
        targets = [t for t in values.get("TW_TARGETS", "").split(",") if t]
        if targets:
            used = sum(len(r) + 1 for r in records)
            records += _reach(targets, self.unreachable, used, self.name_at_most)
        if mode == "deep":
            accept = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n"
            records += [
                "ufw\tabsent",
                f"ruleset\tlegacy\t{_blob(self.deep_rules.get(me, accept))}",
            ]
        text = "\n".join([f"TWPROBE 1 BEGIN {mode}", *records, f"TWPROBE 1 END {len(records)}"])
        return text + "\n", ""


def _reach(
    targets: list[str], unreachable: set[str], used: int, limit: int | None = None
) -> list[str]:
    """The kubelet-port records the script prints for these targets, given `used` bytes."""
    failed = [
        [
            f"target={t}:10250",
            f"nc: connect to {t} port 10250 (tcp) timed out: Operation now in progress",
            f"{t}:10250 exit=1",
        ]
        for t in targets
        if t in unreachable
    ]
    room = 4000 - len("TWPROBE 1 BEGIN triage\n") - used - 24 - 64
    records: list[str] = []
    for lines in failed[:limit]:  # plain records while every target's lines fit
        more = [f"nc\t{x}" for x in lines]
        if sum(len(r) + 1 for r in records + more) > room:
            break
        records += more
    named = len(records) // 3
    if (
        named < len(failed) and limit is None
    ):  # the largest prefix whose packed lines fit, as the script bisects
        lo, hi, mid, best = named, len(failed) + 1, len(failed), ""
        while lo + 1 < hi:
            blob = _blob("".join(x + "\n" for lines in failed[:mid] for x in lines))
            if len(blob) + 6 <= room:
                lo, best = mid, blob
            else:
                hi = mid
            mid = (lo + hi) // 2
        if best:
            records, named = [f"ncgz\t{best}"], lo
    state = "cut" if named < len(failed) else "all"
    summary = [len(targets), targets_digest(targets), len(targets), len(targets) - len(failed)]
    return [*records, "reach\t" + "\t".join(map(str, summary)) + f"\t{named}\t{state}"]


def addresses_of(sim_estate: Estate) -> dict[tuple[str, str], str]:
    """(scale set name lower-cased, instance id) -> the instance's primary address."""
    out = {}
    for doc_list_key, docs in sim_estate.lists.items():
        if not doc_list_key.endswith("/networkinterfaces"):
            continue
        for nic in docs:
            vm = nic["properties"].get("virtualMachine", {}).get("id", "")
            if "/virtualmachinescalesets/" not in vm.lower():
                continue
            parts = vm.split("/")
            ip = nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
            out[(parts[-3].lower(), parts[-1])] = ip
    return out
