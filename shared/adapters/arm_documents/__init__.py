"""Pure mappings from ARM REST documents (or SDK models) to shared.inventory.model dataclasses.

The ARM calls and their orchestration live in shared/adapters/arm_inventory.py; the functions
here take documents and return dataclasses, so they are tested without a server. (This package
was shared/adapters/inventory: "inventory" now means the estate model, shared/inventory, and
the reader that fills it, arm_inventory.py; the jobs' port for that reader is
shared.jobs.ports.Inventory.)
"""

from __future__ import annotations

from shared.adapters.arm_documents.clusters import (
    VMSS_POOL,
    load_balancer_ip_count,
    map_cluster,
    map_pool,
    pool_profiles,
)
from shared.adapters.arm_documents.network import (
    map_load_balancer,
    map_nat_gateway,
    map_nsg,
    map_subnet,
    map_vnet,
    peered_prefixes,
)
from shared.adapters.arm_documents.rest import as_doc
from shared.adapters.arm_documents.scalesets import (
    POOL_TAG,
    ScaleSetInfo,
    map_instances,
    map_scale_set,
    power_state_of,
)

__all__ = [
    "POOL_TAG",
    "VMSS_POOL",
    "ScaleSetInfo",
    "as_doc",
    "load_balancer_ip_count",
    "map_cluster",
    "map_instances",
    "map_load_balancer",
    "map_nat_gateway",
    "map_nsg",
    "map_pool",
    "map_scale_set",
    "map_subnet",
    "map_vnet",
    "peered_prefixes",
    "pool_profiles",
    "power_state_of",
]
