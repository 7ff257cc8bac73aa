"""Findings for SNAT exhaustion and capacity, with the article's fixes 5a-5c as exact commands.

Owns the wording and the numbers of the fixes. With a `Capacity` (frontend IPs, ports per node,
max and surge nodes) the commands carry real values; without one they carry placeholders and
say how to compute them.
"""

from __future__ import annotations

from shared.analysis.findings import (
    TUNNEL_POD_REMINDER,
    Cause,
    Finding,
    Kind,
    Origin,
    Remediation,
    Severity,
    Subject,
)
from shared.analysis.shell import Command, Placeholder, command, placeholder
from shared.analysis.snat import ResourceKind, SnatReport, SnatState
from shared.analysis.snat.capacity import MAX_MANAGED_OUTBOUND_IPS, PORTS_PER_IP, Capacity

__all__ = ["capacity_findings", "findings", "load_balancer_fix"]

_POOLING = (
    "5a: first make sure applications reuse connections (connection pooling); one new "
    "outbound connection per request exhausts any allocation."
)
# AKS can change outboundType on an existing cluster ("You can now update the outboundType
# after cluster creation", egress-outboundtype): loadBalancer -> managedNATGateway with an
# AKS-managed VNet; with your own VNet, attach a NAT gateway to the node subnets and move to
# userAssignedNATGateway.
_NAT_UPDATE = (
    "--outbound-type",
    "managedNATGateway",
    "--nat-gateway-managed-outbound-ip-count",
    2,
)
_RESOURCE_GROUP = placeholder("resource-group")
_CLUSTER = placeholder("cluster")
Name = str | Placeholder  # a name from Azure or the user, or one the user must fill in


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _aks_update(resource_group: Name, cluster: Name, *args: str | int | Placeholder) -> Command:
    return command("az", "aks", "update", "-g", resource_group, "-n", cluster, *args)


def load_balancer_fix(
    resource_group: Name,
    cluster: Name,
    capacity: Capacity | None = None,
    *,
    more_ports: bool = True,
) -> Remediation:
    """5b (ports, outbound IPs) and 5c (NAT gateway), with numbers when capacity is known."""

    def base(*args: str | int | Placeholder) -> Command:
        return _aks_update(resource_group, cluster, *args)

    notes = [_POOLING]
    commands: list[str] = []
    effective = capacity.effective_ports_per_node if capacity else None
    if capacity is None or not effective:
        commands += [
            base("--load-balancer-outbound-ports", placeholder("ports-per-node")),
            base("--load-balancer-managed-outbound-ip-count", placeholder("ip-count")),
        ]
        notes.append(
            "Pick ports per node (a multiple of 8) and IPs so that ports x (max nodes + surge) "
            "<= 64,000 x IPs; `tunnelwatch analyze snat --frontend-ips --ports-per-node "
            "--max-nodes --surge` computes them."
        )
    else:
        nodes = capacity.nodes
        if capacity.fits is False and capacity.min_outbound_ips is not None:
            commands.append(
                base("--load-balancer-managed-outbound-ip-count", capacity.min_outbound_ips)
            )
            notes.append(
                f"{capacity.min_outbound_ips} IP(s) fit {nodes} nodes (max + surge) at "
                f"{effective} ports each."
            )
        if capacity.max_ports_per_node >= 8 and (
            capacity.fits is False or capacity.max_ports_per_node > effective
        ):
            commands.append(base("--load-balancer-outbound-ports", capacity.max_ports_per_node))
            notes.append(
                f"{capacity.max_ports_per_node} ports per node is the most that "
                f"{capacity.frontend_ips} IP(s) give {nodes} nodes (max + surge)."
            )
        if more_ports:
            doubled = min(PORTS_PER_IP, _ceil_div(effective * 2, 8) * 8)
            ips = _ceil_div(doubled * nodes, PORTS_PER_IP)
            if ips <= MAX_MANAGED_OUTBOUND_IPS:
                commands.append(
                    base(
                        "--load-balancer-managed-outbound-ip-count",
                        ips,
                        "--load-balancer-outbound-ports",
                        doubled,
                    )
                )
                notes.append(
                    f"Doubling to {doubled} ports per node for {nodes} nodes needs {ips} "
                    "outbound IP(s)."
                )
    commands.append(base(*_NAT_UPDATE))
    notes += [
        "--load-balancer-managed-outbound-ip-count applies to AKS-managed outbound IPs; with "
        "your own IPs or prefixes use --load-balancer-outbound-ips / -ip-prefixes instead.",
        "5c: a NAT gateway gives up to 64,512 ports per IP to every node on demand. The command "
        "is for an AKS-managed VNet; with your own VNet, associate a NAT gateway with the node "
        "subnets and use --outbound-type userAssignedNATGateway. Changing the outbound type "
        "changes the cluster's egress IPs: update allow-lists that name them first.",
        TUNNEL_POD_REMINDER,
    ]
    return Remediation(
        summary="Give the nodes more SNAT ports: raise the allocated outbound ports (5b), add "
        "outbound IPs so they fit, or move egress to a NAT gateway (5c).",
        commands=tuple(commands),
        notes=tuple(notes),
    )


def _nat_fix(resource_group: Name, cluster: Name) -> Remediation:
    return Remediation(
        summary="Give the NAT gateway more SNAT ports: add public IPs (or a prefix) to it, and "
        "make applications reuse connections.",
        commands=(
            _aks_update(
                resource_group,
                cluster,
                "--nat-gateway-managed-outbound-ip-count",
                placeholder("ip-count"),
            ),
            command(
                "az",
                "network",
                "nat",
                "gateway",
                "update",
                "-g",
                placeholder("nat-resource-group"),
                "-n",
                placeholder("nat-gateway"),
                "--public-ip-addresses",
                placeholder("public-ip-1"),
                placeholder("public-ip-2"),
            ),
        ),
        notes=(
            "The first command is for an AKS-managed NAT gateway, the second for your own.",
            _POOLING,
            TUNNEL_POD_REMINDER,
        ),
    )


def _evidence(report: SnatReport) -> tuple[str, ...]:
    w = report.window
    lines = []
    for label, ms in (("ports", w.minutes_in()), ("events", w.event_minutes())):
        if ms:
            lines.append(
                f"{label} window {ms[0].isoformat()} .. {ms[-1].isoformat()} ({w.minutes} "
                f"one-minute points; threshold {w.threshold:g}% in {w.min_bad})"
            )
    if report.failed_connections:
        lines.append(f"{report.failed_connections:g} failed SNAT connection(s) in the window")
    if report.packet_drops:
        lines.append(f"{report.packet_drops:g} packet(s) dropped in the window")
    for b in report.backends:
        if b.verdict is not SnatState.OK:
            used, allocated, ratio = b.latest()
            lines.append(
                f"backend {b.backend_ip}: {b.verdict.value}, {b.points_over} of "
                f"{len(b.points)} points >= {b.threshold:g}% (latest {used}/{allocated} = {ratio}%)"
                + (f"; {b.reason}" if b.reason else "")
            )
    lines.extend(report.reasons)
    return tuple(lines)


def findings(
    report: SnatReport,
    subject: Subject | None = None,
    *,
    resource_group: Name = _RESOURCE_GROUP,
    cluster: Name = _CLUSTER,
    capacity: Capacity | None = None,
) -> tuple[Finding, ...]:
    """One finding when the verdict is not ok: a PROBLEM (exhausted, at risk) or INCONCLUSIVE."""
    if report.verdict is SnatState.OK:
        return ()
    subject = subject or Subject(resource=report.resource_id)
    lb = report.kind is ResourceKind.LOAD_BALANCER
    what = "outbound load balancer" if lb else "NAT gateway"
    check = "snat.load_balancer" if lb else "snat.nat_gateway"
    origin = Origin.ARTICLE if lb else Origin.TUNNELWATCH
    evidence = _evidence(report)
    if report.verdict is SnatState.UNKNOWN:
        return (
            Finding(
                check,
                Cause.SNAT,
                Kind.INCONCLUSIVE,
                Severity.WARNING,
                subject,
                f"SNAT usage of the {what} could not be judged",
                evidence,
                key="undecided",
                origin=origin,
            ),
        )
    exhausted = report.verdict is SnatState.EXHAUSTED
    title = (
        f"SNAT ports of the {what} exhausted: nodes cannot reach the API server"
        if exhausted
        else f"SNAT ports of the {what} at risk of exhaustion"
    )
    fix = (
        load_balancer_fix(resource_group, cluster, capacity)
        if lb
        else _nat_fix(resource_group, cluster)
    )
    severity = Severity.CRITICAL if exhausted else Severity.WARNING
    return (
        Finding(
            check,
            Cause.SNAT,
            Kind.PROBLEM,
            severity,
            subject,
            title,
            evidence,
            fix,
            key="ports",
            origin=origin,
        ),
    )


def capacity_findings(
    capacity: Capacity,
    subject: Subject | None = None,
    *,
    resource_group: Name = _RESOURCE_GROUP,
    cluster: Name = _CLUSTER,
) -> tuple[Finding, ...]:
    """A PROBLEM when max + surge nodes do not fit the outbound IPs; INCONCLUSIVE when unknown."""
    subject = subject or Subject()
    c = capacity
    evidence = (
        f"{c.frontend_ips} outbound IP(s) x 64,000 = {c.ports_available} ports; "
        f"{c.effective_ports_per_node} ports x {c.nodes} nodes (max + surge) = {c.ports_needed}",
        *c.notes,
    )
    if c.fits is None:
        return (
            Finding(
                "snat.capacity",
                Cause.SNAT,
                Kind.INCONCLUSIVE,
                Severity.WARNING,
                subject,
                "SNAT port capacity could not be computed",
                evidence,
                key="capacity",
            ),
        )
    if c.fits:
        return ()
    return (
        Finding(
            "snat.capacity",
            Cause.SNAT,
            Kind.PROBLEM,
            Severity.CRITICAL,
            subject,
            f"{c.nodes} nodes need {c.ports_needed} SNAT ports but the outbound IPs give "
            f"{c.ports_available}: scaling or upgrading will fail",
            evidence,
            load_balancer_fix(resource_group, cluster, capacity, more_ports=False),
            key="capacity",
        ),
    )
