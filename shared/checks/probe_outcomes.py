"""Findings about probing itself: a denied run command (coverage), a probe that never
succeeded (inconclusive), output that is not a probe report (inconclusive). Pure: no I/O.

These say what tunnelwatch could not see and what would let it see, so a gap in coverage is
never mistaken for a healthy node.
"""

from __future__ import annotations

from datetime import datetime

from shared.analysis.findings import Finding, Kind, Origin, Remediation, Severity, Subject
from shared.analysis.shell import command, placeholder
from shared.inventory.model import AgentPool, Cluster

__all__ = ["denied_finding", "gave_up_finding", "refused_request_finding", "unreadable_finding"]

RUN_COMMAND_ACTION = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/runCommand/action"
_LOCKDOWN_CODES = frozenset({"RequestDisallowedByPolicy", "DenyAssignmentAuthorizationFailed"})


def denied_finding(
    cluster: Cluster, pool: AgentPool, node: str, code: str, message: str, now: datetime
) -> Finding:
    """Run command refused with 403: lockdown of the node resource group, or a missing role."""
    lockdown = cluster.restriction_level.lower() == "readonly" or code in _LOCKDOWN_CODES
    scope = f"/subscriptions/{cluster.subscription}/resourceGroups/{cluster.node_resource_group}"
    if code == "ScopeLocked":
        summary = (
            "A management lock (ReadOnly) on the node resource group, or on its resource "
            "group or subscription, refuses run command (a POST action) on this cluster's "
            "nodes, so UFW, iptables, the live API path and the tunnel agent are not checked "
            "here; NSG and SNAT checks still run. Find the lock; whether to remove it or "
            "accept this gap is the cluster owners' decision (a ReadOnly lock also stops AKS "
            "upgrades and scaling)."
        )
        commands: tuple[str, ...] = (
            command("az", "lock", "list", "--resource-group", cluster.node_resource_group,
                    "-o", "table"),
        )  # fmt: skip
    elif lockdown:
        summary = (
            "Node resource group lockdown (restrictionLevel ReadOnly) denies run command on "
            "this cluster's nodes, so UFW, iptables, the live API path and the tunnel agent "
            "are not checked here; NSG and SNAT checks still run. To let tunnelwatch probe, "
            "lift the lockdown (a decision for the cluster's owners), or accept this gap."
        )
        commands = (
            command("az", "aks", "update", "-g", cluster.resource_group, "-n", cluster.name,
                    "--nrg-lockdown-restriction-level", "Unrestricted"),
        )  # fmt: skip
    else:
        summary = (
            f"tunnelwatch's identity may not run commands on this cluster's nodes: it needs "
            f"{RUN_COMMAND_ACTION} on the node resource group (the built-in role 'Virtual "
            "Machine Contributor' grants it; so does a custom role with only that action and "
            "read). Node probes of this cluster are off until then; NSG and SNAT checks still run."
        )
        commands = (
            command("az", "role", "assignment", "create", "--assignee",
                    placeholder("tunnelwatch-principal-id"), "--role",
                    "Virtual Machine Contributor", "--scope", scope),
        )  # fmt: skip
    return Finding(
        check="node.probe.permission",
        cause=None,
        kind=Kind.COVERAGE,
        severity=Severity.WARNING,
        subject=Subject(cluster.subscription, cluster.id, pool.name, "", scope),
        title=f"node probes of {cluster.name} are denied ({code or 'HTTP 403'})",
        evidence=(f"run command on {node}: {code}: {message[:300]}",),
        remediation=Remediation(
            summary,
            commands,
            (
                "Deployed with infra/main.bicep: redeploy with enableNodeProbes=true instead; "
                "it adds a custom role holding only the run-command action (and the reads it "
                "needs) for tunnelwatch's identity, narrower than Virtual Machine Contributor.",
            ),
        ),
        key="denied",
        origin=Origin.TUNNELWATCH,
    ).seen(now)


def gave_up_finding(
    cluster: Cluster, pool: AgentPool, node: str, kind: str, attempts: int, last: str,
    now: datetime,
) -> Finding:  # fmt: skip
    """The last attempt of a probe failed (busy VM, throttling, errors): nothing was decided."""
    return Finding(
        check="node.probe",
        cause=None,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=Subject(cluster.subscription, cluster.id, pool.name, node),
        title=f"the {kind} probe of {node} failed {attempts} times: this node was not checked",
        evidence=(f"last attempt: {last[:400]}",),
        remediation=Remediation(
            "The node was busy with other run commands, the subscription was throttled, or "
            "run command failed. The next probe cycle tries again; if this repeats, look at "
            "the scale set's run-command extension status in the portal, and run the "
            "article's checks on this node by hand.",
            (
                command(
                    "az",
                    "vmss",
                    "get-instance-view",
                    "-g",
                    cluster.node_resource_group,
                    "-n",
                    pool.vmss_name or placeholder("vmss"),
                    "--instance-id",
                    placeholder("instance-id"),
                ),
            ),
        ),
        key=f"gave-up:{kind}",
        origin=Origin.TUNNELWATCH,
    ).seen(now)


def unreadable_finding(
    cluster: Cluster, pool: AgentPool, node: str, why: str, now: datetime
) -> Finding:
    """Run command succeeded but its output is not a probe report."""
    return Finding(
        check="node.probe",
        cause=None,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=Subject(cluster.subscription, cluster.id, pool.name, node),
        title=f"the probe output of {node} could not be read: nothing on it was decided",
        evidence=(why[:500],),
        remediation=Remediation(
            "Run the probe again at the next cycle. If the node's shell or tools are unusual "
            "(no bash, a read-only /tmp is fine), run the article's commands by hand."
        ),
        key="unreadable",
        origin=Origin.TUNNELWATCH,
    ).seen(now)


def refused_request_finding(cluster: Cluster, pool: AgentPool, why: str, now: datetime) -> Finding:
    """No probe of this pool could even be requested: a name in the inventory is outside the
    rules a probe request holds to (which accept every name Azure accepts)."""
    return Finding(
        check="node.probe.request",
        cause=None,
        kind=Kind.COVERAGE,
        severity=Severity.WARNING,
        subject=Subject(cluster.subscription, cluster.id, pool.name),
        title=f"node probes of pool {pool.name} of {cluster.name} cannot be requested: "
        "a name is refused",
        evidence=(why[:400],),
        remediation=Remediation(
            "tunnelwatch puts only names Azure itself allows into a probe request (resource "
            "groups: letters and digits of any script and - _ . ( ); scale sets: letters, digits "
            "and - _ .; instance ids: digits). The inventory holds one outside those rules, so "
            "this pool's nodes are not probed (UFW, iptables, the live paths to kubelet and the "
            "API server); NSG and SNAT checks still run, and the other pools are probed. If the "
            "name is a real Azure name, it is a tunnelwatch bug: report it with the name."
        ),
        key="request-refused",
        origin=Origin.TUNNELWATCH,
    ).seen(now)
