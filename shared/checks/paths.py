"""NSG checks of one cluster's tunnel paths: cause 1 (TCP 10250 to nodes) and egress (cause 4).

For clusters with a tunnel, the agent on any Linux node (or, with a pod subnet, any pod address)
must reach every node's kubelet on TCP 10250, and every Linux node must reach the API server on
TCP 443 (our extension of cause 4; 9000/1194 when asked). Both ends' NSGs count: the source's
NIC and subnet NSGs outbound, the destination's subnet and NIC NSGs inbound. With API Server
VNet Integration there is no tunnel: the API server subnet reaches the nodes directly, and the
nodes reach the API server's internal load balancer.

Each subnet is cut into segments (shared/checks/segments.py) so one flow per segment pair decides
for every address. Findings are deduplicated by fingerprint; the evidence says how many segment
pairs the same deny affects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from shared.analysis.findings import Finding, Kind, Origin, Remediation, Severity, Subject
from shared.analysis.nsg import (
    Flow,
    Nsg,
    NsgFlowVerdict,
    ServiceTags,
    TagContext,
    evaluate_flow,
    findings_for,
    parse_nsg,
    propose_fix,
)
from shared.analysis.nsg.model import Direction, Protocol
from shared.checks.segments import nsg_boundaries, segments
from shared.errors import InputError
from shared.inventory.model import AgentPool, Cluster, Estate, Subnet, VirtualNetwork, id_key

__all__ = ["Endpoint", "PathChecker", "PathResult"]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
KUBELET_PORT = 10250


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of a path: a subnet (or its part a pool uses) with the NSGs that guard it."""

    label: str
    pool: AgentPool | None
    vnet: VirtualNetwork
    subnet: Subnet
    prefixes: tuple[IpNetwork, ...]
    nic_nsg_id: str | None
    asg_ids: frozenset[str]


@dataclass
class PathResult:
    findings: list[Finding] = field(default_factory=list)
    flows_evaluated: int = 0


@dataclass
class PathChecker:
    """Checks clusters of one estate; parses each NSG once for the whole scan."""

    estate: Estate
    service_tags: ServiceTags | None = None
    check_legacy_ports: bool = False
    _nsgs: dict[str, Nsg | InputError] = field(default_factory=dict)

    # -- NSGs -----------------------------------------------------------------------------

    def nsg(self, nsg_id: str | None) -> Nsg | None:
        if nsg_id is None:
            return None
        key = id_key(nsg_id)
        if key not in self._nsgs:
            doc = self.estate.nsg(nsg_id)
            if doc is None:
                self._nsgs[key] = InputError(nsg_id, "NSG referenced but not found in the scan")
            else:
                try:
                    self._nsgs[key] = parse_nsg(doc.document, doc.id)
                except InputError as exc:
                    self._nsgs[key] = exc
        got = self._nsgs[key]
        if isinstance(got, InputError):
            raise got
        return got

    def _context(self, vnet: VirtualNetwork) -> TagContext:
        prefixes = tuple(_networks(vnet.vnet_tag_prefixes))
        return TagContext(vnet_prefixes=prefixes, service_tags=self.service_tags)

    # -- endpoints ------------------------------------------------------------------------

    def _endpoint(
        self, label: str, pool: AgentPool | None, subnet_id: str | None, nic_nsg_id: str | None
    ) -> Endpoint | None:
        found = self.estate.subnet(subnet_id)
        if found is None:
            return None
        vnet, subnet = found
        asgs = frozenset(a.lower() for a in pool.asg_ids) if pool else frozenset()
        return Endpoint(
            label, pool, vnet, subnet, tuple(_networks(subnet.prefixes)), nic_nsg_id, asgs
        )

    def endpoints(self, cluster: Cluster) -> tuple[list[Endpoint], list[Endpoint], list[Finding]]:
        """(sources the tunnel agent sends from, node destinations, coverage findings)."""
        sources: list[Endpoint] = []
        targets: list[Endpoint] = []
        coverage: list[Finding] = []
        pods_have_vnet_ips = cluster.network_plugin == "azure" and cluster.network_plugin_mode != (
            "overlay"
        )
        for pool in cluster.pools:
            if pool.count == 0:
                continue
            node = self._endpoint(
                f"pool {pool.name} nodes", pool, pool.node_subnet_id, pool.nic_nsg_id
            )
            if node is None:
                coverage.append(_missing_subnet(cluster, pool))
                continue
            targets.append(node)
            if pool.os_type.lower() != "linux":
                continue  # the tunnel agent runs on Linux nodes only
            sources.append(node)
            if pods_have_vnet_ips and pool.pod_subnet_id:
                pods = self._endpoint(
                    f"pool {pool.name} pods", pool, pool.pod_subnet_id, pool.nic_nsg_id
                )
                if pods is None:
                    coverage.append(_missing_subnet(cluster, pool, pod=True))
                else:
                    sources.append(pods)
        return sources, targets, coverage

    # -- checks ---------------------------------------------------------------------------

    def check(self, cluster: Cluster, api_server_ips: Iterable[str]) -> PathResult:
        result = PathResult()
        sources, targets, coverage = self.endpoints(cluster)
        result.findings.extend(coverage)
        api_ips = list(api_server_ips)
        if not cluster.has_tunnel:
            api = self._endpoint("API server subnet", None, cluster.api_server_subnet_id, None)
            if api is None:
                result.findings.append(_api_subnet_unknown(cluster))
            else:
                sources = [api]
        for src in sources:
            for dst in targets:
                self._pair(cluster, src, dst, KUBELET_PORT, Protocol.TCP, result)
        egress_from = [t for t in targets if t.pool and t.pool.os_type.lower() == "linux"]
        if not api_ips:
            if egress_from:
                result.findings.append(_api_address_unknown(cluster))
            return result
        ports = [(443, Protocol.TCP)]
        if self.check_legacy_ports:
            ports += [(9000, Protocol.TCP), (1194, Protocol.UDP)]
        for src in egress_from:
            for ip in api_ips:
                for port, proto in ports:
                    self._egress(cluster, src, ipaddress.ip_address(ip), port, proto, result)
        return result

    def _pair(
        self,
        cluster: Cluster,
        src: Endpoint,
        dst: Endpoint,
        port: int,
        proto: Protocol,
        result: PathResult,
    ) -> None:
        try:
            src_subnet, src_nic = self.nsg(src.subnet.nsg_id), self.nsg(src.nic_nsg_id)
            dst_subnet, dst_nic = self.nsg(dst.subnet.nsg_id), self.nsg(dst.nic_nsg_id)
        except InputError as exc:
            result.findings.append(_unreadable_nsg(cluster, exc))
            return
        extra = [*src.prefixes, *dst.prefixes, *_networks(src.vnet.vnet_tag_prefixes)]
        cuts = nsg_boundaries((src_subnet, src_nic, dst_subnet, dst_nic), extra)
        seen: dict[str, Finding] = {}
        counts: dict[str, int] = {}
        for src_net in src.prefixes:
            src_segments, _ = segments(src_net, cuts)
            for dst_net in dst.prefixes:
                dst_segments, _ = segments(dst_net, cuts)
                for s in src_segments:
                    for d in dst_segments:
                        for direction, subnet_nsg, nic_nsg, vnet, pool in (
                            (Direction.OUTBOUND, src_subnet, src_nic, src.vnet, src.pool),
                            (Direction.INBOUND, dst_subnet, dst_nic, dst.vnet, dst.pool),
                        ):
                            flow = Flow(
                                direction,
                                s.representative,
                                d.representative,
                                port,
                                proto,
                                src_asgs=src.asg_ids,
                                dst_asgs=dst.asg_ids,
                            )
                            verdict = evaluate_flow(flow, subnet_nsg, nic_nsg, self._context(vnet))
                            result.flows_evaluated += 1
                            if verdict.verdict is NsgFlowVerdict.ALLOW:
                                continue
                            fix = propose_fix(verdict, fix_source=src_net, fix_destination=dst_net)
                            subject = _subject(cluster, pool, verdict)
                            for raw in findings_for(verdict, subject, fix=fix):
                                f = _with_context(raw, src, dst, s.label(), d.label())
                                seen.setdefault(f.fingerprint, f)
                                counts[f.fingerprint] = counts.get(f.fingerprint, 0) + 1
        for fp, f in seen.items():
            many = counts[fp] > 1
            note = f"the same decision holds for {counts[fp]} address ranges"
            result.findings.append(_add_evidence(f, note) if many else f)

    def _egress(
        self,
        cluster: Cluster,
        src: Endpoint,
        api_ip: IpAddress,
        port: int,
        proto: Protocol,
        result: PathResult,
    ) -> None:
        try:
            subnet_nsg, nic_nsg = self.nsg(src.subnet.nsg_id), self.nsg(src.nic_nsg_id)
        except InputError as exc:
            result.findings.append(_unreadable_nsg(cluster, exc))
            return
        cuts = nsg_boundaries((subnet_nsg, nic_nsg), _networks(src.vnet.vnet_tag_prefixes))
        seen: dict[str, Finding] = {}
        for src_net in src.prefixes:
            for s in segments(src_net, cuts)[0]:
                flow = Flow(
                    Direction.OUTBOUND, s.representative, api_ip, port, proto,
                    src_asgs=src.asg_ids,
                )  # fmt: skip
                verdict = evaluate_flow(flow, subnet_nsg, nic_nsg, self._context(src.vnet))
                result.flows_evaluated += 1
                if verdict.verdict is NsgFlowVerdict.ALLOW:
                    continue
                fix = propose_fix(
                    verdict, fix_source=src_net, fix_destination=ipaddress.ip_network(api_ip)
                )
                for f in findings_for(verdict, _subject(cluster, src.pool, verdict), fix=fix):
                    seen.setdefault(
                        f.fingerprint, _with_context(f, src, None, s.label(), str(api_ip))
                    )
        result.findings.extend(seen.values())


# -- helpers ----------------------------------------------------------------------------------


def _networks(prefixes: Iterable[str]) -> list[IpNetwork]:
    nets = []
    for p in prefixes:
        try:
            nets.append(ipaddress.ip_network(p, strict=False))
        except ValueError:
            continue  # ARM returned something that is not a prefix; it cannot cut a subnet
    return nets


def _subject(cluster: Cluster, pool: AgentPool | None, verdict: object) -> Subject:
    deciders = getattr(verdict, "decided_by", ())
    resource = deciders[0].nsg_id if deciders else ""
    return Subject(
        subscription=cluster.subscription,
        cluster=cluster.id,
        node_pool=pool.name if pool else "",
        resource=resource,
    )


def _with_context(f: Finding, src: Endpoint, dst: Endpoint | None, s: str, d: str) -> Finding:
    to = dst.label if dst else "the API server"
    return _add_evidence(f, f"path: {src.label} ({s}) -> {to} ({d})")


def _add_evidence(f: Finding, line: str) -> Finding:
    return replace(f, evidence=(*f.evidence, line))


def _cluster_subject(cluster: Cluster, pool: AgentPool | None = None) -> Subject:
    return Subject(
        subscription=cluster.subscription,
        cluster=cluster.id,
        node_pool=pool.name if pool else "",
    )


def _missing_subnet(cluster: Cluster, pool: AgentPool, pod: bool = False) -> Finding:
    which = "pod subnet" if pod else "node subnet"
    ref = pool.pod_subnet_id if pod else pool.node_subnet_id
    return Finding(
        check="nsg.coverage",
        cause=None,
        kind=Kind.COVERAGE,
        severity=Severity.WARNING,
        subject=_cluster_subject(cluster, pool),
        title=f"Cannot check NSGs of pool {pool.name}: its {which} was not found",
        evidence=(f"{which}: {ref or '(none recorded on the pool or its scale set)'}",),
        remediation=Remediation(
            "Give tunnelwatch's identity Reader on the virtual network's resource group "
            "(a bring-your-own VNet often lives outside the cluster's resource groups)"
        ),
        key=f"{which}:{pool.name}",
        origin=Origin.TUNNELWATCH,
    )


def _api_subnet_unknown(cluster: Cluster) -> Finding:
    return Finding(
        check="nsg.coverage",
        cause=None,
        kind=Kind.COVERAGE,
        severity=Severity.WARNING,
        subject=_cluster_subject(cluster),
        title="API Server VNet Integration: the API server subnet was not found",
        evidence=(f"apiServerAccessProfile.subnetId: {cluster.api_server_subnet_id or '(none)'}",),
        remediation=Remediation("Give tunnelwatch's identity Reader on the VNet's resource group"),
        key="api-server-subnet",
        origin=Origin.TUNNELWATCH,
    )


def _api_address_unknown(cluster: Cluster) -> Finding:
    name = cluster.private_fqdn if cluster.private_cluster else cluster.fqdn
    return Finding(
        check="nsg.outbound",
        cause=None,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=_cluster_subject(cluster),
        title="Cannot check egress to the API server: its address is unknown",
        evidence=(f"API server name: {name or '(none)'} did not resolve",),
        remediation=Remediation(
            "Run the scan where the API server name resolves (private clusters: inside the "
            "VNet or with the private DNS zone linked)"
        ),
        key="api-server-address",
        origin=Origin.TUNNELWATCH,
    )


def _unreadable_nsg(cluster: Cluster, exc: InputError) -> Finding:
    return Finding(
        check="nsg.coverage",
        cause=None,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        subject=Subject(subscription=cluster.subscription, cluster=cluster.id, resource=exc.source),
        title="An NSG on the tunnel path could not be read",
        evidence=(str(exc),),
        remediation=Remediation(
            "Check that tunnelwatch's identity can read the NSG (Reader on its resource group)"
        ),
        key=f"unreadable:{exc.source.lower()}",
        origin=Origin.TUNNELWATCH,
    )
