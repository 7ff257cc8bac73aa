"""Findings from one node probe report: triage reachability, egress, deep rules, tunnel agents.

Owns the step from a parsed `ProbeReport` (shared.probe.output) to Findings about one node of
one pool: a cut or mismatched report is one INCONCLUSIVE finding and nothing else (half a
probe is never read as a whole one). The parts: `reach` (peers' kubelet ports, and cause 4:
TCP and TLS/ALPN to the API server, TCP 9000 for tunnel-front), `rules` (the deep probe's
iptables rulesets evaluated together, ufw, rulesets too large to report), `_nftables` here
(native nftables rules, through the nftables engine), `agents` (cause 6). Every fix is
wrapped in the `az vmss run-command invoke` that would run it on that node
(`common.run_command`). Keys are made of stable things (the deciding rule, the target
address, the component name) so a repeated probe gives the same fingerprints. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from datetime import datetime

from shared.analysis import nftables
from shared.analysis.findings import (
    Cause,
    Finding,
    Kind,
    Origin,
    Remediation,
    Severity,
    Subject,
)
from shared.checks.node.agents import AGENT_NAMES, RESTART_THRESHOLD, agent_findings
from shared.checks.node.common import KUBELET_PORT, IPAddr, Where, merge, run_command, undecided
from shared.checks.node.reach import (
    api_findings,
    tls_findings,
    triage_findings,
    tunnel_findings,
)
from shared.checks.node.rules import (
    NFTABLES,
    error_finding,
    hidden_findings,
    hidden_tables,
    iptables_findings,
    reveal_hidden,
    ufw_findings,
)
from shared.errors import InputError
from shared.inventory.model import AgentPool, Cluster, Instance
from shared.probe.output import ProbeReport

__all__ = [
    "AGENT_NAMES",
    "RESTART_THRESHOLD",
    "node_findings",
    "run_command",
]

_DEFAULT_IFACE = "eth0"


def node_findings(
    report: ProbeReport,
    *,
    cluster: Cluster,
    pool: AgentPool,
    instance: Instance,
    peers: Mapping[str, str],
    source_subnet: str | None,
    now: datetime,
) -> list[Finding]:
    """Everything one probe report says about the probing node and the nodes it tested.

    `peers` maps each target address to its node name (the triage targets; in a deep probe
    also the sources the kubelet port must admit). `source_subnet` is the prefix the tunnel
    connects from; a bad address or prefix in either is an InputError.
    """
    where = Where(
        Subject(cluster.subscription, cluster.id, pool.name, instance.computer_name),
        cluster.node_resource_group or "<node-resource-group>",
        pool.vmss_name or "<vmss>",
        instance.instance_id,
    )
    sources = _sources(peers, source_subnet)
    if not report.complete:
        out = [_incomplete(report, where)]
    else:
        out = [
            *(error_finding(e, where) for e in report.errors),
            *triage_findings(report, where, cluster, peers),
            *api_findings(report, where),
            *tls_findings(report, where),
            *tunnel_findings(report, where),
            *_deep(report, where, instance, sources, source_subnet),
            *agent_findings(report, where, cluster),
        ]
    return [f.seen(now) for f in out]


def _sources(peers: Mapping[str, str], source_subnet: str | None) -> list[IPAddr]:
    """The addresses a connection to the kubelet comes from: the peers, else the subnet's."""
    out: list[IPAddr] = []
    for text in peers:
        try:
            out.append(ipaddress.ip_address(text))
        except ValueError:
            raise InputError("peers", f"{text[:60]!r} is not an IP address") from None
    if source_subnet is None:
        return out
    try:
        net = ipaddress.ip_network(source_subnet, strict=False)
    except ValueError:
        raise InputError("source_subnet", f"{source_subnet[:60]!r} is not a prefix") from None
    # The subnet's first host stands for "some node of the subnet" (a /32 is its own host).
    first = ipaddress.ip_address(str(next(iter(net.hosts()), net.network_address)))
    return out or [first]


def _incomplete(report: ProbeReport, where: Where) -> Finding:
    return Finding(
        check="node.probe",
        cause=None,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=where.subject,
        title="the node probe's output is incomplete: nothing on this node was decided",
        evidence=report.reasons or ("the report is marked incomplete",),
        remediation=Remediation(
            "Run the probe again. Run command keeps only the last 4,096 bytes of output: if "
            "the start is cut again, the node prints more than fits (many targets or a very "
            "large ruleset); probe fewer targets per run. A missing END means the script was "
            "killed before it finished (run-command timeout, or the node was busy).",
        ),
        key="incomplete",
        origin=Origin.TUNNELWATCH,
    )


def _node_address(report: ProbeReport, instance: Instance) -> tuple[IPAddr | None, str]:
    """The node's own address (the inventory's primary when the node lists it) and its iface.

    Always one of the addresses the script listed (or None when it listed none): the
    script's reduction dropped `-d` rules against exactly that list.
    """
    found: list[tuple[IPAddr, str]] = []
    for iface, cidr in report.addresses:
        try:
            found.append((ipaddress.ip_interface(cidr).ip, iface))
        except ValueError:
            continue  # an address we cannot read is not the one we test
    for primary in instance.private_ips[:1]:
        for addr, iface in found:
            if str(addr) == primary:
                return addr, iface
    if found:
        return found[0]
    return None, _DEFAULT_IFACE


def _deep(
    report: ProbeReport,
    where: Where,
    instance: Instance,
    sources: Sequence[IPAddr],
    source_subnet: str | None,
) -> list[Finding]:
    if report.mode != "deep" and not report.rulesets and report.ufw_status is None:
        return []
    if not sources:
        return [_no_source(where)]
    dst, iface = _node_address(report, instance)
    ipt = iptables_findings(report, where, sources, dst, iface)
    fix_net = None if source_subnet is None else ipaddress.ip_network(source_subnet, strict=False)
    ufw = ufw_findings(report, where, sources, dst, iface, fix_net)
    if any(f.kind is Kind.PROBLEM for f in ufw):
        # The same UFW block seen through its iptables chains: the ufw engine's fix is the
        # one to give (editing ufw's chains by hand is undone by the next ufw reload).
        ipt = [f for f in ipt if not (f.cause is Cause.UFW and f.kind is Kind.PROBLEM)]
    return ipt + ufw + _nftables(report, where, sources, dst, iface)


def _no_source(where: Where) -> Finding:
    why = "no source address to evaluate: give the peers or the node subnet"
    return Finding(
        check="node.deep",
        cause=None,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=where.subject,
        title=f"could not evaluate this node's rules: {why}",
        evidence=(why,),
        remediation=Remediation("Run the deep probe again, or check the node by hand."),
        key="no-source",
        origin=Origin.TUNNELWATCH,
    )


def _nftables(
    report: ProbeReport,
    where: Where,
    sources: Sequence[IPAddr],
    dst: IPAddr | None,
    iface: str,
) -> list[Finding]:
    """Native nftables tables hooking prerouting/input (kube-proxy nftables mode, nftables.conf).

    The `ruleset` record with backend "nftables" holds `{"nftables": [...]}` as `nft -j list
    ruleset` prints it, restricted to those tables. It goes through the nftables engine with
    the same packets (each source to `dst` on `iface`, TCP 10250, SYN and handshake ACK) as the
    iptables evaluation: a packet must pass both, so a block in either is reported. A table of
    iptables-nft's that iptables-nft-save says it cannot show is evaluated here, natively,
    without the base chains it did print; with no native dump of it, it is undecided.
    """
    docs = [r for r in report.rulesets if r.backend == NFTABLES]
    out: list[Finding] = []
    hidden = hidden_tables(report)
    revealed: set[str] = set()
    flow = f"TCP {KUBELET_PORT} to {dst or 'the node (address unknown)'} on {iface}"
    for n, doc in enumerate(docs):
        source = f"{where.subject.node} nftables ruleset" + (f" {n + 1}" if len(docs) > 1 else "")
        try:
            ruleset = nftables.parse_ruleset(doc.text, source)
        except InputError as exc:
            out.append(
                undecided(
                    where, "node.nftables", Cause.IPTABLES,
                    f"the native nftables ruleset does not parse: {exc}", f"unparsable:{source}",
                )
            )  # fmt: skip
            continue
        if hidden:
            ruleset = reveal_hidden(ruleset, hidden)
            revealed |= {t.name for t in ruleset.tables if t.family == "ip" and t.name in hidden}
        per_source: list[tuple[IPAddr, Finding]] = []
        for src in sources:
            if dst is not None and dst.version != src.version:
                continue
            packet = nftables.Packet(src=src, dst=dst, dport=KUBELET_PORT, in_iface=iface)
            verdict = nftables.evaluate_input(ruleset, packet)
            per_source += [(src, f) for f in nftables.findings_for(verdict, where.subject)]
        out += merge(per_source, flow, where)
    return out + hidden_findings(report, where, hidden, revealed)
