"""Findings from one node probe report: triage reachability, deep UFW/iptables, tunnel agents.

Owns the step from a parsed `ProbeReport` (shared.probe.output) to Findings about one node of
one pool: a cut or mismatched report is one INCONCLUSIVE finding and nothing else (half a
probe is never read as a whole one); failed connects to peers on 10250 are PROBLEMs about the
TARGET node with no cause (nc cannot tell the layer); a failed connect to the API server is
cause 4; the deep probe's rulesets go through the iptables engine together (a packet must
pass every backend in force) and its `ufw status` through the ufw engine; crashing or
OOM-killed tunnel agents are cause 6. Every fix is wrapped in the `az vmss run-command
invoke` that would run it on that node, quoted so that no text from the node can escape the
--scripts argument. Keys are made of stable things (the deciding rule, the target address,
the component name) so a repeated probe gives the same fingerprints. Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from shared.analysis import iptables, ufw
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
from shared.analysis.netcat import ProbeResult, Status
from shared.errors import InputError
from shared.inventory.model import AgentPool, Cluster, Instance
from shared.probe.output import Component, ProbeReport

__all__ = [
    "AGENT_NAMES",
    "RESTART_THRESHOLD",
    "node_findings",
    "run_command",
]

KUBELET_PORT = 10250
RESTART_THRESHOLD = 3  # more restarts than this is a crash loop, not a one-off rollout
AGENT_NAMES = ("konnectivity-agent", "tunnelfront", "aks-link")
_RUNNING = "CONTAINER_RUNNING"
_DEFAULT_IFACE = "eth0"
_MAX_LISTED = 10  # sources named in one evidence line
# Characters a shell gives no meaning to: a word made only of these needs no quoting.
_PLAIN = re.compile(r"[A-Za-z0-9_./:,=@+%-]+")
_IPAddr = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class _Where:
    """The node a report came from, as run command and the findings name it."""

    subject: Subject
    node_rg: str
    vmss: str
    instance_id: str


def _shell_word(word: str) -> str:
    return word if _PLAIN.fullmatch(word) else shlex.quote(word)


def run_command(fix: str, *, node_rg: str, vmss: str, instance_id: str) -> str | None:
    """`fix` as the `az vmss run-command invoke` that runs it on the node; None if unsafe.

    A fix is a shell command line whose words taken from captures are already quoted (the
    engines quote chain names, which may hold `$(...)` or quotes). It is parsed into words and
    joined again canonically, so anything outside quotes (an operator slipped into a name)
    becomes a literal word; the whole script is then one word for the user's shell: in double
    quotes when it holds only plain characters (the article's spelling), else shlex-quoted.
    """
    if "\n" in fix or "\r" in fix:
        return None  # two command lines: joining them would make one different command
    try:
        words = shlex.split(fix)
    except ValueError:
        return None  # unbalanced quotes: no command rather than a wrong one
    if not words or any("\t" in w for w in words):
        return None
    script = shlex.join(words)
    quoted = f'"{script}"' if all(_PLAIN.fullmatch(w) for w in words) else shlex.quote(script)
    return (
        f"az vmss run-command invoke -g {_shell_word(node_rg)} -n {_shell_word(vmss)} "
        f"--instance-id {_shell_word(instance_id)} --command-id RunShellScript "
        f"--scripts {quoted}"
    )


def _adapt(f: Finding, where: _Where) -> Finding:
    """An engine finding with its commands wrapped in run command for this node."""
    r = f.remediation
    if r is None:
        return f
    commands: list[str] = []
    notes = list(r.notes)
    for fix in r.commands:
        wrapped = run_command(
            fix, node_rg=where.node_rg, vmss=where.vmss, instance_id=where.instance_id
        )
        if wrapped is None:
            notes.append(f"this fix could not be quoted safely for run command; adapt it: {fix}")
        else:
            commands.append(wrapped)
            notes.append(f"on the node itself the command is: {fix}")
    if TUNNEL_POD_REMINDER not in notes:
        notes.append(TUNNEL_POD_REMINDER)
    return replace(f, remediation=Remediation(r.summary, tuple(commands), tuple(notes)))


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
    where = _Where(
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
            *_errors(report, where),
            *_triage(report, where, cluster, peers),
            *_api(report, where),
            *_deep(report, where, instance, sources, source_subnet),
            *_agents(report, where, cluster),
        ]
    return [f.seen(now) for f in out]


def _sources(peers: Mapping[str, str], source_subnet: str | None) -> list[_IPAddr]:
    """The addresses a connection to the kubelet comes from: the peers, else the subnet's."""
    out: list[_IPAddr] = []
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


def _incomplete(report: ProbeReport, where: _Where) -> Finding:
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


def _errors(report: ProbeReport, where: _Where) -> list[Finding]:
    """What the script could not do, and records we could not decode: each undecided."""
    out = []
    for e in report.errors:
        backend = e.subject.removeprefix("ruleset ") if e.subject.startswith("ruleset ") else ""
        out.append(
            Finding(
                check="node.ruleset" if backend else "node.probe",
                cause=Cause.IPTABLES if backend else None,
                kind=Kind.INCONCLUSIVE,
                severity=Severity.WARNING,
                subject=where.subject,
                title=(
                    f"the {backend} iptables ruleset could not be read: iptables not decided"
                    if backend
                    else f"the probe could not report {e.subject}"
                ),
                evidence=(f"{e.subject}: {e.message}",),
                remediation=Remediation(
                    "Run the deep probe again; if it repeats, capture the ruleset by hand "
                    "(iptables-save for that backend) and check it with tunnelwatch analyze "
                    "iptables."
                ),
                key=f"error:{e.subject}",
                origin=Origin.TUNNELWATCH,
            )
        )
    return out


def _evidence(r: ProbeResult) -> tuple[str, ...]:
    return tuple(
        f"probe line {a.line_number}: {a.line}" + (f" ({a.reason})" if a.reason else "")
        for a in r.attempts
    )


_REACH_NOTES = (
    "A timeout means the SYN was dropped on the way: an NSG deny (NSGs drop silently) or a "
    "DROP rule in UFW/iptables on the target node.",
    "A refusal comes from the target node itself: a REJECT rule in UFW/iptables, or nothing "
    "listening on 10250 (kubelet down). 'No route to host' can also be a REJECT rule "
    "(icmp-host-unreachable / icmp-host-prohibited).",
)


def _triage(
    report: ProbeReport, where: _Where, cluster: Cluster, peers: Mapping[str, str]
) -> list[Finding]:
    if report.targets is None:
        if report.mode == "triage" and peers:
            return [_no_results(where, "no connection test of the kubelet port in the report")]
        return []
    out = []
    seen = set()
    for r in report.targets.results:
        host = r.target.host or ""
        seen.add(host)
        node = peers.get(host, "")
        subject = Subject(cluster.subscription, cluster.id, "", node or "", host)
        label = r.target.label()
        # The probing pool, not node, in the key: triage runs on any node of the pool.
        key = f"{label}:from-pool={where.subject.node_pool}"
        if r.status.blocked:
            how = "timed out" if r.status is Status.TIMEOUT else r.status.value
            out.append(
                Finding(
                    check="node.kubelet",
                    cause=None,
                    kind=Kind.PROBLEM,
                    severity=Severity.CRITICAL,
                    subject=subject,
                    title=f"kubelet port of {node or host} not reachable from "
                    f"{where.subject.node}: {how}",
                    evidence=(
                        f"probed from {where.subject.node} (pool {where.subject.node_pool})",
                        *_evidence(r),
                    ),
                    remediation=Remediation(
                        "nc alone cannot tell which layer blocks TCP 10250. A deep probe of "
                        f"{node or host} (its UFW and iptables rules, evaluated) and the NSG "
                        "check decide the cause.",
                        notes=_REACH_NOTES,
                    ),
                    key=key,
                )
            )
        elif r.status is Status.UNKNOWN:
            out.append(
                Finding(
                    check="node.kubelet",
                    cause=None,
                    kind=Kind.INCONCLUSIVE,
                    severity=Severity.WARNING,
                    subject=subject,
                    title=f"kubelet port of {node or host}: outcome unknown "
                    f"({r.decisive.reason or 'no recognisable output'})",
                    evidence=_evidence(r),
                    key=key,
                    origin=Origin.TUNNELWATCH,
                )
            )
    missing = [ip for ip in peers if ip not in seen]
    if report.mode == "triage" and missing:
        out.append(_no_results(where, "targets without a result: " + ", ".join(missing[:20])))
    return out


def _no_results(where: _Where, why: str) -> Finding:
    return Finding(
        check="node.kubelet",
        cause=None,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=where.subject,
        title="some kubelet ports were not tested by the triage probe",
        evidence=(why,),
        remediation=Remediation("Run the triage probe again."),
        key="untested",
        origin=Origin.TUNNELWATCH,
    )


def _api(report: ProbeReport, where: _Where) -> list[Finding]:
    if report.api is None:
        return []
    out = []
    for r in report.api.results:
        label = r.target.label()
        if r.status.blocked:
            test = f"nc -vz -w 5 {r.target.host} {r.target.port}"
            retest = run_command(
                test, node_rg=where.node_rg, vmss=where.vmss, instance_id=where.instance_id
            )
            out.append(
                Finding(
                    check="node.egress.api",
                    cause=Cause.EGRESS,
                    kind=Kind.PROBLEM,
                    severity=Severity.CRITICAL,
                    subject=where.subject,
                    title=f"the API server {label} is not reachable from the node: "
                    f"{r.status.value}",
                    evidence=_evidence(r),
                    remediation=Remediation(
                        "The tunnel agent on this node dials the API server on TCP 443. Let "
                        "the node reach it: NSG outbound rules of the node subnet and NIC, a "
                        "route table sending 0.0.0.0/0 to a firewall and that firewall's "
                        "rules, and SNAT capacity (tunnelwatch analyze snat). Then test again.",
                        commands=(retest,) if retest else (),
                        notes=(TUNNEL_POD_REMINDER,),
                    ),
                    key=label,
                    origin=Origin.TUNNELWATCH,
                )
            )
        elif r.status is Status.UNKNOWN:
            out.append(
                Finding(
                    check="node.egress.api",
                    cause=Cause.EGRESS,
                    kind=Kind.INCONCLUSIVE,
                    severity=Severity.WARNING,
                    subject=where.subject,
                    title=f"the API server {label} from the node: outcome unknown",
                    evidence=_evidence(r),
                    key=label,
                    origin=Origin.TUNNELWATCH,
                )
            )
    return out


def _node_address(report: ProbeReport, instance: Instance) -> tuple[_IPAddr | None, str]:
    """The node's own address (the inventory's primary when the node lists it) and its iface."""
    found: list[tuple[_IPAddr, str]] = []
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
    where: _Where,
    instance: Instance,
    sources: Sequence[_IPAddr],
    source_subnet: str | None,
) -> list[Finding]:
    if report.mode != "deep" and not report.rulesets and report.ufw_status is None:
        return []
    if not sources:
        return [
            _undecided(
                where,
                "node.deep",
                None,
                "no source address to evaluate: give the peers or the node subnet",
                "no-source",
            )
        ]
    dst, iface = _node_address(report, instance)
    iptables_findings = _iptables(report, where, sources, dst, iface)
    fix_net = None if source_subnet is None else ipaddress.ip_network(source_subnet, strict=False)
    ufw_findings = _ufw(report, where, sources, dst, iface, fix_net)
    if any(f.kind is Kind.PROBLEM for f in ufw_findings):
        # The same UFW block seen through its iptables chains: the ufw engine's fix is the
        # one to give (editing ufw's chains by hand is undone by the next ufw reload).
        iptables_findings = [
            f for f in iptables_findings if not (f.cause is Cause.UFW and f.kind is Kind.PROBLEM)
        ]
    return iptables_findings + ufw_findings


def _undecided(where: _Where, check: str, cause: Cause | None, why: str, key: str) -> Finding:
    return Finding(
        check=check,
        cause=cause,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=where.subject,
        title=f"could not evaluate this node's rules: {why}",
        evidence=(why,),
        remediation=Remediation("Run the deep probe again, or check the node by hand."),
        key=key,
        origin=Origin.TUNNELWATCH,
    )


def _merge(per_source: list[tuple[_IPAddr, Finding]], flow: str, where: _Where) -> list[Finding]:
    """One finding per fingerprint, naming every source it holds for and every fix."""
    groups: dict[str, tuple[Finding, list[str], list[str]]] = {}
    for src, f in per_source:
        first, srcs, commands = groups.setdefault(f.fingerprint, (f, [], []))
        srcs.append(str(src))
        if f.remediation is not None:
            commands += [c for c in f.remediation.commands if c not in commands]
    out = []
    for first, srcs, commands in groups.values():
        more = f" (+{len(srcs) - _MAX_LISTED} more)" if len(srcs) > _MAX_LISTED else ""
        evidence = (f"packet: {flow} from {', '.join(srcs[:_MAX_LISTED])}{more}", *first.evidence)
        rem = first.remediation
        merged = replace(
            first,
            evidence=evidence,
            remediation=None if rem is None else replace(rem, commands=tuple(commands)),
        )
        out.append(_adapt(merged, where))
    return out


def _iptables(
    report: ProbeReport,
    where: _Where,
    sources: Sequence[_IPAddr],
    dst: _IPAddr | None,
    iface: str,
) -> list[Finding]:
    rulesets: list[iptables.Ruleset] = []
    out: list[Finding] = []
    for record in report.rulesets:
        if not record.text.strip():
            continue  # iptables-*-save prints nothing when that backend holds no table
        source = f"{where.subject.node} {record.backend} ruleset"
        backend = iptables.Backend.LEGACY if record.backend == "legacy" else iptables.Backend.NFT
        try:
            # The record says which binary dumped it: that decides the fix's command.
            rulesets += [
                replace(rs, backend=backend) for rs in iptables.parse_rulesets(record.text, source)
            ]
        except InputError as exc:
            out.append(
                _undecided(
                    where, "node.ruleset", Cause.IPTABLES,
                    f"the {record.backend} ruleset does not parse: {exc}",
                    f"unparsable:{record.backend}",
                )
            )  # fmt: skip
    if not rulesets:
        if (
            not report.rulesets
            and not out
            and not any(e.subject.startswith("ruleset ") for e in report.errors)
        ):
            out.append(
                _undecided(
                    where, "node.ruleset", Cause.IPTABLES,
                    "the report holds no iptables ruleset (no iptables-*-save on the node?)",
                    "no-ruleset",
                )
            )  # fmt: skip
        return out
    flow = f"TCP {KUBELET_PORT} to {dst or 'the node (address unknown)'} on {iface}"
    per_source: list[tuple[_IPAddr, Finding]] = []
    for src in sources:
        if dst is not None and dst.version != src.version:
            continue
        packet = iptables.Packet(src=src, dst=dst, dport=KUBELET_PORT, in_iface=iface)
        try:
            verdict = iptables.evaluate_input(rulesets, packet)
        except InputError as exc:
            # Rules compile on first use: a malformed one surfaces here, naming its ruleset.
            out.append(
                _undecided(
                    where, "node.ruleset", Cause.IPTABLES, f"a rule does not parse: {exc}",
                    f"unparsable:{exc.source}",
                )
            )  # fmt: skip
            return out
        per_source += [(src, f) for f in iptables.findings_for(verdict, where.subject)]
    return out + _merge(per_source, flow, where)


def _ufw(
    report: ProbeReport,
    where: _Where,
    sources: Sequence[_IPAddr],
    dst: _IPAddr | None,
    iface: str,
    fix_net: ipaddress.IPv4Network | ipaddress.IPv6Network | None,
) -> list[Finding]:
    if report.ufw_status is None:
        return []  # ufw absent (it blocks nothing) or its blob corrupt (an error finding)
    try:
        status = ufw.parse_status(report.ufw_status, f"{where.subject.node} ufw status")
    except InputError as exc:
        return [_undecided(where, "node.ufw", Cause.UFW, f"ufw status unreadable: {exc}", "ufw")]
    per_source: list[tuple[_IPAddr, Finding]] = []
    for src in sources:
        if dst is not None and dst.version != src.version:
            continue
        verdict = ufw.evaluate(status, KUBELET_PORT, "tcp", src, dst, iface)
        per_source += [(src, f) for f in ufw.findings_for(verdict, where.subject, fix_net)]
    flow = f"TCP {KUBELET_PORT} to {dst or 'the node (address unknown)'} on {iface}"
    return _merge(per_source, flow, where)


def _agents(report: ProbeReport, where: _Where, cluster: Cluster) -> list[Finding]:
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
        evidence = tuple(
            f"container {c.name}: state {c.state}, attempt {c.attempt}, exit code "
            f"{c.exit_code}, reason {c.reason or '-'}, finished {c.finished_at or '-'}"
            for c in containers
        )
        if name == "konnectivity-agent":
            commands = [f"kubectl -n kube-system describe pod -l k8s-app={name}"]
        else:
            commands = ["kubectl -n kube-system get pods -o wide", "kubectl -n kube-system "
                        "describe pod <pod-name>"]  # fmt: skip
        notes = [f"the node: {where.subject.node}"]
        if oom:
            commands.append(
                f"kubectl -n kube-system get deployment {name} "
                "-o jsonpath='{.spec.template.spec.containers[*].resources}'"
            )
            commands.append(
                f"az aks show -g {_shell_word(cluster.resource_group)} "
                f"-n {_shell_word(cluster.name)} --query kubernetesVersion -o tsv"
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
                evidence=evidence,
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
