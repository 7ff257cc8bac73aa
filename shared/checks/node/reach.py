"""What the live connection tests say: peers' kubelet ports (triage) and the node's egress.

Failed connects to peers on 10250 are PROBLEMs about the TARGET node with no cause (nc cannot
tell the layer). A compact triage names only the targets that are not open; what it does not
name is read against the peers sent (`shared.probe.output.target_results`): a cut output is
one INCONCLUSIVE "N of M not reachable, K named" beside the named PROBLEMs, a target list that
does not match or targets left untested one INCONCLUSIVE "untested", never a silent pass.
From the node outwards (cause 4): TCP to the API server; the TLS handshake
offering ALPN konnectivity,h2, where a peer that chooses no protocol, fails the handshake after
TCP connects, or shows a certificate not issued for the API server's name is a middlebox that
breaks Konnectivity; TCP 9000 for a node still running tunnel-front. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

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
from shared.analysis.netcat.finding import WHAT_A_FAILURE_MEANS, Reading, connection_finding
from shared.analysis.shell import Command, command, placeholder
from shared.checks.node.common import Where
from shared.inventory.model import Cluster
from shared.probe.output import ProbeReport, TlsCheck, target_results

__all__ = ["api_findings", "tls_findings", "triage_findings", "tunnel_findings"]

TLS_TITLE = (
    "a TLS-inspecting firewall or proxy between the node and the API server breaks Konnectivity"
)
_CA_NOTE = (
    "AKS's own API server certificate is issued by the cluster CA, the one in your "
    "kubeconfig: compare its subject with the issuer above. On your workstation: kubectl config "
    "view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | "
    "base64 -d | openssl x509 -noout -subject"
)


def triage_findings(
    report: ProbeReport, where: Where, cluster: Cluster, peers: Mapping[str, str]
) -> list[Finding]:
    if report.targets is None and report.reach is None:
        if report.mode == "triage" and peers:
            return [_no_results(where, "no connection test of the kubelet port in the report")]
        return []
    out = _named_findings(report, where, cluster, peers)
    if report.mode != "triage":
        return out  # a deep probe's peers are sources to evaluate, not targets it tested
    results = target_results(report, list(peers))
    gaps = list(results.gaps)
    if results.unnamed:
        out.append(_cut(report, where, gaps.pop(0)))
    if gaps:
        out.append(_no_results(where, "; ".join(gaps)))
    return out


def _named_findings(
    report: ProbeReport, where: Where, cluster: Cluster, peers: Mapping[str, str]
) -> list[Finding]:
    """A PROBLEM per target the output names as not reachable; INCONCLUSIVE when unclear."""
    out: list[Finding] = []
    for r in report.targets.results if report.targets is not None else ():
        host = r.target.host or ""
        node = peers.get(host, "")
        probed_from = where.subject.node
        reading = Reading(
            check="node.kubelet",
            cause=None,
            subject=Subject(cluster.subscription, cluster.id, "", node or "", host),
            # The probing pool, not node, in the key: triage runs on any node of the pool.
            key=f"{r.target.label()}:from-pool={where.subject.node_pool}",
            target=f"kubelet port of {node or host}",
            path=f" from {probed_from}",
            remediation=Remediation(
                "nc alone cannot tell which layer blocks TCP 10250. A deep probe of "
                f"{node or host} (its UFW and iptables rules, evaluated) and the NSG "
                "check decide the cause.",
                notes=WHAT_A_FAILURE_MEANS,
            ),
            evidence_prefix="probe ",
            context=(f"probed from {probed_from} (pool {where.subject.node_pool})",),
        )
        finding = connection_finding(r, reading)
        if finding is not None:
            out.append(finding)
    return out


def _cut(report: ProbeReport, where: Where, why: str) -> Finding:
    """More targets failed than the 4,096-byte output could name: never a silent pass."""
    reach = report.reach
    failed, total, named = (reach.failed, reach.targets, reach.named) if reach else (0, 0, 0)
    return Finding(
        check="node.kubelet",
        cause=None,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=where.subject,
        title=f"{failed} of {total} kubelet ports not reachable from {where.subject.node}, "
        f"{named} named",
        evidence=(f"probed from {where.subject.node} (pool {where.subject.node_pool})", why),
        remediation=Remediation(
            "So many kubelet ports fail from this node that their names did not fit the "
            "run-command output; the named ones are reported one by one. When most of the "
            "cluster fails at once, look first at what they share: the node subnet's NSG "
            "(tunnelwatch's NSG check), a route table, or a rule on this probing node itself "
            "(its OUTPUT chain, ufw's outgoing policy). The next triage names more as the named "
            "ones are fixed.",
            notes=WHAT_A_FAILURE_MEANS,
        ),
        key="unnamed",
        origin=Origin.TUNNELWATCH,
    )


def _no_results(where: Where, why: str) -> Finding:
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


def _nc(host: str | None, port: int | None) -> Command:
    """The retest by hand; a part the report did not name is left for the user to fill."""
    return command(
        "nc", "-vz", "-w", 5, host or placeholder("host"),
        placeholder("port") if port is None else port,
    )  # fmt: skip


def api_findings(report: ProbeReport, where: Where) -> list[Finding]:
    if report.api is None:
        return []
    out = []
    for r in report.api.results:
        retest = where.invoke(_nc(r.target.host, r.target.port))
        reading = Reading(
            check="node.egress.api",
            cause=Cause.EGRESS,
            subject=where.subject,
            key=r.target.label(),
            target=f"the API server {r.target.label()}",
            path=" from the node",
            remediation=Remediation(
                "The tunnel agent on this node dials the API server on TCP 443. Let "
                "the node reach it: NSG outbound rules of the node subnet and NIC, a "
                "route table sending 0.0.0.0/0 to a firewall and that firewall's "
                "rules, and SNAT capacity (tunnelwatch analyze snat). Then test again.",
                commands=(retest,),
                notes=(TUNNEL_POD_REMINDER,),
            ),
            origin=Origin.TUNNELWATCH,
            evidence_prefix="probe ",
        )
        finding = connection_finding(r, reading)
        if finding is not None:
            out.append(finding)
    return out


def _tls_evidence(t: TlsCheck) -> tuple[str, ...]:
    name = {True: "yes", False: "NO", None: "unknown"}[t.name_match]
    return (
        f"TLS to {t.target} offering ALPN konnectivity,h2 (as the konnectivity agent does): "
        f"TCP {t.tcp}, handshake {t.handshake}, ALPN chosen: {t.alpn or 'none'}",
        f"certificate: subject CN {t.subject_cn or '-'}, issuer CN {t.issuer_cn or '-'}, "
        f"issued for {t.target.rsplit(':', 1)[0]}: {name}",
    )


def tls_findings(report: ProbeReport, where: Where) -> list[Finding]:
    """A middlebox that terminates TLS between the node and the API server (cause 4)."""
    t = report.tls
    if t is None or t.tcp != "open":
        return []  # not tested (a note says why), or TCP itself failed: the API check says so
    reasons = []
    if t.handshake != "ok":
        reasons.append(
            "the TLS handshake failed although TCP connected: something on the path answers "
            "on 443 but will not complete TLS for this name and ALPN"
        )
    else:
        if not t.alpn:
            reasons.append(
                "the peer chose no ALPN protocol although h2 was offered: the AKS endpoint "
                "(konnectivity server or kube-apiserver, both gRPC/HTTP2) always chooses one"
            )
        if t.name_match is False:
            reasons.append("the certificate is not issued for the API server's name")
    if not reasons:
        return []
    host, _, port = t.target.rpartition(":")
    retest = where.invoke(
        command(
            "timeout",
            10,
            "openssl",
            "s_client",
            "-connect",
            t.target,
            "-servername",
            host,
            "-alpn",
            "konnectivity,h2",
        )
    )
    return [
        Finding(
            check="node.egress.tls",
            cause=Cause.EGRESS,
            kind=Kind.PROBLEM,
            severity=Severity.WARNING,
            subject=where.subject,
            title=TLS_TITLE,
            evidence=(*_tls_evidence(t), *reasons),
            remediation=Remediation(
                f"Exclude the API server FQDN ({host}) from TLS inspection (and from any "
                "HTTPS proxy) on the firewall or proxy the node's egress goes through: "
                f"Konnectivity needs TCP {port} to reach the API server untouched, with ALPN "
                "'konnectivity' intact (AKS routes the tunnel by it). Then test again: the "
                "certificate must come from the cluster CA and a protocol must be chosen.",
                commands=(retest,),
                notes=(_CA_NOTE, TUNNEL_POD_REMINDER),
            ),
            key=t.target,
            origin=Origin.TUNNELWATCH,
        )
    ]


def tunnel_findings(report: ProbeReport, where: Where) -> list[Finding]:
    """tunnel-front's own egress, TCP 9000 to the API server (the article's cause 4)."""
    if report.tunnel is None:
        return []
    out = []
    for r in report.tunnel.results:
        retest = where.invoke(_nc(r.target.host, 9000))
        reading = Reading(
            check="node.egress.tunnelfront",
            cause=Cause.EGRESS,
            subject=where.subject,
            key=r.target.label(),
            target=f"the API server {r.target.label()}",
            path=" from this node, where tunnel-front runs",
            remediation=Remediation(
                "Allow egress TCP 9000 from the node subnet to the API server (the "
                "article's fix for tunnel-front): the NSG outbound rules of the node "
                "subnet and NIC, and the rules of any firewall a route table sends "
                "the traffic to. Then test again.",
                commands=(retest,),
                notes=(TUNNEL_POD_REMINDER,),
            ),
            evidence_prefix="probe ",
        )
        finding = connection_finding(r, reading)
        if finding is not None:
            out.append(finding)
    return out
