"""Cause 6: the tunnel agents (konnectivity-agent, tunnelfront, aks-link) crashing. Pure."""

from __future__ import annotations

from shared.analysis.findings import Cause, Finding, Kind, Origin, Remediation, Severity
from shared.analysis.shell import command, placeholder
from shared.checks.node.common import Where
from shared.inventory.model import Cluster
from shared.probe.output import Component, ProbeReport

__all__ = ["AGENT_NAMES", "RESTART_THRESHOLD", "agent_findings"]

RESTART_THRESHOLD = 3  # more restarts than this is a crash loop, not a one-off rollout
AGENT_NAMES = ("konnectivity-agent", "tunnelfront", "aks-link")
_RUNNING = "CONTAINER_RUNNING"


def _describe(c: Component) -> str:
    where = f" (container {c.container} of pod {c.pod})" if c.container and c.pod else ""
    return (
        f"container {c.name}{where}: state {c.state}, attempt {c.attempt}, exit code "
        f"{c.exit_code}, reason {c.reason or '-'}, finished {c.finished_at or '-'}"
    )


def agent_findings(report: ProbeReport, where: Where, cluster: Cluster) -> list[Finding]:
    by_name: dict[str, list[Component]] = {}
    for c in report.components:
        if c.name in AGENT_NAMES:
            by_name.setdefault(c.name, []).append(c)
    out = []
    for name, containers in by_name.items():
        running = any(c.state == _RUNNING for c in containers)
        restarts = max((c.attempt or 0 for c in containers), default=0)
        oom = [c for c in containers if c.oom_killed]
        if running and restarts <= RESTART_THRESHOLD and not oom:
            continue
        what = []
        if not running:
            what.append("not running")
        if restarts > RESTART_THRESHOLD:
            what.append(f"restarted {restarts} times")
        if oom:
            what.append("OOM-killed")
        kube = ("kubectl", "-n", "kube-system")
        if name == "konnectivity-agent":
            commands = [command(*kube, "describe", "pod", "-l", f"k8s-app={name}")]
        else:
            commands = [command(*kube, "get", "pods", "-o", "wide"),
                        command(*kube, "describe", "pod", placeholder("pod-name"))]  # fmt: skip
        notes = [f"the node: {where.subject.node}"]
        if oom:
            commands.append(
                command(
                    *kube,
                    "get",
                    "deployment",
                    name,
                    "-o",
                    "jsonpath={.spec.template.spec.containers[*].resources}",
                )
            )
            commands.append(
                command(
                    "az",
                    "aks",
                    "show",
                    "-g",
                    cluster.resource_group,
                    "-n",
                    cluster.name,
                    "--query",
                    "kubernetesVersion",
                    "-o",
                    "tsv",
                )
            )
            notes.append(
                "The agent was killed for exceeding its memory limit: compare the limit with "
                "its use, and check whether the cluster's AKS version has a newer agent "
                "(upgrading the cluster updates this managed add-on)."
            )
        out.append(
            Finding(
                check="node.agent",
                cause=Cause.AGENT,
                kind=Kind.PROBLEM,
                severity=Severity.WARNING if running else Severity.CRITICAL,
                subject=where.subject,
                title=f"{name} on {where.subject.node}: " + ", ".join(what),
                evidence=tuple(_describe(c) for c in containers),
                remediation=Remediation(
                    f"Find out why {name} restarts: its events, last state and logs.",
                    tuple(commands),
                    tuple(notes),
                ),
                key=name,
                origin=Origin.TUNNELWATCH,
            )
        )
    return out
