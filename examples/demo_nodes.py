"""The node part of `make demo`: node probes on real Linux nodes (network namespaces).

The node lab (tests/lab/nodelab.py) turns every Linux node of tests/armsim_scenarios/
nodelab.json into a network namespace with the standard AKS rules, a real ufw, a stand-in
crictl, and one fault per cluster from nodelab.lab.json. The ARM simulator's run command runs
the real probe script in those namespaces; the probe cycle, the queue (Azurite) and the worker
are the product's own (shared.jobs). Needs root; without it the demo says so and skips this part.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

from azure.data.tables import TableServiceClient

from shared.adapters.probe_ledger import ProbeLedger
from shared.adapters.queues import ProbeQueue
from shared.adapters.tables import FindingStore
from shared.analysis.findings import Kind
from shared.compose import probe_deps
from shared.jobs.probe import ProbeOptions, handle_poison, handle_probe_message
from shared.jobs.probe_cycle import run_probe_cycle
from tests.armsim import SCENARIOS, ArmSimulator
from tests.azurite import AzuriteUnavailable, running_azurite
from tests.lab.netns import netns_unavailable_reason
from tests.lab.nodelab import NodeLab
from tests.lab.nodelab_plan import load_lab_file

LAB_FILE = SCENARIOS / "nodelab.lab.json"
BUDGET = 40  # PROBE_BUDGET of the demo's cycle: 30 for triages, the rest for deep probes
_NEEDED = ("unshare", "ufw", "iptables-legacy-restore", "iptables-nft-restore", "nc", "openssl")


def _unavailable() -> str:
    reason = netns_unavailable_reason()
    if reason:
        return reason
    missing = [t for t in _NEEDED if shutil.which(t) is None]
    return f"missing {', '.join(missing)}" if missing else ""


def run() -> tuple[int, str]:
    """Runs one probe cycle on the lab; (exit code, a one-line summary for the demo's table)."""
    reason = _unavailable()
    if reason:
        print(
            f"(skipped: the node lab needs root and Linux network namespaces: {reason}.\n"
            " Run `sudo make demo` to see UFW, iptables, nftables, egress and agent findings\n"
            " from the real probe script on namespace nodes.)"
        )
        return 0, f"skipped ({reason})"
    estate, faults = load_lab_file(LAB_FILE)
    subscription = next(iter(estate.subscriptions.values()))
    now = datetime.now(UTC).replace(microsecond=0)
    with contextlib.ExitStack() as stack:
        try:
            endpoints = stack.enter_context(running_azurite())
        except AzuriteUnavailable as exc:
            print(f"(skipped: Azurite is not available here: {exc}; `make demo` installs it)")
            return 0, "skipped (no Azurite)"
        lab = stack.enter_context(NodeLab(estate, faults))
        sim = stack.enter_context(ArmSimulator(estate, executor=lab.executor))
        print(f"node lab: {len(lab.nodes)} namespace nodes in {len(lab.clusters)} clusters, "
              f"set up in {lab.setup_seconds:.1f} s; faults: {json.dumps(faults)}")  # fmt: skip
        tables = TableServiceClient.from_connection_string(endpoints.connection_string)
        store = FindingStore(tables, prefix="demolab")
        store.ensure_tables()
        ledger = ProbeLedger(tables, prefix="demolab")
        ledger.ensure()
        queue = ProbeQueue.from_connection_string(endpoints.connection_string, "demo-probes")
        queue.ensure()
        poison = queue.sibling("demo-probes-poison")
        poison.ensure()
        deps = probe_deps(
            sim.credential(), arm_endpoint=sim.endpoint, ca_bundle=sim.ca_path, store=store,
            ledger=ledger, queue=queue, poison=poison, clock=lambda: now,
        )  # fmt: skip
        options = ProbeOptions(subscriptions=(subscription,), budget=BUDGET)
        cycle = run_probe_cycle(
            (subscription,), inventory=deps.inventory, queue=queue, budget=BUDGET, now=now
        )
        print(f"probe cycle {cycle.cycle_id}: {len(cycle.requests)} triage request(s) queued; "
              f"not probed: {len(cycle.skipped)}")  # fmt: skip
        for why in cycle.skipped:
            print(f"  - {why.rsplit('/', 1)[-1]}")
        with ThreadPoolExecutor(max_workers=4) as pool:  # as host.json's batchSize
            while texts := queue.take(max_messages=4):
                list(pool.map(lambda t: handle_probe_message(t, options, deps), texts))
        for text in poison.take():
            handle_poison(text, options, deps)
        entries = list(ledger.entries(cycle.cycle_id))
        kinds = Counter(e.kind for e in entries for _ in range(e.run_commands))
        open_ = store.open_findings(subscription=subscription)
        by_cluster: dict[str, list[str]] = {}
        # per node: the triage's symptom first, then the deep probe's cause
        for s in sorted(open_, key=lambda s: (s.finding.subject.node, s.finding.cause or 0)):
            f = s.finding
            cause = (
                f"cause {int(f.cause)}"
                if f.cause is not None
                else "symptom"
                if f.kind is Kind.PROBLEM
                else "-"
            )
            line = (
                f"{f.kind.value:<12} {cause:<8} {f.subject.node or f.subject.resource}: {f.title}"
            )
            if f.remediation and (f.cause is not None or f.kind is Kind.COVERAGE):
                what = textwrap.wrap(f.remediation.summary, 96)
                line += "".join(f"\n{'':>14}{w}" for w in what)
                # every command, whole and in order: they are copied and run
                for command in f.remediation.commands:
                    line += f"\n{'':>14}$ {command}"
                for note in f.remediation.notes:  # not wrapped: a note may hold a command
                    line += f"\n{'':>14}note: {note}"
            by_cluster.setdefault(s.cluster_id.rsplit("/", 1)[1], []).append(line)
        for cluster in sorted({c.name for c in lab.clusters} | set(by_cluster)):
            fault = ", ".join(x for v in faults.get(cluster, {}).values() for x in v) or "none"
            print(f"\n--- {cluster} (fault: {fault})")
            for line in by_cluster.get(cluster, ["no finding"]):
                print(f"  {line}")
        total = sum(e.run_commands for e in entries)
        print(
            f"\nrun commands this cycle: {total} ({kinds['triage']} triage, {kinds['deep']} "
            f"deep) of a budget of {BUDGET}, for {len(lab.nodes)} Linux nodes; the article's "
            f"checks: {3 * len(lab.nodes)}"
        )
        problems = sum(1 for s in open_ if s.finding.kind is Kind.PROBLEM)
        # Like `tunnelwatch scan`: exit 1 when problems were found (the lab has nine faults).
        return (1 if problems else 0), f"{problems} node problems, {total} run commands"
