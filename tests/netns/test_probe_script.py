"""The real probe script in a lab node, run the way the run-command extension runs it.

The machine has no crictl: the first test asserts the script reports it absent. The others
run the script in a private mount namespace inside the node: a tiny stand-in crictl joins
/usr/bin through an overlay (it answers only the exact calls the script makes, documented in
docs/probe.md), and tools are hidden by bind-mounting /dev/null over them (PATH is set by the
script itself, so a PATH without the tool cannot be tested). TLS peers are `openssl s_server`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from shared.analysis.findings import Cause, Finding, Kind
from shared.analysis.netcat import Status
from shared.checks.node import node_findings
from shared.inventory.model import AgentPool, Cluster, Instance, PowerState
from shared.probe import script_text
from shared.probe.output import parse_probe_output, target_results, targets_digest
from shared.probe.params import rendered_preamble, validate_probe_parameters
from tests.conftest import require_tools
from tests.lab.netns import Host, Lab

pytestmark = pytest.mark.netns

NODE, OPEN_PEER, DROP_PEER = "10.250.0.10", "10.250.0.20", "10.250.0.21"
DEEP_NO_TARGETS = "export TW_TARGETS= TW_API_HOST= TW_API_PORT=443 TW_MODE=deep\n"


def _saves(node: Host) -> tuple[str, str]:
    legacy = node.exec(["iptables-legacy-save"], check=False).stdout
    nft = node.exec(["iptables-nft-save"], check=False).stdout
    return _rules(legacy), _rules(nft)


def _rules(dump: str) -> str:
    # Comments carry a date and chain counters count the probe's own packets: neither is a rule.
    lines = (x for x in dump.splitlines() if not x.startswith("#"))
    return "\n".join(re.sub(r" \[\d+:\d+\]$", "", x) for x in lines)


def _run(node: Host, mode: str) -> str:
    params = validate_probe_parameters([OPEN_PEER, DROP_PEER], OPEN_PEER, 10250, mode)
    code = rendered_preamble(params) + script_text()
    proc = node.exec(["/bin/bash", "-c", code], timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr
    return str(proc.stdout)


def test_probe_script_in_a_node(netns_ok: None) -> None:
    require_tools("iptables-restore", "iptables-legacy-save", "iptables-nft-save", "nc")
    with Lab() as lab:
        node = lab.add_host([NODE])
        peer1 = lab.add_host([OPEN_PEER])
        peer2 = lab.add_host([DROP_PEER])
        node.listen([10250])
        peer1.listen([10250])
        peer2.listen([10250])
        node.exec(
            ["iptables-restore"],
            input="*filter\n:INPUT ACCEPT [0:0]\n"
            "-A INPUT -s 10.250.0.99/32 -p tcp --dport 10250 -j DROP\nCOMMIT\n",
        )
        peer2.exec(
            ["iptables-restore"],
            input=f"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -s {NODE}/32 -p tcp --dport 10250 "
            "-j DROP\nCOMMIT\n",
        )
        before = _saves(node)

        triage = _run(node, "triage")
        assert triage.startswith("TWPROBE 1 BEGIN triage\n")
        assert triage.splitlines()[-1].startswith("TWPROBE 1 END ")
        assert len(triage.encode()) < 4096
        report = parse_probe_output(triage, "triage")
        assert report.complete and report.errors == ()
        assert report.targets is not None and report.api is not None
        # Only the target that is not open is named; the summary proves the other open.
        assert [r.target.host for r in report.targets.results] == [DROP_PEER]
        assert report.reach is not None and report.reach.digest == targets_digest(
            [OPEN_PEER, DROP_PEER]
        )
        got = target_results(report, [OPEN_PEER, DROP_PEER])
        assert dict(got.statuses) == {OPEN_PEER: Status.OPEN, DROP_PEER: Status.TIMEOUT}
        assert got.gaps == ()
        assert report.api.results[0].status is Status.OPEN
        assert (NODE + "/24") in {a for _, a in report.addresses}
        assert report.crictl_present is False  # no crictl on this machine: reported, not faked

        deep = parse_probe_output(_run(node, "deep"), "deep")
        assert deep.complete and deep.mode == "deep"
        rules = "\n".join(r.text for r in deep.rulesets)
        assert "-s 10.250.0.99/32 -p tcp -m tcp --dport 10250 -j DROP" in rules
        assert _saves(node) == before  # read-only: the node's rulesets are untouched


def test_hostile_environment_is_refused_by_the_script(netns_ok: None) -> None:
    with Lab() as lab:
        node = lab.add_host([NODE])
        # Values a forged call could carry (quoted here: the script must still refuse them).
        code = (
            "export TW_TARGETS='10.250.0.20;touch /tmp/tw-pwned' TW_API_HOST='$(id)' "
            "TW_API_PORT=443 TW_MODE=triage\n" + script_text()
        )
        out = node.exec(["/bin/bash", "-c", code], timeout=90).stdout
        report = parse_probe_output(out, "hostile")
        assert report.complete
        assert {e.subject for e in report.errors} == {"TW_TARGETS", "TW_API_HOST"}
        assert report.targets is None and report.api is None
        # Names a resolver could read as an address, or a bare host name: refused too.
        for host in ("localhost", "0x7f000001", "api.cluster.123"):
            code = f"export TW_TARGETS= TW_API_HOST={host} TW_API_PORT=443 TW_MODE=triage\n"
            out = node.exec(["/bin/bash", "-c", code + script_text()], timeout=90).stdout
            report = parse_probe_output(out, host)
            assert [e.subject for e in report.errors] == ["TW_API_HOST"], host
            assert report.api is None


# ---- helpers: a private mount namespace, a stand-in crictl, TLS peers ----------------------

TEMPLATE = (
    "{{.status.metadata.name}}|{{.status.state}}|{{.status.metadata.attempt}}|"
    "{{.status.exitCode}}|{{.status.reason}}|{{.status.finishedAt}}|"
    '{{index .status.labels "io.kubernetes.pod.name"}}|'
    '{{index .status.labels "io.kubernetes.pod.namespace"}}'
)
PS_ARGS = "ps -a -q --name ^(konnectivity-agent|tunnel-front|openvpn-client)$"
CONTAINERS = {  # id -> what `crictl inspect -o go-template` prints for TEMPLATE
    "aaaa1111": "konnectivity-agent|CONTAINER_EXITED|4|137|OOMKilled|2024-05-01T11:00:00Z|"
    "konnectivity-agent-7d9f8c6b5-x2x9z|kube-system",
    "bbbb2222": "tunnel-front|CONTAINER_RUNNING|0|0||0001-01-01T00:00:00Z|"
    "tunnelfront-5d8f7c9b4-q8w7e|kube-system",
    "cccc3333": "openvpn-client|CONTAINER_RUNNING|1|0||0001-01-01T00:00:00Z|"
    "aks-link-6c7d8e9f0-r5t6y|kube-system",
    "dddd4444": "konnectivity-agent|CONTAINER_RUNNING|0|0||0001-01-01T00:00:00Z|"
    "my-own-konnectivity-agent|default",  # a customer's container of the same name: skipped
}


def _fake_crictl(directory: Path) -> Path:
    """A crictl that answers the script's exact calls and fails loudly on any other."""
    cases = "\n".join(f"    {cid}) echo '{line}' ;;" for cid, line in CONTAINERS.items())
    ids = " ".join(CONTAINERS)
    text = f"""#!/bin/sh
T='{TEMPLATE}'
if [ "$*" = '{PS_ARGS}' ]; then
    for id in {ids}; do echo "$id"; done
    exit 0
fi
if [ "$#" = 6 ] && [ "$1 $2 $3 $4" = "inspect -o go-template --template" ] && [ "$5" = "$T" ]; then
    case "$6" in
{cases}
    *) exit 1 ;;
    esac
    exit 0
fi
echo "stand-in crictl: unexpected call: $*" >&2
exit 2
"""
    path = directory / "crictl"
    path.write_text(text)
    path.chmod(0o755)
    return directory


def _run_private(
    node: Host,
    code: str,
    *,
    fake_bin: Path | None = None,
    fake_sbin: Path | None = None,
    hide: tuple[str, ...] = (),
) -> str:
    """The script in a private mount namespace of the node: extra tools in, tools hidden."""
    setup = []
    if fake_bin is not None:
        setup.append(f"mount -t overlay overlay -o lowerdir={fake_bin}:/usr/bin /usr/bin")
    if fake_sbin is not None:
        setup.append(f"mount -t overlay overlay -o lowerdir={fake_sbin}:/usr/sbin /usr/sbin")
    for tool in hide:
        found = shutil.which(tool)
        assert found is not None, tool
        setup.append(f"mount --bind /dev/null {os.path.realpath(found)}")
    setup.append('exec /bin/bash -c "$1"')
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", " && ".join(setup)]
    proc = node.exec([*argv, "sh", code], timeout=90, check=False)
    assert proc.returncode == 0, proc.stderr
    return str(proc.stdout)


def _cert(directory: Path, san: str, cn: str = "apiserver") -> tuple[Path, Path]:
    cert, key = directory / f"{cn}.crt", directory / f"{cn}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", f"/CN={cn}", "-addext",
         f"subjectAltName={san}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextmanager
def _tls_peer(host: Host, cert: Path, key: Path, alpn: str | None) -> Iterator[None]:
    """`openssl s_server` on port 443 of the host (stdin kept open: EOF would stop it)."""
    argv = ["ip", "netns", "exec", host.name, "openssl", "s_server", "-accept", "443",
            "-cert", str(cert), "-key", str(key), *(["-alpn", alpn] if alpn else [])]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        assert proc.stdout is not None
        for _ in range(5):  # "ACCEPT" once listening
            if proc.stdout.readline().startswith(b"ACCEPT"):
                break
        yield
    finally:
        proc.kill()
        proc.wait(timeout=10)


VMSS = "aks-nodepool1-12345678-vmss"
INSTANCE = Instance("0", f"{VMSS}_0", f"{VMSS}000000", PowerState.RUNNING, (NODE,))
POOL = AgentPool(
    "nodepool1", "System", "Linux", "VirtualMachineScaleSets", 1, None, None, "", None, None,
    vmss_name=VMSS, instances=(INSTANCE,),
)  # fmt: skip
CLUSTER = Cluster(
    "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a",
    "a", "s1", "rg", "westeurope", "MC_rg_a", "loadBalancer", False, False, None,
    "a.hcp.westeurope.azmk8s.io", None, "azure", "", None, "Unrestricted", "Running",
    pools=(POOL,),
)  # fmt: skip


def _findings(text: str, peers: dict[str, str] | None = None) -> list[Finding]:
    return node_findings(
        parse_probe_output(text, "probe"), cluster=CLUSTER, pool=POOL, instance=INSTANCE,
        peers=peers or {}, source_subnet=None, now=datetime(2024, 5, 1, tzinfo=UTC),
    )  # fmt: skip


def _code(api: str, mode: str = "triage", targets: tuple[str, ...] = ()) -> str:
    params = validate_probe_parameters(list(targets), api, 443, mode)
    return rendered_preamble(params) + script_text()


# ---- TLS/ALPN, tunnel components, missing tools ---------------------------------------------


def test_tls_handshake_tells_the_endpoint_from_an_inspecting_middlebox(
    netns_ok: None, tmp_path: Path
) -> None:
    require_tools("openssl", "unshare")
    good = _cert(tmp_path, f"IP:{OPEN_PEER}", "apiserver")
    other = _cert(tmp_path, "DNS:proxy.example", "Firewall CA issued")
    with Lab() as lab:
        node = lab.add_host([NODE])
        peer = lab.add_host([OPEN_PEER])
        with _tls_peer(peer, *good, alpn="konnectivity"):
            out = node.exec(["/bin/bash", "-c", _code(OPEN_PEER)], timeout=90).stdout
        report = parse_probe_output(out, "tls")
        assert report.tls is not None
        assert (report.tls.tcp, report.tls.handshake, report.tls.alpn) == (
            "open",
            "ok",
            "konnectivity",
        )
        assert (report.tls.subject_cn, report.tls.name_match) == ("apiserver", True)
        assert not [f for f in _findings(out) if f.check == "node.egress.tls"]

        with _tls_peer(peer, *other, alpn=None):  # no ALPN, a certificate for another name
            out = node.exec(["/bin/bash", "-c", _code(OPEN_PEER)], timeout=90).stdout
        report = parse_probe_output(out, "tls")
        assert report.tls is not None and report.tls.alpn == "" and report.tls.name_match is False
        (f,) = [f for f in _findings(out) if f.check == "node.egress.tls"]
        assert (f.cause, f.kind) == (Cause.EGRESS, Kind.PROBLEM)
        assert any("Firewall CA issued" in e for e in f.evidence)


def test_tunnel_components_from_crictl_and_tunnel_fronts_port_9000(
    netns_ok: None, tmp_path: Path
) -> None:
    require_tools("unshare", "nc")
    with Lab() as lab:
        node = lab.add_host([NODE])
        api = lab.add_host([OPEN_PEER])
        api.listen([443])  # 9000 closed: refused
        out = _run_private(node, _code(OPEN_PEER), fake_bin=_fake_crictl(tmp_path))
    report = parse_probe_output(out, "crictl")
    assert report.complete and not report.errors, report.errors
    names = [(c.name, c.container, c.state) for c in report.components]
    assert names == [
        ("konnectivity-agent", "konnectivity-agent", "CONTAINER_EXITED"),
        ("tunnelfront", "tunnel-front", "CONTAINER_RUNNING"),
        ("aks-link", "openvpn-client", "CONTAINER_RUNNING"),
    ]
    assert report.components[0].oom_killed and report.components[1].finished_at == ""
    assert report.tunnel is not None and report.tunnel.results[0].status is Status.REFUSED
    assert any(n.startswith("aks-link: UDP 1194") for n in report.notes)
    checks = {(f.check, f.cause) for f in _findings(out)}
    assert ("node.egress.tunnelfront", Cause.EGRESS) in checks
    assert ("node.agent", Cause.AGENT) in checks


def test_missing_tools_are_reported_not_fatal(netns_ok: None) -> None:
    require_tools("unshare", "awk", "openssl", "nc", "nft", "ufw", "gzip", "ip")
    with Lab() as lab:
        node = lab.add_host([NODE])
        peer = lab.add_host([OPEN_PEER])
        peer.listen([10250, 443])
        node.exec(["iptables-nft-restore"], input="*filter\n:INPUT ACCEPT [0:0]\n"
                  "-A INPUT -p udp -j DROP\n-A INPUT -p tcp -m tcp --dport 10250 -j DROP\n"
                  "COMMIT\n")  # fmt: skip
        deep = _code(OPEN_PEER, "deep", (OPEN_PEER,))
        out = _run_private(node, deep, hide=("awk", "openssl", "nc", "nft", "ufw", "hostname"))
        no_gzip = _run_private(node, deep, hide=("gzip", "ip"))
    r = parse_probe_output(out, "hidden")
    assert r.complete and r.nc == "none" and "awk" not in r.tools
    assert r.hostname == socket.gethostname()  # from /proc, without the hostname binary
    assert r.targets is None and r.reach is not None  # open (through /dev/tcp): not named
    assert target_results(r, [OPEN_PEER]).statuses == {OPEN_PEER: Status.OPEN}
    assert r.tls is None and any(n.startswith("tls: openssl is not on the node") for n in r.notes)
    assert r.ufw_present is False
    (nft,) = [x for x in r.rulesets if x.backend == "nft"]
    assert nft.kept is None and "-A INPUT -p udp -j DROP" in nft.text  # not reduced, whole
    problems = [f for f in _findings(out, {OPEN_PEER: "peer"}) if f.kind is Kind.PROBLEM]
    assert [f.cause for f in problems] == [Cause.IPTABLES]

    r = parse_probe_output(no_gzip, "no-gzip")
    assert r.complete and r.addresses == () and r.rulesets == ()
    assert any(e.subject == "ruleset nft" and "empty" in e.message for e in r.errors)


def test_native_nftables_tables_hooking_input_are_reported_as_one_json_document(
    netns_ok: None,
) -> None:
    require_tools("nft", "iptables-nft-restore")
    with Lab() as lab:
        node = lab.add_host([NODE])
        node.exec(["iptables-nft-restore"], input="*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n")
        node.exec(["nft", "-f", "-"], input=(
            "table inet kp {\n chain input { type filter hook input priority 0; }\n"
            " chain other { tcp dport 10250 drop; }\n}\n"
            "table ip kube-proxy {\n chain pre { type nat hook prerouting priority -100; }\n}\n"
            "table ip mine {\n chain out { type filter hook output priority 0; }\n}\n"
            "table netdev edge {\n chain in { type filter hook ingress device eth0 priority 0; }\n}\n"
        ))  # fmt: skip
        out = node.exec(["/bin/bash", "-c", DEEP_NO_TARGETS + script_text()], timeout=90).stdout
        node.exec(["nft", "add", "rule", "inet", "kp", "input", "jump", "other"])
        jumped = node.exec(["/bin/bash", "-c", DEEP_NO_TARGETS + script_text()], timeout=90)
        # A drop at ingress, before any IP hook (the inet drop is taken out first).
        node.exec(["nft", "flush", "chain", "inet", "kp", "input"])
        node.exec(["nft", "add", "rule", "netdev", "edge", "in", "tcp", "dport", "10250", "drop"])
        at_ingress = node.exec(["/bin/bash", "-c", DEEP_NO_TARGETS + script_text()], timeout=90)
    report = parse_probe_output(out, "nft")
    (doc,) = [r for r in report.rulesets if r.backend == "nftables"]
    items = json.loads(doc.text)["nftables"]
    tables = [(i["table"]["family"], i["table"]["name"]) for i in items if "table" in i]
    # not iptables-nft's, not "mine" (output only); the ingress of the node's interface too
    assert tables == [("inet", "kp"), ("ip", "kube-proxy"), ("netdev", "edge")]
    assert sum("metainfo" in i for i in items) == 1
    assert any(i.get("rule", {}).get("chain") == "other" for i in items)
    found = _findings(out, {OPEN_PEER: "peer"})
    # "other" drops 10250 but nothing jumps to it yet: the nftables engine lets it pass, and
    # the JSON is never read as iptables.
    assert [f for f in found if f.kind is not Kind.COVERAGE] == []
    blocked = _findings(jumped.stdout, {OPEN_PEER: "peer"})
    assert [(f.check, f.kind, f.cause) for f in blocked] == [
        ("node.nftables", Kind.PROBLEM, Cause.IPTABLES)
    ]
    edge = _findings(at_ingress.stdout, {OPEN_PEER: "peer"})
    (drop,) = [f for f in edge if f.kind is not Kind.COVERAGE]
    assert drop.kind is Kind.PROBLEM
    assert any("netdev edge in" in e for e in drop.evidence), drop.evidence


def test_a_ruleset_dump_that_fails_is_an_error_never_an_empty_ruleset(
    netns_ok: None, tmp_path: Path
) -> None:
    require_tools("unshare", "iptables-nft-save")
    # A save that prints half a table and fails: reading that as "no rules" would be a pass.
    (tmp_path / "iptables-nft-save").write_text("#!/bin/sh\necho '*filter'\nexit 3\n")
    (tmp_path / "iptables-nft-save").chmod(0o755)
    with Lab() as lab:
        node = lab.add_host([NODE])
        out = _run_private(node, DEEP_NO_TARGETS + script_text(), fake_sbin=tmp_path)
    report = parse_probe_output(out, "failed-save")
    assert report.complete
    assert [r for r in report.rulesets if r.backend == "nft"] == []
    (error,) = [e for e in report.errors if e.subject == "ruleset nft"]
    assert "failed with status 3" in error.message
    found = _findings(out, {OPEN_PEER: "peer"})
    assert [(f.check, f.kind) for f in found if f.kind is not Kind.COVERAGE] == [
        ("node.ruleset", Kind.INCONCLUSIVE)
    ]


# The top of a `ufw status verbose` of default allow: a DENY of 10250 would follow.
_UFW_HEAD = (
    "Status: active\nLogging: on (low)\n"
    "Default: allow (incoming), allow (outgoing), disabled (routed)\nNew profiles: skip\n"
)


@pytest.mark.parametrize(
    ("ending", "message"),
    [
        ("exec sleep 60", "timed out after 15 s"),  # killed by the script's timeout
        ("echo 'ERROR: problem running iptables' >&2; exit 1", "failed with status 1: Status"),
    ],
    ids=["timeout", "failure"],
)
def test_a_ufw_status_that_fails_or_times_out_is_an_error_never_a_short_listing(
    netns_ok: None, tmp_path: Path, ending: str, message: str
) -> None:
    """Issue 15, defect 7: the partial output of a ufw that timed out was packed as the
    status (whole to the service: "default allow", no rules, so allowed)."""
    require_tools("unshare", "ufw", "gzip", "base64")
    (tmp_path / "ufw").write_text(f"#!/bin/sh\nprintf '{_UFW_HEAD}'\n{ending}\n")
    (tmp_path / "ufw").chmod(0o755)
    with Lab() as lab:
        node = lab.add_host([NODE])
        out = _run_private(node, DEEP_NO_TARGETS + script_text(), fake_sbin=tmp_path)
    report = parse_probe_output(out, "ufw-cut")
    assert report.complete and report.ufw_status is None
    (error,) = [e for e in report.errors if e.subject == "ufw"]
    assert message in error.message, error.message
    found = [f for f in _findings(out, {OPEN_PEER: "peer"}) if f.cause is Cause.UFW]
    assert [(f.check, f.kind) for f in found] == [("node.ufw", Kind.INCONCLUSIVE)]


def test_a_whole_ufw_status_is_packed_byte_for_byte(netns_ok: None, tmp_path: Path) -> None:
    require_tools("unshare", "ufw", "gzip", "base64")
    status = _UFW_HEAD + "\nTo Action From\n-- ------ ----\n10250 DENY IN Anywhere\n\n"
    (tmp_path / "ufw").write_text(f"#!/bin/sh\nprintf '{status}'\n")
    (tmp_path / "ufw").chmod(0o755)
    with Lab() as lab:
        node = lab.add_host([NODE])
        out = _run_private(node, DEEP_NO_TARGETS + script_text(), fake_sbin=tmp_path)
    report = parse_probe_output(out, "ufw-whole")
    assert report.ufw_status == status and not [e for e in report.errors if e.subject == "ufw"]
    found = [f for f in _findings(out, {OPEN_PEER: "peer"}) if f.cause is Cause.UFW]
    assert [f.kind for f in found] == [Kind.PROBLEM]


def test_chains_iptables_nft_cannot_show_are_read_natively(netns_ok: None) -> None:
    require_tools("unshare", "nft", "iptables-nft-restore")
    with Lab() as lab:
        node = lab.add_host([NODE])
        node.exec(["iptables-nft-restore"], input="*filter\n:INPUT ACCEPT [0:0]\n"
                  "-A INPUT -s 10.250.0.99/32 -p tcp -m tcp --dport 10250 -j DROP\n"
                  "-A INPUT -s 10.250.0.98/32 -j DROP\nCOMMIT\n")  # fmt: skip
        # A base chain of the user's own in iptables-nft's table: iptables-nft-save prints a
        # comment for it and leaves it out.
        node.exec(["nft", "-f", "-"], input=(
            "table ip filter {\n chain mine { type filter hook input priority 5; "
            "tcp dport 10250 drop; }\n}\n"
        ))  # fmt: skip
        out = node.exec(["/bin/bash", "-c", DEEP_NO_TARGETS + script_text()], timeout=90).stdout
        no_nft = _run_private(node, DEEP_NO_TARGETS + script_text(), hide=("nft",))
    report = parse_probe_output(out, "hidden")
    (saved,) = [r for r in report.rulesets if r.backend == "nft"]
    assert "incompatible" in saved.text and "mine" not in saved.text
    (doc,) = [r for r in report.rulesets if r.backend == "nftables"]
    assert {"family": "ip", "name": "filter"}.items() <= next(
        i["table"] for i in json.loads(doc.text)["nftables"] if "table" in i
    ).items()
    peers = {OPEN_PEER: "peer", "10.250.0.98": "blocked in INPUT"}
    problems = [f for f in _findings(out, peers) if f.kind is Kind.PROBLEM]
    # The chain iptables-nft printed (INPUT) is evaluated once, by the iptables engine; the
    # hidden one natively, and it drops what INPUT let through.
    assert sorted((f.check, f.cause) for f in problems) == [
        ("iptables.input", Cause.IPTABLES), ("node.nftables", Cause.IPTABLES)
    ], [f.title for f in problems]  # fmt: skip
    (nft,) = [f for f in problems if f.check == "node.nftables"]
    assert any("ip filter mine" in e for e in nft.evidence), nft.evidence
    assert not any("ip filter INPUT" in e for e in nft.evidence), nft.evidence
    # Without nft on the node the hidden chain cannot be read: undecided, never a pass.
    found = _findings(no_nft, {OPEN_PEER: "peer"})
    assert [(f.kind, f.key) for f in found if f.kind is not Kind.COVERAGE] == [
        (Kind.INCONCLUSIVE, "hidden:filter")
    ]


# ---- many targets: 1,000 kubelet ports in one run command -----------------------------------

FAR = "10.251.0.0/22"  # routed through one lab host that owns the whole range (a `local` route)


def _far_targets(n: int) -> list[str]:
    first = IPv4Network(FAR).network_address + 1
    return [str(first + i) for i in range(n)]


def test_a_thousand_targets_fit_one_run_command(netns_ok: None) -> None:
    """1,000 targets in one run: healthy with a few dropped, then every one timing out.

    The targets live on one lab host (a `local` route for a /22 makes every address its own,
    so one ARP entry serves them all); a DROP on it makes a connect time out as an NSG or a
    firewall would. The script's run time is printed (run with -s), not asserted.
    """
    require_tools("nc", "iptables")
    targets = _far_targets(1000)
    peers = {t: f"node-{i}" for i, t in enumerate(targets)}
    code = _code(OPEN_PEER, "triage", tuple(targets))
    with Lab() as lab:
        node = lab.add_host([NODE])
        far = lab.add_host([OPEN_PEER])
        node.exec(["ip", "route", "add", FAR, "via", OPEN_PEER])
        far.exec(["ip", "route", "add", "local", FAR, "dev", "lo"])
        far.listen([10250, 443])
        dropped = targets[10:13]
        for t in dropped:
            far.exec(["iptables", "-A", "INPUT", "-d", t, "-p", "tcp", "--dport", "10250",
                      "-j", "DROP"])  # fmt: skip
        started = time.monotonic()
        few = node.exec(["/bin/bash", "-c", code], timeout=120).stdout
        few_s = time.monotonic() - started
        far.exec(["iptables", "-I", "INPUT", "-p", "tcp", "--dport", "10250", "-j", "DROP"])
        started = time.monotonic()
        every = node.exec(["/bin/bash", "-c", code], timeout=120).stdout
        every_s = time.monotonic() - started
    print(f"\n1,000 targets, 3 dropped: {few_s:.1f} s, {len(few.encode())} bytes")
    print(f"1,000 targets, all dropped: {every_s:.1f} s, {len(every.encode())} bytes")

    report = parse_probe_output(few, "few")
    assert report.complete and report.errors == () and report.reach is not None
    assert (report.reach.tested, report.reach.open, report.reach.named) == (1000, 997, 3)
    assert len(few.encode()) < 1500  # three failures and a summary, whatever the cluster size
    found = [f for f in _findings(few, peers) if f.check == "node.kubelet"]
    assert sorted(f.subject.resource for f in found) == sorted(dropped)
    assert {f.kind for f in found} == {Kind.PROBLEM}

    report = parse_probe_output(every, "every")
    assert report.complete and len(every.encode()) <= 4096, report.reasons
    assert report.reach is not None and report.reach.cut
    assert (report.reach.tested, report.reach.open) == (1000, 0)
    named = report.reach.named
    assert report.targets is not None and len(report.targets.results) == named > 100
    found = _findings(every, peers)
    problems = [f for f in found if f.kind is Kind.PROBLEM and f.check == "node.kubelet"]
    assert len(problems) == named
    (summary,) = [f for f in found if f.key == "unnamed"]
    assert summary.kind is Kind.INCONCLUSIVE
    assert summary.title.startswith("1000 of 1000 kubelet ports not reachable")
    assert f"{named} named" in summary.title
