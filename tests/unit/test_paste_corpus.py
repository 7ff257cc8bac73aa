"""The corpus of docs/cli.md "What you can paste": one example per accepted shape, each run
through `tunnelwatch analyze` clean and with the paste damage people add (prompts, sudo,
markdown, console timestamps, CRLF), and each checked for its exit code (the verdict), its
deciding rule and its fix. Damage must change none of the three, and the output must say
which lines were skipped.

The examples come from the real tools where they run here (iptables, iptables-save and nft
in a fresh network namespace, OpenBSD nc against a closed port), else from the example
inputs. To add a shape: add a Shape to SHAPES (its builder returns the capture, `command` the
command line a prompt would show); the damages apply to it on their own.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.cli.main import main
from tests.skips import cannot_run

ROOT = Path(__file__).resolve().parents[2]
FLOW = ("--src", "10.224.0.4", "--dst", "10.224.0.5")
RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m tcp --dport 10250 -j DROP
COMMIT
"""


@functools.cache
def _netns(script: str, stdin: str = "") -> str:
    """stdout of `sh -c script` in a fresh network namespace (lo up)."""
    try:
        done = subprocess.run(
            ["unshare", "-n", "sh", "-c", f"ip link set lo up; {script}"],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        cannot_run(f"no network namespace for the real tools: {exc}")
    if done.returncode != 0 and not done.stdout:
        cannot_run(f"the real tools did not run in a namespace: {done.stderr.strip()[:200]}")
    return done.stdout + done.stderr


def _iptables(listing: str) -> Callable[[], str]:
    return lambda: _netns(f"iptables-restore && {listing}", RULES)


def _nft() -> str:
    return _netns(
        "nft add table inet f && nft add chain inet f input "
        "'{ type filter hook input priority 0; policy accept; }' && "
        "nft add rule inet f input tcp dport 10250 drop && nft -j list ruleset"
    )


def _nc_refused() -> str:
    return _netns("nc -vz -w 2 127.0.0.1 10250; true")


def _tool(program: str, script: str) -> Callable[[], str]:
    def build() -> str:
        if shutil.which(program) is None:
            cannot_run(f"needs {program} (make test installs it as root)")
        return _netns(script)

    return build


# ncat prints no target on a timeout: only the prompt's command line names it.
_ncat_timeout = _tool(
    "ncat", "iptables -A INPUT -p tcp --dport 10250 -j DROP; ncat -vz -w 1 127.0.0.1 10250; true"
)
_traditional_refused = _tool("nc.traditional", "nc.traditional -vnz -w 1 127.0.0.1 10250; true")
# What `ufw allow from any app Samba` and `ufw limit 22/tcp` print (ufw 0.36.2).
_UFW_HEAD = (
    "Status: active\nLogging: on (low)\n"
    "Default: deny (incoming), allow (outgoing), disabled (routed)\nNew profiles: skip\n\n"
    "To                         Action      From\n--                         ------      ----\n"
)


def _ufw(rules: str) -> Callable[[], str]:
    return lambda: _UFW_HEAD + rules + "\n"


def _file(rel: str) -> Callable[[], str]:
    return (ROOT / rel).read_text


@dataclass(frozen=True)
class Shape:
    name: str  # as docs/cli.md "What you can paste" names it
    analyzer: str
    build: Callable[[], str]  # the capture
    command: str  # the command line that printed it
    args: tuple[str, ...]  # arguments after FILE
    exit_code: int  # the verdict: 0 allowed/ok, 1 blocked/problem, 3 inconclusive
    rule: str | None  # in the line naming the deciding rule (None: no such line)
    fix: str | None  # in a fix line (None: no fix)
    text: bool = True  # line-oriented text (every damage applies), not JSON


SHAPES: list[Shape] = [
    Shape(
        "iptables-save",
        "iptables",
        _iptables("iptables-save"),
        "iptables-save",
        FLOW,
        1,
        "decided by: filter INPUT rule 3: -A INPUT -p tcp -m tcp --dport 10250 -j DROP",
        "-D INPUT 3",
    ),
    Shape(
        "iptables -S",
        "iptables",
        _iptables("iptables -S"),
        "iptables -S",
        FLOW,
        1,
        "decided by: filter INPUT rule 3: -A INPUT -p tcp -m tcp --dport 10250 -j DROP",
        "-D INPUT 3",
    ),
    # iptables -L listings: the listing helper's corpus (tests/netns/test_iptables_listings.py)
    Shape(
        "nft -j list ruleset",
        "nft",
        _nft,
        "nft -j list ruleset",
        FLOW,
        1,
        "decided by: inet f input handle 2: tcp dport 10250 drop",
        "nft delete rule inet f input handle 2",
        text=False,
    ),
    Shape(
        "ufw status verbose",
        "ufw",
        _file("examples/inputs/node-ufw-status-verbose.txt"),
        "ufw status verbose",
        ("--src", "10.224.0.4"),
        1,
        "the default incoming policy deny (line",
        "ufw allow from 10.224.0.4 to any port 10250 proto tcp",
    ),
    Shape(
        "nc -vz (OpenBSD), refused",
        "nc",
        _nc_refused,
        "nc -vz -w 2 127.0.0.1 10250",
        (),
        1,
        "127.0.0.1:10250 refused",
        None,
    ),
    Shape(
        "ncat -vz, timeout",
        "nc",
        _ncat_timeout,
        "ncat -vz -w 1 127.0.0.1 10250",
        (),
        1,
        "timeout     Ncat: TIMEOUT.",
        None,
    ),
    Shape(
        "nc.traditional -vz, refused",
        "nc",
        _traditional_refused,
        "nc.traditional -vnz -w 1 127.0.0.1 10250",
        (),
        1,
        "127.0.0.1:10250 refused     (UNKNOWN) [127.0.0.1] 10250 (?) : Connection refused",
        None,
    ),
    Shape(
        "ufw status verbose, a rule on a source port (Samba)",
        "ufw",
        _ufw(
            "Anywhere                   ALLOW IN    139,445/tcp (Samba)\n"
            "22/tcp                     ALLOW IN    Anywhere\n"
        ),
        "ufw status verbose",
        ("--src", "10.224.0.4"),
        1,
        "the default incoming policy deny (line",
        "ufw allow from 10.224.0.4 to any port 10250 proto tcp",
    ),
    Shape(
        "ufw status verbose, LIMIT",
        "ufw",
        _ufw("10250/tcp                  LIMIT IN    Anywhere\n"),
        "ufw status verbose",
        ("--src", "10.224.0.4"),
        1,
        "rate-limits (accepts, but refuses the 6th new connection",
        "ufw insert 1 allow from 10.224.0.4 to any port 10250 proto tcp",
    ),
    Shape(
        "az vm run-command invoke (JSON)",
        "runcommand",
        _file("tests/fixtures/runcommand/linux-succeeded.json"),
        "az vmss run-command invoke -g rg -n vmss --instance-id 0 --command-id RunShellScript",
        (),
        0,
        None,
        None,
        text=False,
    ),
    Shape(
        "az network nsg show (JSON)",
        "nsg",
        _file("examples/inputs/subnet-nsg.json"),
        "az network nsg show -g rg -n nsg-aks-nodes",
        ("--direction", "inbound", "--dport", "10250", "--vnet-prefix", "10.224.0.0/12"),
        1,
        "deny-management-ports",
        None,
        text=False,
    ),
    Shape(
        "az monitor metrics list (SNAT, JSON)",
        "snat",
        _file("tests/fixtures/snat/lb-ok.json"),
        "az monitor metrics list --resource LB --metric SnatConnectionCount",
        (),
        0,
        None,
        None,
        text=False,
    ),
]


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


# name -> (capture, command) -> pasted text; "notes": the damage says what it skipped
DAMAGES: dict[str, Callable[[str, str], str]] = {
    "clean": lambda t, c: t,
    "root prompt and trailing prompt": lambda t, c: f"root@aks-node:~# {c}\n{t}root@aks-node:~# ",
    "[user@host ~]# prompt": lambda t, c: f"[root@aks-node ~]# {c}\n{t}",
    "$ sudo and password prompt": lambda t, c: f"$ sudo {c}\n[sudo] password for azureuser: \n{t}",
    "> prompt": lambda t, c: f"> {c}\n{t}",
    "### header": lambda t, c: f"### {c}\n{t}",
    "markdown fence": lambda t, c: f"```console\n$ {c}\n{t}```\n",
    "blockquote": lambda t, c: "".join(f"> {ln}" for ln in _lines(f"$ {c}\n{t}")),
    "console timestamps": lambda t, c: "".join(
        f"[{i * 0.000131 + 14.41:12.6f}] {ln}" for i, ln in enumerate(_lines(t))
    ),
    "CRLF": lambda t, c: t.replace("\n", "\r\n"),
    "fence, blockquote, CRLF": lambda t, c: "".join(
        f"> {ln}" for ln in _lines(f"```\n$ {c}\n{t}```\n")
    ).replace("\n", "\r\n"),
}
JSON_DAMAGES = ("clean", "root prompt and trailing prompt", "markdown fence", "CRLF", "> prompt")


def _cases() -> list[tuple[Shape, str]]:
    return [
        (s, d)
        for s in SHAPES
        for d in DAMAGES
        if s.text or d in JSON_DAMAGES or (d == "console timestamps" and s.analyzer != "nft")
    ]


def _run(
    shape: Shape, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    path = tmp_path / "capture.txt"
    path.write_bytes(text.encode())
    argv = ["analyze", shape.analyzer]
    if shape.analyzer == "nsg":
        argv += ["--subnet-nsg", str(path), *FLOW, *shape.args]
    else:
        argv += [str(path), *shape.args]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("shape", "damage"), _cases(), ids=lambda v: getattr(v, "name", v))
def test_shape_survives_paste_damage(
    shape: Shape, damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capture = shape.build()
    code, out, err = _run(shape, DAMAGES[damage](capture, shape.command), tmp_path, capsys)
    assert code == shape.exit_code, (damage, out, err)
    if shape.rule is not None:
        assert shape.rule in out, out
    if shape.fix is not None:
        assert any(
            shape.fix in ln for ln in out.splitlines() if "fix" in ln or ln.startswith("  ")
        ), out
    if damage not in ("clean", "CRLF"):
        notes = [ln for ln in out.splitlines() if ln.startswith("note: ")]
        assert any(": skipped line 1: " in n or ": removed " in n for n in notes), out


@pytest.mark.parametrize("shape", [s for s in SHAPES if s.text], ids=lambda s: s.name)
def test_json_output_lists_what_was_skipped(
    shape: Shape, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pasted = DAMAGES["$ sudo and password prompt"](shape.build(), shape.command)
    code, out, _ = _run(
        Shape(**{**shape.__dict__, "args": (*shape.args, "--json")}), pasted, tmp_path, capsys
    )
    assert code == shape.exit_code
    (paste,) = json.loads(out)["paste"]
    assert paste["commands"] == [{"line": 1, "command": f"sudo {shape.command}"}]
    assert [(s["first_line"], s["what"]) for s in paste["skipped"]] == [
        (1, f"the shell prompt and command `sudo {shape.command}`"),
        (2, "sudo's password prompt"),
    ]


def test_errors_name_the_pasted_line_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = RULES.replace("-A INPUT -i lo -j ACCEPT\n", "garbage line here\n")
    pasted = f"```\n$ sudo iptables-save\n{bad}```\n"  # the bad rule is line 7 of the paste
    shape = SHAPES[0]
    code, _, err = _run(shape, pasted, tmp_path, capsys)
    assert code == 2 and "capture.txt:7:" in err, err
