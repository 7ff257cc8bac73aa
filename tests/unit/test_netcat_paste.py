"""nc output as people paste it (issue 10, item 10): the prompt names the target, ncat's next
address, traditional netcat, a silent `nc -z` with `echo $?`, and one target of two families.

The tool lines are real output, captured in network namespaces (tests/netns/test_nc_tools.py
produces them afresh): OpenBSD nc 1.219, ncat 7.93, busybox 1.35 and netcat-traditional 1.10
against 10.77.0.5 (DROP on 10250, REJECT tcp-reset on 10251, icmp-host-unreachable on 10252,
a listener on 443), `node1` resolving to 10.77.0.5 and 2001:db8:77::5 (no IPv6 route).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.analysis import netcat
from shared.analysis.netcat import Status
from shared.analysis.netcat.lines import LineKind, Tool, read_line
from shared.analysis.paste import clean
from shared.cli.main import main


def _analyze(text: str, expect: int | None = None) -> netcat.NetcatReport:
    paste = clean(text)
    return netcat.analyze(paste.text, "t", expect=expect, commands=paste.commands)


def _statuses(text: str) -> dict[str, str]:
    return {r.target.label(): r.status.value for r in _analyze(text).results}


V = "Ncat: Version 7.93 ( https://nmap.org/ncat )\n"


@pytest.mark.parametrize(
    ("prompt", "output", "target", "status"),
    [
        ("ncat -vz -w2 10.77.0.5 10250", f"{V}Ncat: TIMEOUT.\n", "10.77.0.5:10250", "timeout"),
        ("ncat -vz -w2 10.77.0.5 10251", f"{V}Ncat: Connection refused.\n", "10.77.0.5:10251", "refused"),
        ("ncat -v -n 10.77.0.5 10252", f"{V}Ncat: No route to host.\n", "10.77.0.5:10252", "unreachable"),
        ("busybox nc -w2 10.77.0.5 10250 </dev/null", "nc: timed out\n", "10.77.0.5:10250", "timeout"),
        ("busybox nc -w2 10.77.0.5 10251", "nc: can't connect to remote host (10.77.0.5): Connection refused\n", "10.77.0.5:10251", "refused"),
        ("nc -vz -w2 10.77.0.5 10250", "nc: connect to 10.77.0.5 port 10250 (tcp) timed out: Operation now in progress\n", "10.77.0.5:10250", "timeout"),
        ("sudo nc -vzu 10.77.0.5 53", "Connection to 10.77.0.5 53 port [udp/domain] succeeded!\n", "10.77.0.5:53/udp", "unknown"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("shell", ["$ ", "root@aks-nodepool1-0:~# ", "[root@node ~]# "])
def test_the_prompt_names_the_target(
    prompt: str, output: str, target: str, status: str, shell: str
) -> None:
    """A tool line that does not name its target gets the one the command line names."""
    assert _statuses(f"{shell}{prompt}\n{output}") == {target: status}


def test_each_prompt_frames_only_its_own_output() -> None:
    text = (
        "$ ncat -vz 10.77.0.5 10250\nNcat: TIMEOUT.\n"
        "$ ncat -vz 10.77.0.5 443\nNcat: Connected to 10.77.0.5:443.\n"
        "Ncat: 0 bytes sent, 0 bytes received in 0.07 seconds.\n"
        "$ cat notes.txt\nNcat: Connection refused.\n"  # another command: this line has no target
        "$ nc -vz 10.77.0.5 10248-10249\nNcat: TIMEOUT.\n"  # several targets: none of them
    )
    results = _analyze(text).results
    assert [(r.target.label(), r.status.value) for r in results] == [
        ("10.77.0.5:10250", "timeout"),
        ("10.77.0.5:443", "open"),
        ("?:?", "refused"),
        ("?:?", "timeout"),
    ]


def test_a_prompt_whose_command_printed_nothing_is_unknown_and_says_why() -> None:
    [r] = _analyze("$ nc -z 10.77.0.5 10250\n$ \n").results
    assert (r.target.label(), r.status) == ("10.77.0.5:10250", Status.UNKNOWN)
    assert "echo $?" in r.decisive.reason


@pytest.mark.parametrize(
    "text",
    [
        "$ nc -z -w2 10.77.0.5 10250\n$ echo $?\n1\n$ nc -z -w2 10.77.0.5 443\n$ echo $?\n0\n",
        "root@node:~# nc -z -w2 10.77.0.5 10250; echo $?\n1\n"
        "root@node:~# nc -z -w2 10.77.0.5 443 ; echo $?\n0\n",
        "$ ncat -z 10.77.0.5 10250 && echo $?\n1\n$ timeout 3 nc -z 10.77.0.5 443; echo $?\n0\n",
    ],
)
def test_silent_z_and_its_exit_status(text: str) -> None:
    assert _statuses(text) == {"10.77.0.5:10250": "failed", "10.77.0.5:443": "open"}
    assert _analyze(text, expect=2).verdict is Status.FAILED


def test_exit_status_meanings() -> None:
    # 124 only means "killed by timeout" under timeout; 1 for a name may be a DNS failure.
    assert _statuses("$ timeout 2 nc -z 10.77.0.5 10250; echo $?\n124\n") == {
        "10.77.0.5:10250": "timeout"
    }
    assert _statuses("$ nc -z 10.77.0.5 10250; echo $?\n124\n") == {"10.77.0.5:10250": "unknown"}
    assert _statuses("$ nc -z node1 10250; echo $?\n1\n") == {"node1:10250": "unknown"}
    # A message wins over the exit status; a number with no `echo $?` is not one.
    text = "$ nc -vz 10.77.0.5 10251; echo $?\nnc: connect to 10.77.0.5 port 10251 (tcp) failed: Connection refused\n1\n"
    assert _statuses(text) == {"10.77.0.5:10251": "refused"}
    assert _statuses("$ nc -z 10.77.0.5 10250\n0\n") == {"10.77.0.5:10250": "unknown"}


NCAT_TWO_ADDRESSES = (
    "Ncat: Version 7.93 ( https://nmap.org/ncat )\n"
    "Ncat: Connection to 10.77.0.5 failed: TIMEOUT.\n"
    "Ncat: Trying next address...\n"
    "Ncat: Network is unreachable.\n"
)


def test_ncat_next_address_is_the_same_target() -> None:
    for text, label in (
        (f"$ ncat -vz -w2 node1 10250\n{NCAT_TWO_ADDRESSES}", "node1:10250"),
        (NCAT_TWO_ADDRESSES, "?:?"),  # no command line: still one result, not two
    ):
        [r] = _analyze(text).results
        assert (r.target.label(), r.status) == (label, Status.TIMEOUT)
        assert [(f.family, f.status) for f in r.families] == [
            (4, Status.TIMEOUT),
            (None, Status.UNREACHABLE),
        ]
        assert r.decisive.address == "10.77.0.5"
    line = read_line("Ncat: Trying next address...", "t", 1)
    assert line is not None and line.kind is LineKind.NEXT


def test_ipv4_timeout_and_ipv6_unreachable_do_not_collapse() -> None:
    text = (
        "nc: connect to node1 (10.77.0.5) port 10250 (tcp) timed out: Operation now in progress\n"
        "nc: connect to node1 (2001:db8:77::5) port 10250 (tcp) failed: Network is unreachable\n"
    )
    [r] = _analyze(text).results
    assert r.status is Status.TIMEOUT and r.decisive.address == "10.77.0.5"
    assert [(f.family, f.status.value) for f in r.families] == [(4, "timeout"), (6, "unreachable")]
    assert r.families[1].to_json()["address"] == "2001:db8:77::5"
    # One family, several attempts: the last decisive one, as before.
    same = text.replace("2001:db8:77::5", "10.77.0.6")
    [r] = _analyze(same).results
    assert r.status is Status.UNREACHABLE and r.families == () and r.mixed


TRADITIONAL = (
    "root@node:~# nc.traditional -vz -w2 10.77.0.9 10250\n"
    "10.77.0.9: inverse host lookup failed: Host name lookup failure\n"
    "(UNKNOWN) [10.77.0.9] 10250 (?) : Connection timed out\n"
    "root@node:~# nc.traditional -vz -w2 node1 443 10251\n"
    "node1 [10.77.0.5] 443 (https) open\n"
    "node1 [10.77.0.5] 10251 (?) : Connection refused\n"
    " sent 0, rcvd 0\n"
    "(UNKNOWN) [10.77.0.5] 10252 (?) : No route to host\n"
    "nosuch.invalid: forward host lookup failed: Host name lookup failure : Resource temporarily unavailable\n"
)


def test_traditional_netcat_mixed_with_other_lines() -> None:
    assert _statuses(TRADITIONAL) == {
        "10.77.0.9:10250": "timeout",
        "node1:443": "open",
        "node1:10251": "refused",
        "10.77.0.5:10252": "unreachable",
        "nosuch.invalid:?": "unknown",
    }
    line = read_line("(UNKNOWN) [10.77.0.5] 443 (https) open", "t", 1)
    assert line is not None and line.tool is Tool.TRADITIONAL_NC and line.address == "10.77.0.5"


# ---- tunnelwatch analyze nc


def _cli(tmp_path: Path, text: str, *args: str) -> int:
    capture = tmp_path / "nc.txt"
    capture.write_text(text)
    return main(["analyze", "nc", str(capture), *args])


def test_cli_reads_the_prompt_and_reports_each_family(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f"azureuser@aks-nodepool1-0:~$ ncat -vz -w2 node1 10250\n{NCAT_TWO_ADDRESSES}"
    code = _cli(tmp_path, text, "--expect", "1")
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("node1:10250 timeout")
    assert (
        "by family: IPv4 10.77.0.5: timeout (line 3, TIMEOUT); another address: unreachable" in out
    )
    assert "attempts disagreed" not in out
    code = _cli(tmp_path, text, "--json")
    [result] = json.loads(capsys.readouterr().out)["results"]
    assert [(f["family"], f["address"]) for f in result["families"]] == [
        (4, "10.77.0.5"),
        (None, None),
    ]


def test_cli_silent_z_and_echo_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "$ nc -z 10.77.0.5 10250; echo $?\n1\n$ nc -z 10.77.0.5 443; echo $?\n0\n"
    code = _cli(tmp_path, text, "--expect", "2", "--json")
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and doc["counts"]["failed"] == 1 and doc["counts"]["open"] == 1
    [finding] = doc["findings"]
    assert finding["title"] == "10.77.0.5:10250 not reachable: failed"
    code = _cli(tmp_path, "$ nc -z 10.77.0.5 443; echo $?\n0\n", "--expect", "1")
    assert code == 0, capsys.readouterr().out
