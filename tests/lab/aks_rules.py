"""The iptables rules a healthy AKS Linux node carries, as `iptables-restore` input.

What the node lab loads into every node before any fault, so that the probe and the analysis
engine meet the rules of a real node (and must not call them a block of TCP 10250). Where each
part comes from (checked with the search tool; the text is written here, not copied):

- INPUT/FORWARD/OUTPUT jumps to KUBE-SERVICES / KUBE-EXTERNAL-SERVICES / KUBE-FIREWALL with
  `--ctstate NEW`, FORWARD -> KUBE-FORWARD, and the wireserver DROP in FORWARD: an AKS node's
  `iptables --list` in Azure/AKS issue #2225.
- `-A FORWARD -d 168.63.129.16 -p tcp --dport 80|32526 -j DROP` (pods may not reach the
  wireserver / HostGAPlugin; the host still can through OUTPUT): Azure/AgentBaker
  parts/linux/cloud-init/artifacts/block_wireserver.sh and PR #4470.
- The wireserver rules of the Azure Linux agent in the `security` table's OUTPUT (DNS over TCP
  for everyone, root only otherwise, NEW/INVALID from others dropped): Azure/WALinuxAgent
  PRs #914 and #2368, issue #976.
- KUBE-FIREWALL's drop of martian traffic to 127.0.0.0/8 (CVE-2020-8558):
  kubernetes/kubernetes PR #91569 and issue #92315 (`! -s 127.0.0.0/8 -d 127.0.0.0/8 ...
  ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`).
- kube-proxy's iptables mode (KUBE-PROXY-FIREWALL for loadBalancerSourceRanges, KUBE-NODEPORTS
  health-check ACCEPTs, REJECTs for services without endpoints in KUBE-SERVICES and
  KUBE-EXTERNAL-SERVICES, the nat chains KUBE-SVC-*/KUBE-SEP-*/KUBE-MARK-MASQ/KUBE-POSTROUTING):
  kubernetes pkg/proxy/iptables/proxier.go, built with bench/gen_kubeproxy.py's pieces.
- IP-MASQ-AGENT in nat POSTROUTING (the AKS ip-masq-agent add-on: no SNAT inside the node and
  pod ranges): kubernetes-sigs/ip-masq-agent and Azure/ip-masq-agent-v2 READMEs.

Every REJECT/DROP here is bound to another destination or port than TCP 10250 on the node's
own address, so none of them blocks the tunnel: that is what a healthy cluster must show.
Which backend holds the rules (legacy on Ubuntu, nft on Azure Linux) is the lab's choice per
image; the rules are the same.
"""

from __future__ import annotations

from bench.gen_kubeproxy import (
    FILTER_CHAINS,
    INPUT_RULES,
    KUBE_FIREWALL_RULES,
    MASQ_RULES,
    NAT_ENTRY_RULES,
    NODEPORTS_LAST,
    chain_name,
    cluster_ip,
    endpoint,
    no_endpoints,
    node_port,
)

__all__ = ["SERVICES", "Service", "standard_rules"]

# (namespace/name:port, cluster IP, port, endpoints, node port or 0, LB IP or "", source range)
Service = tuple[str, str, int, int, int, str, str]
SERVICES: tuple[Service, ...] = (
    ("default/kubernetes:https", "10.0.0.1", 443, 1, 0, "", ""),
    ("kube-system/kube-dns:dns-tcp", "10.0.0.10", 53, 2, 0, "", ""),
    ("kube-system/metrics-server", "10.0.172.51", 443, 2, 0, "", ""),
    ("shop/web:http", "10.0.31.7", 80, 3, 31380, "20.62.9.40", "203.0.113.0/24"),
    ("shop/cart:http", "10.0.88.12", 8080, 0, 0, "", ""),  # no endpoints: REJECT
    ("shop/legacy:http", "10.0.90.3", 80, 0, 30991, "20.62.9.41", ""),  # no endpoints, external
    ("monitoring/grafana", "10.0.60.20", 3000, 1, 0, "", ""),
)


def standard_rules(node_subnets: list[str], pod_cidr: str = "10.244.0.0/16") -> str:
    """filter, nat and security tables of a healthy node (iptables-restore format)."""
    filt = [
        "*filter",
        *FILTER_CHAINS,
        *INPUT_RULES,
        "-A FORWARD -d 168.63.129.16/32 -p tcp -m tcp --dport 32526 -j DROP",
        "-A FORWARD -d 168.63.129.16/32 -p tcp -m tcp --dport 80 -j DROP",
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer '
        'firewall" -j KUBE-PROXY-FIREWALL',
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals"'
        " -j KUBE-SERVICES",
        '-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible'
        ' service portals" -j KUBE-EXTERNAL-SERVICES',
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer '
        'firewall" -j KUBE-PROXY-FIREWALL',
        '-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" '
        "-j KUBE-SERVICES",
        "-A OUTPUT -j KUBE-FIREWALL",
        *KUBE_FIREWALL_RULES,
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack'
        " --ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]
    nat = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
        ":IP-MASQ-AGENT - [0:0]",
        ":KUBE-KUBELET-CANARY - [0:0]",
        ":KUBE-MARK-MASQ - [0:0]",
        ":KUBE-NODEPORTS - [0:0]",
        ":KUBE-POSTROUTING - [0:0]",
        ":KUBE-PROXY-CANARY - [0:0]",
        ":KUBE-SERVICES - [0:0]",
    ]
    nat_rules = [
        *NAT_ENTRY_RULES,
        '-A POSTROUTING -m comment --comment "ip-masq-agent: ensure nat POSTROUTING directs all '
        'non-LOCAL destination traffic to our custom IP-MASQ-AGENT chain" -m addrtype ! '
        "--dst-type LOCAL -j IP-MASQ-AGENT",
        *(
            f'-A IP-MASQ-AGENT -d {net} -m comment --comment "ip-masq-agent: local traffic is not '
            'subject to MASQUERADE" -j RETURN'
            for net in [*node_subnets, pod_cidr]
        ),
        '-A IP-MASQ-AGENT -m comment --comment "ip-masq-agent: outbound traffic is subject to '
        'MASQUERADE (must be last in chain)" -j MASQUERADE',
        *MASQ_RULES,
    ]
    svc_rules: list[str] = []
    for n, (name, ip, port, endpoints, nodeport, lb_ip, source_range) in enumerate(SERVICES):
        if endpoints == 0:
            filt.append(no_endpoints(name, ip, port))
            if nodeport:
                filt.append(
                    f'-A KUBE-EXTERNAL-SERVICES -p tcp -m comment --comment "{name} has no '
                    f'endpoints" -m addrtype --dst-type LOCAL -m tcp --dport {nodeport} -j REJECT'
                    " --reject-with icmp-port-unreachable"
                )
            if lb_ip:
                filt.append(
                    f'-A KUBE-EXTERNAL-SERVICES -d {lb_ip}/32 -p tcp -m comment --comment "{name} '
                    f'has no endpoints" -m tcp --dport {port} -j REJECT --reject-with '
                    "icmp-port-unreachable"
                )
            continue
        svc, jump, masq = cluster_ip(name, ip, port, pod_cidr=pod_cidr)
        nat.append(f":{svc} - [0:0]")
        svc_rules.append(jump)
        nat_rules.append(masq)
        for e in range(endpoints):
            pod = f"10.244.{n}.{10 + e}"
            sep = chain_name("KUBE-SEP-", f"{name}/{e}")
            nat.append(f":{sep} - [0:0]")
            nat_rules += endpoint(svc, sep, name, pod, port, endpoints - e)
        if lb_ip:
            fw = chain_name("KUBE-FW-", name)
            nat.append(f":{fw} - [0:0]")
            svc_rules.append(
                f'-A KUBE-SERVICES -d {lb_ip}/32 -p tcp -m comment --comment "{name} '
                f'loadbalancer IP" -m tcp --dport {port} -j {fw}'
            )
            nat_rules += [
                f'-A {fw} -s {source_range} -m comment --comment "{name} loadbalancer IP" -j {svc}',
                f'-A {fw} -m comment --comment "{name} loadbalancer IP" -j KUBE-MARK-DROP',
            ]
            # loadBalancerSourceRanges: everyone else is dropped before DNAT (filter table)
            filt.append(
                f'-A KUBE-PROXY-FIREWALL -d {lb_ip}/32 -p tcp -m comment --comment "{name} '
                f'traffic not accepted by {fw}" -m tcp --dport {port} -j DROP'
            )
        if nodeport:
            filt.append(
                f'-A KUBE-NODEPORTS -p tcp -m comment --comment "{name} health check node port" '
                f"-m tcp --dport {nodeport + 1000} -j ACCEPT"
            )
            ext, ext_rules = node_port(name, svc, nodeport)
            nat.append(f":{ext} - [0:0]")
            nat_rules += ext_rules
    if any(r.startswith("-A KUBE-FW-") for r in nat_rules):
        nat.append(":KUBE-MARK-DROP - [0:0]")
        nat_rules.append("-A KUBE-MARK-DROP -j MARK --set-xmark 0x8000/0x8000")
    svc_rules.append(NODEPORTS_LAST)
    security = [
        "*security",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        "-A OUTPUT -d 168.63.129.16/32 -p tcp -m tcp --dport 53 -j ACCEPT",
        "-A OUTPUT -d 168.63.129.16/32 -p tcp -m owner --uid-owner 0 -j ACCEPT",
        "-A OUTPUT -d 168.63.129.16/32 -p tcp -m conntrack --ctstate INVALID,NEW -j DROP",
    ]
    return "\n".join(
        [*filt, "COMMIT", *nat, *svc_rules, *nat_rules, "COMMIT", *security, "COMMIT", ""]
    )
