"""The node lab end to end: the real probe script, sent through the real azure-mgmt-compute
client to the ARM simulator, runs in a namespace node whose faults come from the lab file.

Assertions are on the parsed ProbeReport (the raw facts each fault must produce), never on
findings. The whole lab is built once per module; teardown and failure paths use a small lab.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import RunCommandInput, RunCommandInputParameter

from shared.analysis.findings import Kind
from shared.analysis.netcat import Status
from shared.compose import scan_deps, static_resolver
from shared.jobs.scan import ScanOptions, run_scan
from shared.probe import script_text
from shared.probe.output import ProbeReport, parse_probe_output, target_results
from shared.probe.params import rendered_preamble, validate_probe_parameters
from tests.armsim import SCENARIOS, ArmSimulator, build_estate, load_estate, parse_scenario
from tests.conftest import require_tools
from tests.lab import faults as lab_faults
from tests.lab.nodelab import LabNode, NodeLab
from tests.lab.nodelab_plan import load_lab_file
from tests.lab.ufwlab import machine_ufw_snapshot, ufw_unavailable_reason
from tests.skips import cannot_run

pytestmark = pytest.mark.netns

LAB_FILE = SCENARIOS / "nodelab.lab.json"
SUB = "22222222-2222-2222-2222-222222222222"
TOOLS = ("iptables-legacy-restore", "iptables-nft-restore", "iptables-legacy-save",
         "iptables-nft-save", "nc", "ufw", "unshare", "openssl")  # fmt: skip


class Rig:
    def __init__(self, lab: NodeLab, sim: ArmSimulator) -> None:
        self.lab, self.sim = lab, sim
        self.compute = ComputeManagementClient(sim.credential(), SUB, **sim.client_kwargs())

    def body(self, script: str, params: list[tuple[str, str]]) -> RunCommandInput:
        return RunCommandInput(
            command_id="RunShellScript", script=[script],
            parameters=[RunCommandInputParameter(name=n, value=v) for n, v in params],
        )  # fmt: skip

    def begin(self, node: LabNode, script: str, params: list[tuple[str, str]]) -> Any:
        s = node.spec
        return self.compute.virtual_machine_scale_set_vms.begin_run_command(
            s.resource_group, s.vmss, s.instance_id, self.body(script, params)
        )

    def probe(self, node: LabNode, mode: str) -> tuple[ProbeReport, list[tuple[str, str]]]:
        """The real script through the SDK and the simulator; the report and the parameters."""
        c = next(x for x in self.lab.clusters if x.name == node.spec.cluster)
        params = validate_probe_parameters(c.node_addresses, c.names[0], 443, mode)
        result = self.begin(node, script_text(), params).result()
        message = result.value[0].message
        assert message.startswith("Enable succeeded: \n[stdout]\n")
        stdout = message.split("\n[stdout]\n", 1)[1].rsplit("\n[stderr]\n", 1)[0]
        report = parse_probe_output(stdout, node.spec.key)
        _SENT[id(report)] = list(c.node_addresses)
        return report, params


@pytest.fixture(scope="module")
def rig(netns_ok: None) -> Iterator[Rig]:
    require_tools(*TOOLS)
    if reason := ufw_unavailable_reason():
        cannot_run(f"needs ufw with its packaged files: {reason}")
    estate, faults = load_lab_file(LAB_FILE)
    with NodeLab(estate, faults) as lab, ArmSimulator(estate, executor=lab.executor) as sim:
        print(f"node lab: {len(lab.nodes)} nodes set up in {lab.setup_seconds:.1f} s")
        yield Rig(lab, sim)
    assert lab.teardown_errors == []


# (cluster, node that runs the probe, mode) -> report; all run at once (different VMs)
RUNS = {
    "healthy": ("aks-lab-healthy", "system/0", "triage"),
    "healthy-azurelinux": ("aks-lab-healthy", "apps/0", "deep"),
    "ufw-deny": ("aks-lab-ufw-deny", "system/0", "triage"),
    "ufw-deny-deep": ("aks-lab-ufw-deny", "system/1", "deep"),
    "ufw-allow": ("aks-lab-ufw-allow", "system/0", "triage"),
    "ufw-allow-deep": ("aks-lab-ufw-allow", "system/1", "deep"),
    "iptables-drop": ("aks-lab-iptables-drop", "user/0", "triage"),
    "iptables-reject": ("aks-lab-iptables-reject", "system/0", "triage"),
    "policy-drop": ("aks-lab-policy-drop", "system/0", "triage"),
    "reject-all": ("aks-lab-reject-all", "system/0", "triage"),
    "nft-only": ("aks-lab-nft-only", "system/0", "triage"),
    "nft-only-deep": ("aks-lab-nft-only", "system/1", "deep"),
    "egress-443": ("aks-lab-egress-443", "system/0", "triage"),
    "oom-agent": ("aks-lab-oom-agent", "system/0", "triage"),
    "tls-inspect": ("aks-lab-tls-inspect", "system/0", "triage"),
}


@pytest.fixture(scope="module")
def reports(rig: Rig) -> dict[str, ProbeReport]:
    def one(key: str) -> tuple[str, ProbeReport]:
        cluster, node, mode = RUNS[key]
        return key, rig.probe(rig.lab.nodes[f"{cluster}/{node}"], mode)[0]

    with ThreadPoolExecutor(max_workers=6) as pool:
        return dict(pool.map(one, RUNS))


_SENT: dict[int, list[str]] = {}  # id(report) -> the TW_TARGETS it was sent


def _peers(report: ProbeReport) -> dict[str, Status]:
    """Every sent target's outcome: a triage names only failures, the `reach` record
    proves the rest open (target_results refuses to read silence otherwise)."""
    assert report.complete, report.reasons
    results = target_results(report, _SENT[id(report)])
    assert results.gaps == (), results.gaps
    return dict(results.statuses)


def _api(report: ProbeReport) -> Status:
    assert report.api is not None and len(report.api.results) == 1
    return report.api.results[0].status


def _address(rig: Rig, cluster: str, node: str) -> str:
    return rig.lab.nodes[f"{cluster}/{node}"].addresses[0]


def test_triage_on_the_healthy_cluster(rig: Rig) -> None:
    node = rig.lab.node("aks-lab-healthy", "system", 0)
    before = len(rig.lab.executions)
    report, params = rig.probe(node, "triage")
    assert report.complete and report.mode == "triage", report.reasons
    assert set(_peers(report).values()) == {Status.OPEN}
    cluster = next(c for c in rig.lab.clusters if c.name == "aks-lab-healthy")
    assert set(_peers(report)) == set(cluster.node_addresses)
    assert _api(report) is Status.OPEN
    assert report.hostname == node.spec.computer_name
    assert (report.os_id, report.os_version) == ("ubuntu", "22.04")
    assert ("eth0", f"{node.addresses[0]}/16") in report.addresses
    agents = [c for c in report.components if c.name == "konnectivity-agent"]
    assert [(c.state, c.attempt, c.reason) for c in agents] == [("CONTAINER_RUNNING", 0, "")]
    assert report.tls is not None and report.tls.handshake == "ok"
    assert report.tls.alpn == "konnectivity" and report.tls.name_match is True
    # what the extension would execute: the export lines, then the script, nothing else
    (run,) = rig.lab.executions[before:]
    assert run.text == rendered_preamble(params) + script_text()
    assert run.text.startswith(f"export TW_TARGETS={params[0][1]}\nexport TW_API_HOST=")
    assert run.returncode == 0 and run.node == node.spec.key
    record = rig.sim.run_command_requests[-1]
    assert record.parameters == tuple(params) and record.script == (script_text(),)


def test_healthy_reports_have_no_blocked_fact(reports: dict[str, ProbeReport]) -> None:
    azl = reports["healthy-azurelinux"]
    assert azl.complete, azl.reasons
    assert (azl.os_id, azl.os_version) == ("azurelinux", "3.0")
    assert azl.ufw_present is False  # Azure Linux images carry no ufw
    assert "crictl" in azl.tools
    assert {r.backend for r in azl.rulesets} >= {"nft"}
    for key in ("healthy", "ufw-allow"):
        assert set(_peers(reports[key]).values()) == {Status.OPEN}, key
        assert _api(reports[key]) is Status.OPEN


def test_ufw_faults(rig: Rig, reports: dict[str, ProbeReport]) -> None:
    deny = _address(rig, "aks-lab-ufw-deny", "system/1")
    assert _peers(reports["ufw-deny"])[deny] is Status.TIMEOUT
    for key in ("ufw-deny-deep", "ufw-allow-deep"):
        deep = reports[key]
        assert deep.complete, deep.reasons
        assert deep.ufw_present is True and deep.ufw_status is not None
        assert deep.ufw_status.startswith("Status: active"), deep.ufw_status
    assert "10250/tcp" in (reports["ufw-allow-deep"].ufw_status or "")
    assert "10250" not in (reports["ufw-deny-deep"].ufw_status or "")
    # the healthy node of the same cluster keeps ufw inactive, as AKS ships it
    plain = rig.lab.node("aks-lab-ufw-deny", "system", 0)
    assert plain.ufw is not None
    assert plain.ufw.ufw("status").stdout.startswith("Status: inactive")


@pytest.mark.parametrize(
    ("key", "cluster", "node", "status"),
    [
        ("iptables-drop", "aks-lab-iptables-drop", "user/1", Status.TIMEOUT),
        ("iptables-reject", "aks-lab-iptables-reject", "system/1", Status.REFUSED),
        ("policy-drop", "aks-lab-policy-drop", "system/1", Status.TIMEOUT),
        ("reject-all", "aks-lab-reject-all", "system/1", Status.UNREACHABLE),
        ("nft-only", "aks-lab-nft-only", "system/1", Status.TIMEOUT),
    ],
)
def test_inbound_faults_block_only_their_node(
    rig: Rig, reports: dict[str, ProbeReport], key: str, cluster: str, node: str, status: Status
) -> None:
    peers = _peers(reports[key])
    faulty = _address(rig, cluster, node)
    assert peers[faulty] is status
    assert {s for a, s in peers.items() if a != faulty} == {Status.OPEN}
    assert _api(reports[key]) is Status.OPEN


def test_nft_only_block_lives_in_the_nft_backend(reports: dict[str, ProbeReport]) -> None:
    deep = reports["nft-only-deep"]
    assert deep.complete, deep.reasons
    rules = {r.backend: r.text for r in deep.rulesets}
    assert re.search(r"--dport 10250 -j DROP", rules.get("nft", "")), rules.keys()
    assert "KUBE-FIREWALL" in rules.get("legacy", "")
    assert "10250" not in rules.get("legacy", "")


def test_egress_443_and_tls_inspection(reports: dict[str, ProbeReport]) -> None:
    egress = reports["egress-443"]
    assert set(_peers(egress).values()) == {Status.OPEN}
    assert _api(egress) is Status.TIMEOUT
    inspected = reports["tls-inspect"]
    assert _api(inspected) is Status.OPEN
    healthy = reports["healthy"].tls
    assert inspected.tls is not None and healthy is not None
    assert inspected.tls.handshake == "ok" and inspected.tls.alpn == ""
    assert (healthy.subject_cn, healthy.issuer_cn) == ("apiserver", "ca")
    assert inspected.tls.issuer_cn == "Contoso Firewall TLS Inspection CA"


def test_oom_killed_agent(reports: dict[str, ProbeReport]) -> None:
    report = reports["oom-agent"]
    assert report.complete, report.reasons
    agents = sorted(
        (c.state, c.attempt, c.exit_code, c.reason)
        for c in report.components
        if c.name == "konnectivity-agent"
    )
    assert agents == [("CONTAINER_EXITED", 4, 137, "OOMKilled"), ("CONTAINER_RUNNING", 5, 0, "")]
    assert any(c.oom_killed for c in report.restarted_components)


def test_second_run_command_on_a_busy_instance_gets_409(rig: Rig, tmp_path: Path) -> None:
    node = rig.lab.node("aks-lab-healthy", "system", 1)
    release = tmp_path / "release"
    started = tmp_path / "started"
    script = (f"touch {started}; for i in $(seq 600); do [ -e {release} ] && break; "
              "sleep 0.05; done; echo released")  # fmt: skip
    first = rig.begin(node, script, [])
    try:
        with pytest.raises(HttpResponseError) as busy:
            rig.begin(node, "echo second", [])
        assert busy.value.status_code == 409
        assert busy.value.error is not None and busy.value.error.code == "Conflict"
    finally:
        release.touch()
    assert "[stdout]\nreleased\n" in first.result().value[0].message
    assert started.exists()


def test_unknown_instance_is_an_exception(rig: Rig) -> None:
    with pytest.raises(LookupError, match="no lab node"):
        rig.lab.executor(SUB, "nowhere", "aks-x-vmss", "0", ["true"], [])
    win = next(s for s in rig.compute.virtual_machine_scale_sets.list_all() if s.name == "akswin1")
    rg = str(win.id).split("/")[4]
    with pytest.raises(HttpResponseError):  # the simulator's Failed LRO
        rig.compute.virtual_machine_scale_set_vms.begin_run_command(
            rg, "akswin1", "0", rig.body("true", [])
        ).result()


def test_the_scan_finds_no_problem_in_the_lab_estate() -> None:
    with ArmSimulator(load_estate(SCENARIOS / "nodelab.json")) as sim:
        deps = scan_deps(
            sim.credential(), arm_endpoint=sim.endpoint, ca_bundle=sim.ca_path,
            resolver=static_resolver({}, lambda name: ("20.61.14.2",)), store=None, queue=None,
            clock=lambda: datetime(2026, 11, 22, 4, 0, tzinfo=UTC),
            metrics_endpoint=sim.endpoint,
        )  # fmt: skip
        outcome = run_scan(ScanOptions(subscriptions=(SUB,)), deps)
    assert len(outcome.clusters) == 13
    problems = [(o.cluster.name, f.title) for o in outcome.clusters for f in o.findings
                if f.kind is Kind.PROBLEM]  # fmt: skip
    assert problems == []


# -- a small lab: crictl visibility, the machine left as it was, teardown ------------------

SMALL: dict[str, Any] = {
    "subscriptions": [{
        "id": SUB,
        "clusters": [{
            "name": "aks-small", "resourceGroup": "rg-small", "location": "eastus",
            "agentPools": [
                {"name": "system", "mode": "System", "count": 1},
                {"name": "azl", "count": 1, "osSku": "AzureLinux"},
            ],
        }],
    }],
}  # fmt: skip


def _netfilter() -> str:
    out = []
    for tool in ("iptables-legacy-save", "iptables-nft-save"):
        text = subprocess.run([tool], capture_output=True, text=True, timeout=30).stdout
        out += [re.sub(r" \[\d+:\d+\]$", "", x) for x in text.splitlines() if not x.startswith("#")]
    return "\n".join(out)


def _machine() -> dict[str, object]:
    return {
        "usr_sbin": sorted(os.listdir("/usr/sbin")),
        "usr_bin_crictl": os.path.exists("/usr/bin/crictl"),
        "ufw": machine_ufw_snapshot(),
        "hosts": Path("/etc/hosts").read_bytes(),
        "os_release": Path("/etc/os-release").read_bytes(),
        "netfilter": _netfilter(),
        "root_addresses": subprocess.run(
            ["ip", "-o", "addr"], capture_output=True, text=True, timeout=10
        ).stdout,
    }


def _leftovers(lab: NodeLab, pids: list[int]) -> list[str]:
    names = [n.namespace for n in lab.nodes.values()] + [a.namespace for a in lab.apis.values()]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    present = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    mounts = Path("/proc/self/mountinfo").read_text()
    out = [f"namespace {n}" for n in names if n in present]
    out += [f"/etc/netns/{n}" for n in names if Path("/etc/netns", n).exists()]
    out += [f"mount {n}" for n in names if f"/run/netns/{n} " in mounts]
    out += ["a mount of the lab's files" for m in ("twnodelab", "twcrictl") if m in mounts]
    out += [f"process {p}" for p in pids if Path(f"/proc/{p}").exists()]
    return out


def _pids(lab: NodeLab) -> list[int]:
    hosts = [n.host for n in lab.nodes.values()] + [a.host for a in lab.apis.values()]
    return [p.pid for h in hosts if h is not None for p in h.listeners]


@pytest.mark.parametrize("mount", ["overlay", "bind"])
def test_crictl_only_inside_the_node_and_everything_removed(netns_ok: None, mount: str) -> None:
    require_tools(*TOOLS)
    before = _machine()
    estate = build_estate(parse_scenario(SMALL))
    with NodeLab(estate, {"aks-small": {"system/0": ["oom-agent"]}}, crictl_mount=mount) as lab:
        ubuntu, azl = lab.node("aks-small", "system", 0), lab.node("aks-small", "azl", 0)
        out, err = lab.run(ubuntu, "command -v crictl; crictl ps -a -q | wc -l; command -v ufw;"
                           " hostname; crictl rmi x; echo rc=$?")  # fmt: skip
        assert out.split("\n")[:4] == ["/usr/sbin/crictl", "4", "/usr/sbin/ufw",
                                       ubuntu.spec.computer_name], err  # fmt: skip
        assert "rc=1" in out  # unknown subcommands fail
        out, _ = lab.run(azl, "command -v ufw || echo no-ufw; iptables -V; crictl ps -q | wc -l")
        assert out.split("\n")[:3] == ["no-ufw", "iptables v1.8.9 (nf_tables)", "3"]
        out, _ = lab.run(ubuntu, "iptables -V; grep -c KUBE-FIREWALL <(iptables-save)")
        assert out.startswith("iptables v1.8.9 (legacy)\n") and int(out.split()[-1]) >= 3
        api = lab.apis["aks-small"]
        out, _ = lab.run(ubuntu, f"getent hosts {api.plan.names[0]}; hostname -I")
        assert out.split() == [api.plan.address, api.plan.names[0], ubuntu.addresses[0]]
        lab.timeout = 1.0
        out, err = lab.run(azl, "echo started; sleep 30; echo never")
        assert (out, lab.executions[-1].returncode) == ("started\n", None)
        assert "killed after 1 s" in err
        assert _machine() == before  # nothing visible outside the namespaces
        pids = _pids(lab)
        assert pids and all(Path(f"/proc/{p}").exists() for p in pids)
    assert lab.teardown_errors == []
    assert _leftovers(lab, pids) == []
    assert _machine() == before


class _BrokenFault:
    """A fault whose iptables command the kernel refuses: setup fails half way."""

    def __enter__(self) -> None:
        lab_faults.NODE_FAULTS["test-broken"] = lambda plan: plan.iptables.append(
            (plan.backend, ["-A", "NO-SUCH-CHAIN", "-j", "ACCEPT"])
        )

    def __exit__(self, *exc: object) -> None:
        lab_faults.NODE_FAULTS.pop("test-broken", None)


class _InterruptedLab(NodeLab):
    def _api(self, api: Any) -> None:
        super()._api(api)
        raise KeyboardInterrupt


def test_failed_or_interrupted_setup_removes_everything(netns_ok: None) -> None:
    require_tools(*TOOLS)
    before = _machine()
    estate = build_estate(parse_scenario(SMALL))
    with _BrokenFault():
        lab = NodeLab(estate, {"aks-small": {"azl/0": ["test-broken"]}})
        with pytest.raises(RuntimeError, match="NO-SUCH-CHAIN"):
            lab.start()
    assert lab.teardown_errors == [] and _leftovers(lab, _pids(lab)) == []
    interrupted = _InterruptedLab(estate)
    with pytest.raises(KeyboardInterrupt):
        interrupted.start()
    assert interrupted.teardown_errors == [] and _leftovers(interrupted, _pids(interrupted)) == []
    assert _machine() == before


def test_lab_file_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.lab.json"
    for clusters, message in (
        ({"aks-nope": {}}, "aks-nope: no running Linux nodes"),
        ({"aks-lab-healthy": {"system/9": ["iptables-drop"]}}, "aks-lab-healthy.system/9"),
        ({"aks-lab-healthy": {"system/1": ["egress-443"]}}, "unknown fault 'egress-443'"),
        ({"aks-lab-healthy": {"apiserver": ["ufw-deny"]}}, "for the API server"),
    ):
        bad.write_text(json.dumps({"scenario": str(SCENARIOS / "nodelab.json"),
                                   "clusters": clusters}))  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(message)):
            load_lab_file(bad)


def test_executor_is_thread_safe_across_nodes(rig: Rig) -> None:
    nodes = [
        rig.lab.node("aks-lab-healthy", "system", 0),
        rig.lab.node("aks-lab-healthy", "apps", 0),
    ]
    barrier = threading.Barrier(len(nodes))

    def one(node: LabNode) -> str:
        barrier.wait(10)
        return rig.lab.run(node, "hostname")[0].strip()

    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        names = list(pool.map(one, nodes))
    assert names == [n.spec.computer_name for n in nodes]


def test_a_fault_the_image_cannot_carry_is_refused_before_anything_is_built() -> None:
    estate = build_estate(parse_scenario(SMALL))
    with pytest.raises(ValueError, match="image without ufw"):
        NodeLab(estate, {"aks-small": {"azl/0": ["ufw-deny"]}})
    with pytest.raises(ValueError, match="unknown fault 'no-such-fault'"):
        NodeLab(estate, {"aks-small": {"system/0": ["no-such-fault"]}})
