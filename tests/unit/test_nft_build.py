"""Builders of `nft -j list ruleset` JSON for the nftables tests, and a kube-proxy fixture.

KUBE_PROXY is the `ip kube-proxy` table kube-proxy's nftables mode creates (base chains
filter-prerouting, filter-input, nat-prerouting at the priorities pkg/proxy/nftables uses;
firewall-check, services, nodeport-endpoints-check, service-endpoints-check, reject-chain;
the service-ips, service-nodeports, no-endpoint-* and firewall-ips verdict maps), written for
these tests from that knowledge as nft text with a few services, loaded into a lab namespace
with nft 1.0.6 and listed back with `nft -j list ruleset` (output, forward and postrouting
chains left out: not on the input path). Node 10.224.0.4; NodePort 31001 has no endpoints;
20.1.2.3:443 has none either (drop).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ACCEPT",
    "CT_STATE",
    "DADDR",
    "DPORT",
    "DROP",
    "IIFNAME",
    "KUBE_PROXY",
    "SADDR",
    "chain",
    "doc",
    "m",
    "rule",
    "table",
]

SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
DADDR = {"payload": {"protocol": "ip", "field": "daddr"}}
DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}
CT_STATE = {"ct": {"key": "state"}}
IIFNAME = {"meta": {"key": "iifname"}}
ACCEPT: dict[str, Any] = {"accept": None}
DROP: dict[str, Any] = {"drop": None}


def m(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def table(family: str = "inet", name: str = "fw") -> dict[str, Any]:
    return {"table": {"family": family, "name": name, "handle": 1}}


def chain(
    name: str,
    hook: str | None = None,
    prio: int = 0,
    policy: str = "accept",
    *,
    family: str = "inet",
    tbl: str = "fw",
    type: str = "filter",
) -> dict[str, Any]:
    c: dict[str, Any] = {"family": family, "table": tbl, "name": name, "handle": 1}
    if hook is not None:
        c.update(type=type, hook=hook, prio=prio, policy=policy)
    return {"chain": c}


def rule(
    chain_name: str, handle: int, *expr: Any, family: str = "inet", tbl: str = "fw"
) -> dict[str, Any]:
    return {
        "rule": {
            "family": family,
            "table": tbl,
            "chain": chain_name,
            "handle": handle,
            "expr": list(expr),
        }
    }


def doc(*items: Any) -> str:
    meta = {"metainfo": {"version": "1.0.6", "json_schema_version": 1}}
    return json.dumps({"nftables": [meta, *items]})


_KUBE_PROXY_ITEMS = """
{"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}}
{"table":{"family":"ip","name":"kube-proxy","handle":33}}
{"set":{"family":"ip","name":"cluster-ips","table":"kube-proxy","type":"ipv4_addr","handle":23,"comment":"Active ClusterIPs","elem":["10.0.0.1","10.0.0.10"]}}
{"set":{"family":"ip","name":"nodeport-ips","table":"kube-proxy","type":"ipv4_addr","handle":24,"comment":"IPs that accept NodePort traffic","elem":["10.224.0.4"]}}
{"map":{"family":"ip","name":"firewall-ips","table":"kube-proxy","type":["ipv4_addr","inet_proto","inet_service"],"handle":25,"comment":"destinations that are subject to LoadBalancerSourceRanges","map":"verdict"}}
{"map":{"family":"ip","name":"no-endpoint-nodeports","table":"kube-proxy","type":["inet_proto","inet_service"],"handle":26,"comment":"vmap to drop or reject packets to service nodeports with no endpoints","map":"verdict","elem":[[{"concat":["tcp",31001]},{"goto":{"target":"reject-chain"}}]]}}
{"map":{"family":"ip","name":"no-endpoint-services","table":"kube-proxy","type":["ipv4_addr","inet_proto","inet_service"],"handle":27,"comment":"vmap to drop or reject packets to services with no endpoints","map":"verdict","elem":[[{"concat":["10.0.0.99","tcp",80]},{"goto":{"target":"reject-chain"}}],[{"concat":["20.1.2.3","tcp",443]},{"drop":null}]]}}
{"map":{"family":"ip","name":"service-ips","table":"kube-proxy","type":["ipv4_addr","inet_proto","inet_service"],"handle":28,"comment":"ClusterIP, ExternalIP and LoadBalancer IP traffic","map":"verdict","elem":[[{"concat":["10.0.0.10","udp",53]},{"goto":{"target":"service-FY5PMXPG-kube-system/kube-dns/udp/dns"}}],[{"concat":["10.0.0.1","tcp",443]},{"goto":{"target":"service-2QRHZV4L-default/kubernetes/tcp/https"}}]]}}
{"map":{"family":"ip","name":"service-nodeports","table":"kube-proxy","type":["inet_proto","inet_service"],"handle":29,"comment":"NodePort traffic","map":"verdict","elem":[[{"concat":["tcp",31000]},{"goto":{"target":"external-X-ns/web/tcp/http"}}]]}}
{"chain":{"family":"ip","table":"kube-proxy","name":"filter-prerouting","handle":1,"type":"filter","hook":"prerouting","prio":-110,"policy":"accept"}}
{"chain":{"family":"ip","table":"kube-proxy","name":"filter-input","handle":2,"type":"filter","hook":"input","prio":-110,"policy":"accept"}}
{"chain":{"family":"ip","table":"kube-proxy","name":"nat-prerouting","handle":6,"type":"nat","hook":"prerouting","prio":-100,"policy":"accept"}}
{"chain":{"family":"ip","table":"kube-proxy","name":"firewall-check","handle":10}}
{"chain":{"family":"ip","table":"kube-proxy","name":"mark-for-masquerade","handle":11}}
{"chain":{"family":"ip","table":"kube-proxy","name":"nodeport-endpoints-check","handle":13}}
{"chain":{"family":"ip","table":"kube-proxy","name":"reject-chain","handle":14}}
{"chain":{"family":"ip","table":"kube-proxy","name":"services","handle":15}}
{"chain":{"family":"ip","table":"kube-proxy","name":"service-endpoints-check","handle":16}}
{"chain":{"family":"ip","table":"kube-proxy","name":"service-2QRHZV4L-default/kubernetes/tcp/https","handle":17}}
{"chain":{"family":"ip","table":"kube-proxy","name":"endpoint-A-default/kubernetes/tcp/https__20.1.1.1/443","handle":18}}
{"chain":{"family":"ip","table":"kube-proxy","name":"service-FY5PMXPG-kube-system/kube-dns/udp/dns","handle":19}}
{"chain":{"family":"ip","table":"kube-proxy","name":"endpoint-B-kube-system/kube-dns/udp/dns__10.244.0.5/53","handle":20}}
{"chain":{"family":"ip","table":"kube-proxy","name":"endpoint-C-kube-system/kube-dns/udp/dns__10.244.0.6/53","handle":21}}
{"chain":{"family":"ip","table":"kube-proxy","name":"external-X-ns/web/tcp/http","handle":22}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"filter-prerouting","handle":30,"expr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":"new"}},{"jump":{"target":"firewall-check"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"filter-input","handle":31,"expr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":"new"}},{"jump":{"target":"nodeport-endpoints-check"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"filter-input","handle":32,"expr":[{"match":{"op":"in","left":{"ct":{"key":"state"}},"right":"new"}},{"jump":{"target":"service-endpoints-check"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"nat-prerouting","handle":39,"expr":[{"jump":{"target":"services"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"firewall-check","handle":44,"expr":[{"vmap":{"key":{"concat":[{"payload":{"protocol":"ip","field":"daddr"}},{"meta":{"key":"l4proto"}},{"payload":{"protocol":"th","field":"dport"}}]},"data":"@firewall-ips"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"mark-for-masquerade","handle":45,"expr":[{"mangle":{"key":{"meta":{"key":"mark"}},"value":{"|":[{"meta":{"key":"mark"}},16384]}}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"nodeport-endpoints-check","handle":49,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"@nodeport-ips"}},{"vmap":{"key":{"concat":[{"meta":{"key":"l4proto"}},{"payload":{"protocol":"th","field":"dport"}}]},"data":"@no-endpoint-nodeports"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"reject-chain","handle":50,"expr":[{"reject":{"type":"icmp","expr":"port-unreachable"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"services","handle":51,"expr":[{"vmap":{"key":{"concat":[{"payload":{"protocol":"ip","field":"daddr"}},{"meta":{"key":"l4proto"}},{"payload":{"protocol":"th","field":"dport"}}]},"data":"@service-ips"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"services","handle":52,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"@nodeport-ips"}},{"vmap":{"key":{"concat":[{"meta":{"key":"l4proto"}},{"payload":{"protocol":"th","field":"dport"}}]},"data":"@service-nodeports"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"service-endpoints-check","handle":53,"expr":[{"vmap":{"key":{"concat":[{"payload":{"protocol":"ip","field":"daddr"}},{"meta":{"key":"l4proto"}},{"payload":{"protocol":"th","field":"dport"}}]},"data":"@no-endpoint-services"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"service-2QRHZV4L-default/kubernetes/tcp/https","handle":54,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"10.0.0.1"}},{"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.244.0.0","len":16}}}},{"jump":{"target":"mark-for-masquerade"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"service-2QRHZV4L-default/kubernetes/tcp/https","handle":56,"expr":[{"vmap":{"key":{"numgen":{"mode":"random","mod":1,"offset":0}},"data":{"set":[[0,{"goto":{"target":"endpoint-A-default/kubernetes/tcp/https__20.1.1.1/443"}}]]}}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"endpoint-A-default/kubernetes/tcp/https__20.1.1.1/443","handle":57,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"20.1.1.1"}},{"jump":{"target":"mark-for-masquerade"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"endpoint-A-default/kubernetes/tcp/https__20.1.1.1/443","handle":58,"expr":[{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"tcp"}},{"dnat":{"addr":"20.1.1.1","port":443}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"service-FY5PMXPG-kube-system/kube-dns/udp/dns","handle":59,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"10.0.0.10"}},{"match":{"op":"!=","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.244.0.0","len":16}}}},{"jump":{"target":"mark-for-masquerade"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"service-FY5PMXPG-kube-system/kube-dns/udp/dns","handle":61,"expr":[{"vmap":{"key":{"numgen":{"mode":"random","mod":2,"offset":0}},"data":{"set":[[0,{"goto":{"target":"endpoint-B-kube-system/kube-dns/udp/dns__10.244.0.5/53"}}],[1,{"goto":{"target":"endpoint-C-kube-system/kube-dns/udp/dns__10.244.0.6/53"}}]]}}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"endpoint-B-kube-system/kube-dns/udp/dns__10.244.0.5/53","handle":62,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"10.244.0.5"}},{"jump":{"target":"mark-for-masquerade"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"endpoint-B-kube-system/kube-dns/udp/dns__10.244.0.5/53","handle":63,"expr":[{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"udp"}},{"dnat":{"addr":"10.244.0.5","port":53}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"endpoint-C-kube-system/kube-dns/udp/dns__10.244.0.6/53","handle":64,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"10.244.0.6"}},{"jump":{"target":"mark-for-masquerade"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"endpoint-C-kube-system/kube-dns/udp/dns__10.244.0.6/53","handle":65,"expr":[{"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"udp"}},{"dnat":{"addr":"10.244.0.6","port":53}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"external-X-ns/web/tcp/http","handle":66,"expr":[{"jump":{"target":"mark-for-masquerade"}}]}}
{"rule":{"family":"ip","table":"kube-proxy","chain":"external-X-ns/web/tcp/http","handle":67,"expr":[{"goto":{"target":"service-2QRHZV4L-default/kubernetes/tcp/https"}}]}}
"""

KUBE_PROXY = json.dumps(
    {"nftables": [json.loads(x) for x in _KUBE_PROXY_ITEMS.strip().splitlines()]}
)


def test_the_fixture_is_what_nft_lists() -> None:
    items = json.loads(KUBE_PROXY)["nftables"]
    kinds = {next(iter(i)) for i in items}
    assert kinds == {"metainfo", "table", "set", "map", "chain", "rule"}
    assert json.loads(doc(table()))["nftables"][1] == table()
