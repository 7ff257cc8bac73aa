"""Every command tunnelwatch prints, run as a user would paste it, under stub programs.

The commands come from the product's own code paths (analyzers, checks, the CLI) fed with
hostile names: resource groups Azure allows (`rg-batch(prod)`, `rg-café`) and names a user
or a hostile node could pass (`;`, `$(...)`, backticks, quotes, spaces, newlines). Each
command runs with `bash -c` (and `sh -c`) in an empty directory with stub `az`, `iptables`,
`ufw`, `nft`, `kubectl`, `sudo`, `nc` ... first on PATH; each stub writes its argv
NUL-separated to a file. The recorded argv must be exactly the words the command was built
from, nothing may be created in the directory (`touch pwned` in a name), and a command still
holding a placeholder (`<ip-count>`) must run nothing until the placeholder is filled.
A command given as one argument (run command's `--scripts`) is run again the same way, as
the node would run it.
"""

from __future__ import annotations

import base64
import gzip
import ipaddress
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.analysis import iptables, nftables, ufw
from shared.analysis.findings import RECREATE_TUNNEL_PODS, Finding, Subject
from shared.analysis.netcat import analyze as nc_analyze
from shared.analysis.netcat import findings as nc_findings
from shared.analysis.nsg import Flow, TagContext, evaluate_flow, parse_nsg, propose_fix
from shared.analysis.nsg import findings_for as nsg_findings_for
from shared.analysis.shell import Command, Placeholder
from shared.analysis.snat import Capacity, snat_capacity
from shared.analysis.snat.remedies import capacity_findings, load_balancer_fix
from shared.analysis.snat.remedies import findings as snat_remedy_findings
from shared.checks.node import node_findings
from shared.checks.probe_outcomes import denied_finding, gave_up_finding
from shared.cli.main import main
from shared.inventory.model import AgentPool, Cluster, Instance, PowerState
from shared.probe.output import parse_probe_output
from tests.skips import cannot_run
from tests.unit.test_nsg_support import doc, rule

STUBS = (
    "az", "iptables", "ip6tables", "iptables-legacy", "iptables-nft", "ip6tables-legacy",
    "ip6tables-nft", "iptables-save", "iptables-legacy-save", "iptables-nft-save", "ufw", "nft",
    "kubectl", "sudo", "nc", "timeout", "openssl",
)  # fmt: skip
BUILTINS = frozenset({"printf"})  # run by the shell itself: checked through the next stdin
SNAT = Path(__file__).resolve().parents[1] / "fixtures" / "snat"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# Names Azure accepts, and names only a user's argument or a hostile node could carry.
AZURE_NAMES = ("rg-batch(prod)", "rg-café", "MC_rg.x_(1)")
HOSTILE = (
    "x;touch pwned",
    "$(touch pwned)",
    "`touch pwned`",
    'it\'s "q" $HOME',
    "a b\tc",
    "line\ntouch pwned",
    "x&&touch pwned|cat>pwned2",
    "*",
    "-rf",
    "!!",
    "{a,b}~",
    "back\\slash",
)
NAMES = AZURE_NAMES + HOSTILE


@dataclass
class Stubs:
    bin: Path
    calls: Path
    scratch: Path

    def run(self, text: str, shell: str = "bash") -> list[tuple[tuple[str, ...], bytes]]:
        """Run `text` as a pasted command; the (argv, stdin) of every stub it started."""
        for d in (self.calls, self.scratch):
            for f in d.iterdir():
                shutil.rmtree(f) if f.is_dir() else f.unlink()
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "TW_CALLS": str(self.calls), "HOME": "/x"}
        subprocess.run(
            [shell, "-c", text], cwd=self.scratch, env=env, stdin=subprocess.DEVNULL,
            capture_output=True, timeout=30, check=False,
        )  # fmt: skip
        out = []
        for f in sorted(self.calls.glob("*.argv")):
            argv = tuple(f.read_bytes().decode().split("\0")[:-1])
            out.append((argv, f.with_suffix(".stdin").read_bytes()))
        created = sorted(p.name for p in self.scratch.iterdir())
        assert created == [], f"{text!r} created {created}"
        return sorted(out)


@pytest.fixture(scope="module")
def stubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stubs]:
    if shutil.which("bash") is None or shutil.which("sh") is None:
        cannot_run("needs bash and sh to run the printed commands")
    root = tmp_path_factory.mktemp("stubs")
    s = Stubs(root / "bin", root / "calls", root / "scratch")
    for d in (s.bin, s.calls, s.scratch):
        d.mkdir()
    for name in STUBS:
        stub = s.bin / name
        stub.write_text(
            "#!/bin/bash\n"
            'f="$TW_CALLS/$BASHPID"\n'
            'if [ -p /dev/stdin ]; then cat > "$f.stdin"; else : > "$f.stdin"; fi\n'
            'printf \'%s\\0\' "${0##*/}" "$@" > "$f.argv"\n'
        )
        stub.chmod(0o755)
    yield s


def _words(argv: tuple[str | int | Placeholder, ...]) -> tuple[str, ...]:
    return tuple(str(w) for w in argv)


def _check(stubs: Stubs, cmd: str, shell: str = "bash") -> None:
    """Run `cmd` (a Command) and check each stub got exactly the words it was built from."""
    assert isinstance(cmd, Command), f"printed as plain text, not built from words: {cmd!r}"
    if cmd.placeholders:
        # As printed, it must not run: the user has to fill the placeholders first.
        assert stubs.run(cmd, shell) == [], f"{cmd!r} ran with its placeholders unfilled"
        filled = cmd.fill({p.name: f"{p.name};touch pwned" for p in cmd.placeholders})
        assert not filled.placeholders
        _check(stubs, filled, shell)
        return
    expected = sorted(_words(a) for a in cmd.parts if str(a[0]) not in BUILTINS)
    calls = stubs.run(cmd, shell)
    assert [argv for argv, _ in calls] == expected, cmd
    for i, argv in enumerate(cmd.parts):
        if str(argv[0]) in BUILTINS and i + 1 < len(cmd.parts) and cmd.operators[i] == "|":
            # What the builtin writes is what the next program reads.
            want = subprocess.run(
                ["/usr/bin/printf", *_words(argv)[1:]], capture_output=True, check=True
            ).stdout
            nxt = _words(cmd.parts[i + 1])
            assert [stdin for argv2, stdin in calls if argv2 == nxt] == [want], cmd
    for argv in cmd.parts:
        for w in argv:
            if isinstance(w, Command):
                _check(stubs, w, shell)  # the script run command runs on the node


def _commands(found: list[Finding] | tuple[Finding, ...]) -> list[str]:
    out = [c for f in found if f.remediation for c in f.remediation.commands]
    assert out, "the case produced no command: it tests nothing"
    return out


# --- the product's code paths, each with a hostile name ---------------------------------


def _blob(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode())).decode()


NODE_IP, PEER_IP = "10.224.0.4", "10.224.0.5"
HEAD = [
    "tool\tnc=openbsd\ttimeout gzip base64 crictl iptables-legacy-save iptables-nft-save ip",
    "host\tnode000003",
    f"addr\teth0\t{NODE_IP}/16",
    "os\tubuntu\t22.04\t5.15.0-1064-azure",
]
ACCEPT_ALL = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


def _probe(records: list[str], mode: str = "deep") -> str:
    body = [*HEAD, *records]
    return "\n".join([f"TWPROBE 1 BEGIN {mode}", *body, f"TWPROBE 1 END {len(body)}"]) + "\n"


def _cluster(rg: str, node_rg: str, vmss: str, name: str = "aks1") -> tuple[Cluster, AgentPool]:
    inst = Instance("3", f"{vmss}_3", "node000003", PowerState.RUNNING, (NODE_IP,))
    pool = AgentPool(
        "nodepool1", "System", "Linux", "VirtualMachineScaleSets", 3, None, None, "", None,
        None, vmss_name=vmss, instances=(inst,),
    )  # fmt: skip
    cluster = Cluster(
        f"/subscriptions/s1/resourceGroups/{rg}/providers/Microsoft.ContainerService/"
        f"managedClusters/{name}",
        name, "s1", rg, "westeurope", node_rg, "loadBalancer", False, False, None,
        "aks1.hcp.westeurope.azmk8s.io", None, "azure", "", None, "Unrestricted", "Running",
        pools=(pool,),
    )  # fmt: skip
    return cluster, pool


def _node(text: str, name: str, subnet: str | None = "10.224.0.0/16") -> list[Finding]:
    cluster, pool = _cluster(name, name, name, name)
    return node_findings(
        parse_probe_output(text, "probe"), cluster=cluster, pool=pool,
        instance=pool.instances[0], peers={PEER_IP: "n1"}, source_subnet=subnet, now=NOW,
    )  # fmt: skip


def _iptables_drop(name: str) -> str:
    """A DROP in a chain named after `name` (iptables names hold no space, 28 characters at
    most), with the name again in a rule comment."""
    chain = "TW" + re.sub(r"[\s\"\\]", "_", name)[:26]
    q = json.dumps(name.replace("\n", " "), ensure_ascii=False)
    return (
        f"*filter\n:INPUT ACCEPT [0:0]\n:{chain} - [0:0]\n-A INPUT -j {chain}\n"
        f"-A {chain} -p tcp -m comment --comment {q} -m tcp --dport 10250 -j DROP\nCOMMIT\n"
    )


def _nft(table: str, chain: str, *, policy: str = "accept", rule: bool = True) -> str:
    items: list[dict[str, object]] = [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": table, "handle": 1}},
        {"chain": {"family": "inet", "table": table, "name": chain, "handle": 1,
                   "type": "filter", "hook": "input", "prio": 0, "policy": policy}},
    ]  # fmt: skip
    if rule:
        items.append({"rule": {"family": "inet", "table": table, "chain": chain, "handle": 7,
                               "expr": [{"match": {"op": "==", "left": {"payload": {
                                   "protocol": "tcp", "field": "dport"}}, "right": 10250}},
                                   {"drop": None}]}})  # fmt: skip
    return json.dumps({"nftables": items})


UFW_DENY = (
    "Status: active\nLogging: on (low)\nDefault: deny (incoming), allow (outgoing), "
    "disabled (routed)\nNew profiles: skip\n\nTo                         Action      From\n"
    "--                         ------      ----\n22/tcp                     ALLOW IN    Anywhere\n"
)
UFW_SHADOW = UFW_DENY + "10250/tcp                  DENY IN     Anywhere\n"


def node_cases(name: str) -> Iterator[tuple[str, list[Finding]]]:
    legacy = f"ruleset\tlegacy\t{_blob(ACCEPT_ALL)}"
    yield "iptables rule", _node(_probe(["ufw\tabsent", f"ruleset\tlegacy\t{_blob(_iptables_drop(name))}"]), name)  # fmt: skip
    policy = ACCEPT_ALL.replace(":INPUT ACCEPT", ":INPUT DROP")
    yield "iptables policy", _node(_probe(["ufw\tabsent", f"ruleset\tnft\t{_blob(policy)}"]), name)  # fmt: skip
    yield "ufw default", _node(_probe([f"ufw\t{_blob(UFW_DENY)}", legacy]), name)
    yield "ufw shadowed", _node(_probe([f"ufw\t{_blob(UFW_SHADOW)}", legacy]), name, None)
    for table, chain in ((name, "input"), ("kp", name), ("kp", "input")):
        nft = f"ruleset\tnftables\t{_blob(_nft(table, chain))}"
        yield f"nft rule {table}/{chain}", _node(_probe(["ufw\tabsent", legacy, nft]), name)
        pol = f"ruleset\tnftables\t{_blob(_nft(table, chain, policy='drop', rule=False))}"
        yield f"nft policy {table}/{chain}", _node(_probe(["ufw\tabsent", legacy, pol]), name)
    for too_large in ("toolarge\truleset\tnft\t23456", "toolarge\truleset\tnftables\t9",
                      "toolarge\tufw\t-\t9000", "toolarge\truleset\tlegacy\t5"):  # fmt: skip
        yield too_large, _node(_probe([legacy, too_large]), name)
    oom = [
        "component\tkonnectivity-agent\tCONTAINER_EXITED\t1\t137\tOOMKilled\t2024-05-01T11:00:00Z",
        "component\taks-link\tCONTAINER_EXITED\t7\t137\tOOMKilled\t2024-05-01T11:00:00Z",
    ]
    yield "agents", _node(_probe(oom, mode="triage"), name)


def engine_cases(name: str) -> Iterator[tuple[str, list[Finding]]]:
    """The engines alone, as `tunnelwatch analyze iptables|nft|ufw` print them."""
    subject = Subject()
    src = ipaddress.ip_address(PEER_IP)
    rs = iptables.parse_rulesets(_iptables_drop(name), "t")
    packet = iptables.Packet(src=src, dst=ipaddress.ip_address(NODE_IP), dport=10250)
    yield "iptables", iptables.findings_for(iptables.evaluate_input(rs, packet), subject)
    for table, chain in ((name, "input"), ("kp", "input")):
        ruleset = nftables.parse_ruleset(_nft(table, chain), "t")
        v = nftables.evaluate_input(ruleset, packet)
        yield f"nft {table}", nftables.findings_for(v, subject)
    status = ufw.parse_status(UFW_DENY, "t")
    for fix_net in (None, ipaddress.ip_network("10.224.0.0/16")):
        v6 = ufw.evaluate(status, 10250, "tcp", None, None, "")
        yield f"ufw {fix_net}", ufw.findings_for(v6, subject, fix_net)


def azure_cases(name: str) -> Iterator[tuple[str, list[Finding]]]:
    cluster, pool = _cluster(name, name, name, name)
    for code in ("ScopeLocked", "RequestDisallowedByPolicy", "AuthorizationFailed"):
        yield f"denied {code}", [denied_finding(cluster, pool, "n", code, "m", NOW)]
    yield "gave up", [gave_up_finding(cluster, pool, "n", "deep", 3, "busy", NOW)]
    plain_cluster, plain_pool = _cluster(name, name, "", name)
    yield "gave up, no vmss", [gave_up_finding(plain_cluster, plain_pool, "n", "deep", 3, "b", NOW)]
    # NSG: a deny at 100 (two steps: move it, then allow) and a deny at 200 (one step).
    ctx = TagContext(vnet_prefixes=(ipaddress.ip_network("10.224.0.0/12"),))
    flow = Flow("inbound", "10.224.0.4", "10.224.0.5", 10250)
    for prio in (100, 200):
        nsg = parse_nsg(doc(rule(name, prio, "Deny", dport="10250"), name=name, rg=name), "x")
        v = evaluate_flow(flow, nsg, None, ctx)
        yield f"nsg {prio}", nsg_findings_for(v, Subject(), fix=propose_fix(v))
    # SNAT: every shape of the load-balancer and NAT gateway fixes.
    caps: list[Capacity | None] = [
        None, snat_capacity(1, 1024, 50, 2), snat_capacity(1, 1024, 80, 2),
        snat_capacity(2, 0, 10, 1), snat_capacity(8, 64, 3, 1),
    ]  # fmt: skip
    for cap in caps:
        fix = load_balancer_fix(name, name, cap)
        yield f"lb fix {cap}", [Finding("x", None, *_problem(), remediation=fix)]
        if cap is not None and cap.fits is False:
            yield f"capacity {cap}", list(capacity_findings(cap, resource_group=name, cluster=name))
    from shared.analysis import snat

    text = (SNAT / "natgw-failed.json").read_text()
    report = snat.evaluate(snat.parse_metrics(text, "m"), "m")
    yield "nat gateway", list(snat_remedy_findings(report, resource_group=name, cluster=name))


def _problem() -> tuple[object, ...]:
    from shared.analysis.findings import Kind, Severity

    return (Kind.PROBLEM, Severity.CRITICAL, Subject(), "t")


def fixed_cases() -> Iterator[tuple[str, list[str]]]:
    text = (
        "nc: connect to 10.0.0.5 port 10250 (tcp) timed out: Operation now in progress\n"
        "target=10.0.0.6:10250\n"
    )
    yield "netcat", _commands(nc_findings(nc_analyze(text, "t")))
    yield "recreate tunnel pods", [RECREATE_TUNNEL_PODS]


def _all_cases() -> list[tuple[str, str, list[str]]]:
    cases: list[tuple[str, str, list[str]]] = []
    for name in NAMES:
        for gen in (node_cases, engine_cases, azure_cases):
            for what, found in gen(name):
                cases.append((what, name, [c for f in found if f.remediation
                                           for c in f.remediation.commands]))  # fmt: skip
    cases += [(what, "", commands) for what, commands in fixed_cases()]
    return cases


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_every_printed_command_runs_exactly_its_words(stubs: Stubs, shell: str) -> None:
    seen: set[str] = set()
    for what, name, commands in _all_cases():
        assert commands, f"{what} with {name!r} printed no command: the case tests nothing"
        for cmd in commands:
            if cmd in seen:
                continue  # the same text from another path: it ran already
            seen.add(cmd)
            try:
                _check(stubs, cmd, shell)
            except AssertionError as exc:
                raise AssertionError(f"{what} with name {name!r}: {exc}") from exc
    assert len(seen) > 300


# --- the CLI, and the cases issue 15 names, checked word by word -------------------------


@pytest.mark.parametrize("rg", NAMES)
def test_analyze_snat_resource_group_reaches_az_as_one_word(
    stubs: Stubs, rg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["analyze", "snat", str(SNAT / "lb-failed.json"), f"--resource-group={rg}",
            "--cluster", "aks;touch pwned", "--frontend-ips", "1", "--ports-per-node", "1024",
            "--max-nodes", "50", "--surge", "2", "--json"]  # fmt: skip
    if any(ord(c) < 32 for c in rg):
        with pytest.raises(SystemExit) as stop:  # no name holds a control character
            main(argv)
        assert stop.value.code == 2
        assert "--resource-group" in capsys.readouterr().err
        return
    assert main(argv) == 1
    out = json.loads(capsys.readouterr().out)
    commands = [c for f in out["findings"] for c in f["remediation"]["commands"]]
    assert len(commands) >= 3
    for text in commands:
        calls = stubs.run(text)
        assert len(calls) == 1, text
        words = calls[0][0]
        assert words[:3] == ("az", "aks", "update"), text
        assert words[words.index("-g") + 1] == rg
        assert words[words.index("-n") + 1] == "aks;touch pwned"


@pytest.mark.parametrize("name", NAMES)
def test_too_large_read_by_hand_reaches_az_as_one_word(stubs: Stubs, name: str) -> None:
    (f,) = _node(_probe([f"ruleset\tlegacy\t{_blob(ACCEPT_ALL)}", "toolarge\truleset\tnft\t9"]), name)  # fmt: skip
    assert f.remediation is not None
    (cmd,) = f.remediation.commands
    text = cmd.replace("<SAS URL of a blob to write to>", "https://x/y").replace(
        "<sas-url-of-output-blob>", "https://x/y"
    )
    ((words, _),) = stubs.run(text)
    assert words[:5] == ("az", "vmss", "run-command", "create", "-g")
    assert (words[5], words[7], words[9]) == (name, name, "3")
    assert words[words.index("--script") + 1] == "iptables-nft-save"


def test_native_nft_fix_through_run_command_pipes_json_into_nft(stubs: Stubs) -> None:
    chain = "in$(touch pwned)'x"
    nft = f"ruleset\tnftables\t{_blob(_nft('kp', chain))}"
    (f,) = _node(_probe(["ufw\tabsent", f"ruleset\tlegacy\t{_blob(ACCEPT_ALL)}", nft]), "rg")
    assert f.remediation is not None
    ((outer, _),) = stubs.run(f.remediation.commands[0])
    script = outer[outer.index("--scripts") + 1]
    ((words, stdin),) = stubs.run(script)  # as the node runs it
    assert words == ("nft", "-j", "-f", "-")
    cmd = json.loads(stdin)["nftables"][0]
    assert cmd == {
        "delete": {"rule": {"family": "inet", "table": "kp", "chain": chain, "handle": 7}}
    }
