"""The ARM inventory: one subscription's AKS estate read with a fixed number of list calls.

Cost (the scan runs every few minutes on subscriptions of any size):
- subscription-wide lists, each fully paged through nextLink by the SDK's ItemPaged:
  managedClusters (agent pools come inline), virtualMachineScaleSets, virtualNetworks
  (subnets and peerings inline), networkSecurityGroups, loadBalancers, natGateways;
- per scale set of a cluster's pool: its instances with the instance view (power state) and,
  when it has instances, its NICs (private IPs, NIC NSG).
Nothing per node and no per-cluster GETs.

Failures: if the cluster list itself fails there is no estate and the error propagates. Any
other failed list becomes a subscription-wide ReadError (every cluster lacks that input), a
failed scale-set call one naming its cluster and pool, and everything else is still returned.
References that the lists do not contain (a subnet, NSG or NAT gateway in another subscription)
are recorded the same way, so a check can say "not read" instead of assuming it is absent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError

from shared.adapters.arm_documents import (
    VMSS_POOL,
    ScaleSetInfo,
    as_doc,
    map_cluster,
    map_instances,
    map_load_balancer,
    map_nat_gateway,
    map_nsg,
    map_pool,
    map_scale_set,
    map_vnet,
    pool_profiles,
)
from shared.adapters.arm_documents.rest import Doc, docs, obj, ref_id, text
from shared.adapters.clients import ArmClients
from shared.inventory.model import (
    AgentPool,
    Cluster,
    Estate,
    Instance,
    NatGateway,
    NsgDocument,
    Read,
    ReadError,
    Subnet,
    id_key,
)

__all__ = ["DEFAULT_WORKERS", "describe_error", "read_estate"]

log = logging.getLogger(__name__)

DEFAULT_WORKERS = 8  # scale-set reads in flight; well inside ARM's 250-read burst


def describe_error(exc: BaseException) -> str:
    """One line for Estate.errors: HTTP status, ARM error code and message (no headers)."""
    if isinstance(exc, HttpResponseError):
        code = getattr(exc.error, "code", None) if exc.error is not None else None
        message = getattr(exc.error, "message", None) if exc.error is not None else None
        message = message or exc.reason or exc.message or type(exc).__name__
        first_line = str(message).strip().splitlines()[0] if str(message).strip() else ""
        parts = [f"HTTP {exc.status_code}" if exc.status_code else "HTTP error"]
        if code:
            parts.append(str(code))
        return f"{' '.join(parts)}: {first_line[:300]}"
    text_ = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text_[0][:300] if text_ else ''}"


def _read_list(
    what: Read, call: Callable[[], Iterable[Any]], errors: list[ReadError], subscription: str
) -> tuple[list[Doc], bool]:
    """Iterate a list call to the end; a failure is recorded and what was read is kept."""
    items: list[Doc] = []
    try:
        for item in call():
            items.append(as_doc(item))
    except AzureError as exc:
        line = f"subscription {subscription}: {what.value} failed: {describe_error(exc)}"
        log.warning(
            "subscription %s: %s failed after %d items: %s",
            subscription,
            what.value,
            len(items),
            describe_error(exc),
        )
        errors.append(ReadError(what, line))
        return items, False
    return items, True


@dataclass(frozen=True, slots=True)
class _ScaleSetRead:
    instances: tuple[Instance, ...]
    errors: tuple[ReadError, ...]


def _read_scale_set(
    clients: ArmClients, cluster_id: str, pool: str, ss: ScaleSetInfo
) -> _ScaleSetRead:
    """The per-scale-set calls: instances (with power state), then NICs if there are any."""
    where = f"cluster {cluster_id}: pool {pool}: scale set {ss.id}"
    errors: list[ReadError] = []
    try:
        vms = [
            as_doc(vm)
            for vm in clients.compute.virtual_machine_scale_set_vms.list(
                ss.resource_group, ss.name, expand="instanceView"
            )
        ]
    except AzureError as exc:
        log.warning(
            "cluster %s: pool %s: instance list failed: %s", cluster_id, pool, describe_error(exc)
        )
        line = f"{where}: instance list failed: {describe_error(exc)}"
        return _ScaleSetRead((), (ReadError(Read.INSTANCES, line, cluster_id, pool),))
    nics: list[Doc] | None = None
    if vms:  # an empty pool has no NICs: save the call
        try:
            nic_ops = clients.network.network_interfaces
            nics = [
                as_doc(nic)
                for nic in nic_ops.list_virtual_machine_scale_set_network_interfaces(
                    ss.resource_group, ss.name
                )
            ]
        except AzureError as exc:
            log.warning(
                "cluster %s: pool %s: NIC list failed: %s", cluster_id, pool, describe_error(exc)
            )
            line = f"{where}: NIC list failed (no private IPs): {describe_error(exc)}"
            errors.append(ReadError(Read.POOL_NICS, line, cluster_id, pool))
    instances = map_instances(vms, nics)
    log.debug("cluster %s: pool %s: %d instances", cluster_id, pool, len(instances))
    return _ScaleSetRead(instances, tuple(errors))


@dataclass(frozen=True, slots=True)
class _Job:
    cluster_key: str
    pool: str
    cluster_id: str
    scale_set: ScaleSetInfo


def _match_scale_sets(
    cluster_docs: list[Doc],
    scale_sets: list[ScaleSetInfo],
    scale_sets_ok: bool,
    errors: list[ReadError],
) -> dict[tuple[str, str], ScaleSetInfo]:
    """(cluster id key, pool name) -> its scale set, by node resource group and pool tag."""
    index: dict[tuple[str, str], list[ScaleSetInfo]] = {}
    for ss in scale_sets:
        if ss.pool_name:
            index.setdefault((ss.resource_group.lower(), ss.pool_name.lower()), []).append(ss)
    matched: dict[tuple[str, str], ScaleSetInfo] = {}
    for doc in cluster_docs:
        cluster_id = text(doc, "id") or ""
        node_rg = (text(doc.get("properties"), "nodeResourceGroup") or "").lower()
        for profile in pool_profiles(doc):
            pool = text(profile, "name") or ""
            if (text(profile, "type") or VMSS_POOL) != VMSS_POOL:
                log.info(
                    "cluster %s: pool %s is a %s pool (no scale set): not covered yet",
                    cluster_id,
                    pool,
                    text(profile, "type"),
                )
                continue
            if not scale_sets_ok:
                continue  # the failed list is one subscription-wide error: every pool lacks it
            where = f"cluster {cluster_id}: pool {pool}"

            def unmatched(line: str, cluster_id: str = cluster_id, pool: str = pool) -> None:
                errors.append(ReadError(Read.POOL_SCALE_SET, line, cluster_id, pool))

            if not node_rg:
                unmatched(f"{where}: the cluster names no node resource group")
                continue
            candidates = index.get((node_rg, pool.lower()), [])
            if len(candidates) == 1:
                matched[(id_key(cluster_id), pool)] = candidates[0]
            elif not candidates:
                unmatched(
                    f"{where}: no scale set tagged aks-managed-poolName={pool} in node "
                    f"resource group {node_rg}"
                )
            else:
                names = ", ".join(sorted(c.name for c in candidates))
                unmatched(f"{where}: several scale sets claim this pool ({names}); none used")
    return matched


def _is_private(doc: Doc) -> bool:
    return bool(obj(doc, "properties", "apiServerAccessProfile").get("enablePrivateCluster"))


def _private_endpoint_ips(nic_docs: list[Doc]) -> dict[str, tuple[str, ...]]:
    """node resource group (lower) -> addresses of its `kube-apiserver` private endpoint NIC."""
    found: dict[str, tuple[str, ...]] = {}
    for nic in nic_docs:
        pe_id = ref_id(nic, "properties", "privateEndpoint") or ""
        parts = pe_id.strip("/").split("/")
        if len(parts) < 8 or parts[-1].lower() != "kube-apiserver":
            continue
        ips = tuple(
            ip
            for config in docs(nic, "properties", "ipConfigurations")
            if (ip := text(obj(config, "properties"), "privateIPAddress"))
        )
        if ips:
            found[parts[3].lower()] = ips
    return found


def _dangling(
    cluster: Cluster,
    subnets: dict[str, Subnet],
    nsgs: dict[str, NsgDocument],
    nats: dict[str, NatGateway],
) -> list[ReadError]:
    """References the subscription-wide lists did not return (other subscription, no access)."""
    out: dict[str, Read] = {}
    wanted: list[tuple[str, str | None]] = [("API server subnet", cluster.api_server_subnet_id)]
    for pool in cluster.pools:
        wanted += [
            (f"pool {pool.name} node subnet", pool.node_subnet_id),
            (f"pool {pool.name} pod subnet", pool.pod_subnet_id),
        ]
        if pool.nic_nsg_id and id_key(pool.nic_nsg_id) not in nsgs:
            out.setdefault(
                f"pool {pool.name} NIC NSG {pool.nic_nsg_id} not found", Read.NETWORK_REFERENCE
            )
    for label, subnet_id in wanted:
        if subnet_id is None:
            continue
        subnet = subnets.get(id_key(subnet_id))
        if subnet is None:
            out.setdefault(f"{label} {subnet_id} not found", Read.NETWORK_REFERENCE)
            continue
        if subnet.nsg_id and id_key(subnet.nsg_id) not in nsgs:
            out.setdefault(f"{label}: its NSG {subnet.nsg_id} not found", Read.NETWORK_REFERENCE)
        if subnet.nat_gateway_id and id_key(subnet.nat_gateway_id) not in nats:
            line = f"{label}: its NAT gateway {subnet.nat_gateway_id} not found"
            out.setdefault(line, Read.NAT_REFERENCE)
    return [
        ReadError(
            read,
            f"cluster {cluster.id}: {line} in subscription {cluster.subscription}'s lists",
            cluster.id,
        )
        for line, read in out.items()
    ]


def read_estate(
    clients: ArmClients,
    subscription: str,
    *,
    now: datetime | None = None,
    max_workers: int = DEFAULT_WORKERS,
) -> Estate:
    """Read one subscription's AKS estate. `now` only stamps the log lines (no clock here)."""
    if subscription.lower() != clients.subscription.lower():
        raise ValueError(f"clients are for subscription {clients.subscription}, not {subscription}")
    log.info(
        "subscription %s: reading inventory (scan time %s)",
        subscription,
        now.isoformat() if now else "not given",
    )
    errors: list[ReadError] = []
    # No clusters, no estate: this failure is the caller's to record for the subscription.
    cluster_docs = [as_doc(c) for c in clients.container.managed_clusters.list()]
    compute, network = clients.compute, clients.network

    def listed(what: Read, call: Callable[[], Iterable[Any]]) -> tuple[list[Doc], bool]:
        return _read_list(what, call, errors, subscription)

    ss_docs, ss_ok = listed(Read.SCALE_SETS, compute.virtual_machine_scale_sets.list_all)
    vnet_docs, _ = listed(Read.VNETS, network.virtual_networks.list_all)
    nsg_docs, _ = listed(Read.NSGS, network.network_security_groups.list_all)
    lb_docs, _ = listed(Read.LOAD_BALANCERS, network.load_balancers.list_all)
    nat_docs, _ = listed(Read.NAT_GATEWAYS, network.nat_gateways.list_all)

    # Private clusters only: the API server's private endpoint address is on a NIC in the node
    # resource group; one more subscription-wide list, made only when a private cluster exists.
    private = [d for d in cluster_docs if _is_private(d)]
    pe_ips = (
        _private_endpoint_ips(listed(Read.NICS, network.network_interfaces.list_all)[0])
        if private
        else {}
    )

    scale_sets = [map_scale_set(d) for d in ss_docs]
    matched = _match_scale_sets(cluster_docs, scale_sets, ss_ok, errors)
    cluster_ids = {id_key(text(d, "id") or ""): text(d, "id") or "" for d in cluster_docs}
    jobs = [_Job(key[0], key[1], cluster_ids[key[0]], ss) for key, ss in matched.items()]
    reads: dict[tuple[str, str], _ScaleSetRead] = {}
    if jobs:
        # One scale set's failure is caught inside its job, so the pool never aborts the rest.
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(jobs)))) as pool:
            futures = {
                (j.cluster_key, j.pool): pool.submit(
                    _read_scale_set, clients, j.cluster_id, j.pool, j.scale_set
                )
                for j in jobs
            }
            reads = {key: future.result() for key, future in futures.items()}

    vnets = tuple(map_vnet(d) for d in vnet_docs)
    nsgs = tuple(map_nsg(d) for d in nsg_docs)
    nats = tuple(map_nat_gateway(d) for d in nat_docs)
    subnets = {id_key(s.id): s for v in vnets for s in v.subnets}
    nsg_index = {id_key(n.id): n for n in nsgs}
    nat_index = {id_key(n.id): n for n in nats}

    clusters: list[Cluster] = []
    for doc in cluster_docs:
        cluster_id = text(doc, "id") or ""
        pools: list[AgentPool] = []
        for profile in pool_profiles(doc):
            name = text(profile, "name") or ""
            key = (id_key(cluster_id), name)
            read = reads.get(key)
            if read is not None:
                errors.extend(read.errors)
            pools.append(map_pool(profile, matched.get(key), read.instances if read else ()))
        cluster = map_cluster(doc, subscription, tuple(pools))
        if cluster.private_cluster:
            ips = pe_ips.get(cluster.node_resource_group.lower(), ())
            cluster = replace(cluster, api_server_private_ips=ips)
            if not ips:
                line = (
                    f"cluster {cluster.id}: no kube-apiserver private endpoint address found in "
                    f"node resource group {cluster.node_resource_group}"
                )
                errors.append(ReadError(Read.PRIVATE_ENDPOINT, line, cluster.id))
        errors.extend(_dangling(cluster, subnets, nsg_index, nat_index))
        log.info(
            "cluster %s: %d pools, %d instances",
            cluster.id,
            len(cluster.pools),
            sum(len(p.instances) for p in cluster.pools),
        )
        clusters.append(cluster)

    return Estate(
        subscription=subscription,
        clusters=tuple(clusters),
        vnets=vnets,
        nsgs=nsgs,
        load_balancers=tuple(map_load_balancer(d) for d in lb_docs),
        nat_gateways=nats,
        errors=tuple(errors),
    )
