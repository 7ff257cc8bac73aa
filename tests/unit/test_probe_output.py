"""Reading the probe output: markers, counts, records, blobs; InputError only on any text."""

from __future__ import annotations

import base64
import contextlib
import gzip

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.analysis.netcat import Status
from shared.errors import InputError
from shared.probe.output import parse_probe_output, target_results, targets_digest
from tests.armsim.scripted import ScriptedNodes


def _blob(text: str) -> str:
    return base64.b64encode(gzip.compress(text.encode())).decode()


RULES = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p tcp --dport 10250 -j DROP\nCOMMIT\n"
RECORDS = [
    "tool\tnc=openbsd\ttimeout gzip base64 crictl",
    "host\taks-nodepool1-0",
    "addr\teth0\t10.224.0.4/16",
    "os\tubuntu\t22.04\t5.15.0-1",
    "nc\ttarget=10.224.0.5:10250",
    "nc\tConnection to 10.224.0.5 10250 port [tcp/*] succeeded!",
    "nc\t10.224.0.5:10250 exit=0",
    "nc\ttarget=10.224.0.6:10250",
    "nc\tnc: connect to 10.224.0.6 port 10250 (tcp) timed out: Operation now in progress",
    "nc\t10.224.0.6:10250 exit=1",
    "api\ttarget=x.hcp.westeurope.azmk8s.io:443",
    "api\tx.hcp.westeurope.azmk8s.io:443 exit=124",
    "component\tkonnectivity-agent\tCONTAINER_RUNNING\t3\t0\t-\t-",
    "component\tkonnectivity-agent\tCONTAINER_EXITED\t2\t137\tOOMKilled\t2024-01-01T00:00:00Z",
    "ufw\t" + _blob("Status: active\n"),
    "ruleset\tlegacy\t" + _blob(RULES),
    "ruleset\tnft\tnot-base64!",
]
NFT_JSON = '{"nftables": [{"table": {"family": "inet", "name": "kp", "handle": 1}}]}'
NEW_RECORDS = [  # records added within format version 1
    "note\taks-link\tUDP 1194 to the API server cannot be proven by a connect",
    "tls\tx.hcp.westeurope.azmk8s.io:443\topen\tok\t-\tx.hcp.westeurope.azmk8s.io\tFW CA\tyes",
    "tunnel\ttarget=x.hcp.westeurope.azmk8s.io:9000",
    "tunnel\tx.hcp.westeurope.azmk8s.io:9000 exit=124",
    "component\ttunnelfront\tCONTAINER_RUNNING\t0\t0\t-\t0001-01-01T00:00:00Z\ttunnel-front"
    "\ttunnelfront-5d8f7c9b4-x2x9z",
    "ruleset\tlegacy\t" + _blob(RULES) + "\t1\t19997\t7197",
    "ruleset\tnftables\t" + _blob(NFT_JSON),
    "toolarge\truleset\tnft\t12345",
    "toolarge\tufw\t-\t5000",
]


SENT = ["10.224.0.5", "10.224.0.6", "10.224.0.7"]
DIGEST = targets_digest(SENT)
FAIL_6 = [
    "nc\ttarget=10.224.0.6:10250",
    "nc\tnc: connect to 10.224.0.6 port 10250 (tcp) timed out: Operation now in progress",
    "nc\t10.224.0.6:10250 exit=1",
]
COMPACT = [*FAIL_6, f"reach\t3\t{DIGEST}\t3\t2\t1\tall"]  # the compact triage


def _output(records: list[str], mode: str = "deep", count: int | None = None) -> str:
    n = len(records) if count is None else count
    return "\n".join([f"TWPROBE 1 BEGIN {mode}", *records, f"TWPROBE 1 END {n}"]) + "\n"


def test_complete_output_is_read() -> None:
    r = parse_probe_output(_output(RECORDS), "probe")
    assert r.complete and r.mode == "deep" and r.hostname == "aks-nodepool1-0"
    assert r.os_id == "ubuntu" and r.addresses == (("eth0", "10.224.0.4/16"),)
    assert r.targets is not None and r.api is not None
    status = {p.target.host: p.status for p in r.targets.results}
    assert status == {"10.224.0.5": Status.OPEN, "10.224.0.6": Status.TIMEOUT}
    assert r.api.results[0].status is Status.TIMEOUT
    assert r.crictl_present is True
    assert [c.oom_killed for c in r.components] == [False, True]
    assert r.components[0].attempt == 3 and r.components[1].exit_code == 137
    assert len(r.restarted_components) == 2
    assert r.ufw_status == "Status: active\n"
    assert [(x.backend, x.text) for x in r.rulesets] == [("legacy", RULES)]
    assert [e.subject for e in r.errors] == ["ruleset nft"]  # corrupt blob: an entry


def test_records_added_within_version_1() -> None:
    r = parse_probe_output(_output(NEW_RECORDS), "probe")
    assert r.complete
    assert r.notes == ("aks-link: UDP 1194 to the API server cannot be proven by a connect",)
    assert r.tls is not None and r.tls.alpn == "" and r.tls.issuer_cn == "FW CA"
    assert r.tls.name_match is True and r.tls.tcp == "open" and r.tls.handshake == "ok"
    assert r.tunnel is not None and r.tunnel.results[0].status is Status.TIMEOUT
    (c,) = r.components
    assert (c.name, c.container, c.pod) == (
        "tunnelfront",
        "tunnel-front",
        "tunnelfront-5d8f7c9b4-x2x9z",
    )
    assert c.finished_at == ""  # crictl's zero time: the container has not exited
    legacy, nft = r.rulesets
    assert (legacy.kept, legacy.dropped, legacy.chains_dropped) == (1, 19997, 7197)
    assert (nft.backend, nft.text, nft.kept) == ("nftables", NFT_JSON, None)
    too_large = {e.subject: e.too_large for e in r.errors}
    assert too_large == {"ruleset nft": 12345, "ufw": 5000}
    assert all("4,096" in e.message for e in r.errors)


@pytest.mark.parametrize("bad", ["toolarge\truleset\tnft\tmany", "toolarge\tnc\t-\t5"])
def test_bad_toolarge_record_is_an_input_error(bad: str) -> None:
    with pytest.raises(InputError):
        parse_probe_output(_output([bad]), "probe")


def test_compressed_targets_record() -> None:
    lines = "target=10.0.0.9:10250\n10.0.0.9:10250 exit=0\n"
    r = parse_probe_output(_output(["ncgz\t" + _blob(lines)]), "probe")
    assert r.targets is not None and r.targets.results[0].status is Status.OPEN


def test_the_digest_is_the_scripts() -> None:
    # Values the script printed for the same lists (tests/netns/test_probe_script.py checks
    # the script itself against this function).
    assert targets_digest(["255.255.255.255", "0.0.0.1"]) == "0000cf0d"
    assert targets_digest(reversed(SENT)) == DIGEST  # order does not matter
    assert targets_digest([]) == "00000000"


def test_compact_triage_names_only_failures_and_proves_the_rest_open() -> None:
    r = parse_probe_output(_output(COMPACT, mode="triage"), "probe")
    assert r.reach is not None and (r.reach.tested, r.reach.open, r.reach.named) == (3, 2, 1)
    assert not r.reach.cut and r.reach.failed == 1
    assert r.targets is not None and len(r.targets.results) == 1
    got = target_results(r, SENT)
    assert dict(got.statuses) == {
        "10.224.0.5": Status.OPEN, "10.224.0.6": Status.TIMEOUT, "10.224.0.7": Status.OPEN,
    }  # fmt: skip
    assert got.gaps == () and got.unnamed == 0 and got.untested == 0


def test_all_open_is_one_record() -> None:
    r = parse_probe_output(_output([f"reach\t3\t{DIGEST}\t3\t3\t0\tall"], "triage"), "p")
    assert r.targets is None
    assert set(target_results(r, SENT).statuses.values()) == {Status.OPEN}


@pytest.mark.parametrize(
    ("sent", "why"),
    [
        (SENT[:2], "another target list"),  # fewer sent than the script counted
        ([*SENT[:2], "10.224.0.8"], "another target list"),  # same count, other addresses
        ([*SENT, "10.224.0.9"], "another target list"),
    ],
)
def test_a_target_list_that_does_not_match_is_never_read_as_open(sent: list[str], why: str) -> None:
    r = parse_probe_output(_output(COMPACT, mode="triage"), "probe")
    got = target_results(r, sent)
    assert any(why in g for g in got.gaps)
    # Only what the output names is decided; silence proves nothing here.
    assert set(got.statuses) <= {"10.224.0.6"}


def test_cut_and_untested_targets_are_gaps_not_opens() -> None:
    cut = [*FAIL_6, f"reach\t3\t{DIGEST}\t3\t0\t1\tcut"]
    got = target_results(parse_probe_output(_output(cut, "triage"), "p"), SENT)
    assert dict(got.statuses) == {"10.224.0.6": Status.TIMEOUT}
    assert got.unnamed == 2 and "3 of 3 targets not reachable, 1 named" in got.gaps[0]
    untested = [*FAIL_6, f"reach\t3\t{DIGEST}\t2\t1\t1\tall"]
    got = target_results(parse_probe_output(_output(untested, "triage"), "p"), SENT)
    assert list(got.statuses) == ["10.224.0.6"] and got.untested == 1
    assert "1 of 3 targets not tested" in got.gaps[0]
    # The summary names 1 failure, the output holds none: nothing is decided from silence.
    lying = [f"reach\t3\t{DIGEST}\t3\t2\t1\tall"]
    got = target_results(parse_probe_output(_output(lying, "triage"), "p"), SENT)
    assert dict(got.statuses) == {} and "names 0 targets, its summary 1" in got.gaps[0]


def test_older_output_without_reach_is_read_per_target() -> None:
    got = target_results(parse_probe_output(_output(RECORDS), "probe"), SENT)
    assert dict(got.statuses) == {"10.224.0.5": Status.OPEN, "10.224.0.6": Status.TIMEOUT}
    assert got.gaps == ("targets without a result: 10.224.0.7",) and got.untested == 1


@pytest.mark.parametrize(
    "bad",
    [
        f"reach\t3\t{DIGEST}\t3\t4\t0\tall",  # more open than tested
        f"reach\t3\t{DIGEST}\t4\t1\t0\tcut",  # more tested than received
        f"reach\t3\t{DIGEST}\t3\t1\t3\tall",  # more named than failed
        f"reach\t3\t{DIGEST}\t3\t1\t1\tall",  # 2 failed, 1 named: that is cut
        f"reach\t3\t{DIGEST}\t3\t1\t2\tcut",  # all named: not cut
        "reach\t3\tXYZ\t3\t3\t0\tall",
        f"reach\t-1\t{DIGEST}\t3\t3\t0\tall",
        f"reach\t3\t{DIGEST}\t3\t3\t0\tsome",
    ],
)
def test_bad_reach_record_is_an_input_error(bad: str) -> None:
    with pytest.raises(InputError, match="reach"):
        parse_probe_output(_output([bad], "triage"), "probe")


def test_a_second_reach_record_is_an_input_error() -> None:
    with pytest.raises(InputError, match="second reach"):
        parse_probe_output(_output([COMPACT[-1], COMPACT[-1]], "triage"), "probe")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (_output(RECORDS).split("\n", 3)[3], "no BEGIN"),  # the service kept only the tail
        (_output(RECORDS).rsplit("TWPROBE", 1)[0], "no END"),  # the script was killed
        (_output(RECORDS, count=len(RECORDS) + 1), "END counts"),
        (_output(RECORDS).replace("TWPROBE 1", "TWPROBE 2"), "version"),
    ],
)
def test_cut_output_is_never_read(text: str, reason: str) -> None:
    r = parse_probe_output(text, "probe")
    assert not r.complete
    assert any(reason in x for x in r.reasons)
    assert r.targets is None and r.rulesets == () and r.components == ()


def test_script_errors_and_missing_tools() -> None:
    r = parse_probe_output(
        _output(
            [
                "error\tTW_TARGETS\tnot an IPv4 address, skipped",
                "component\t-\tabsent",
                "ufw\tabsent",
            ],
            mode="triage",
        ),
        "probe",
    )
    assert r.complete and r.crictl_present is False and r.ufw_present is False
    assert r.errors[0].subject == "TW_TARGETS" and r.targets is None


@pytest.mark.parametrize(
    "text",
    ["hello\n", "", "TWPROBE 1 BEGIN deep\nbogus\tx\nTWPROBE 1 END 1\n",
     "TWPROBE 1 BEGIN deep\nhost\ta\tb\nTWPROBE 1 END 1\n", "TWPROBE x\x00"],
)  # fmt: skip
def test_bad_input_raises_input_error(text: str) -> None:
    with pytest.raises(InputError):
        parse_probe_output(text, "probe")


def _check(text: str) -> None:
    with contextlib.suppress(InputError):
        parse_probe_output(text, "probe")


@settings(max_examples=150, deadline=None)
@given(st.text())
def test_random_text(text: str) -> None:
    _check(text)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(RECORDS + NEW_RECORDS + COMPACT) | st.text(max_size=40), max_size=12)
)
def test_random_records(records: list[str]) -> None:
    _check(_output(records))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutations_of_valid_output(data: st.DataObject) -> None:
    text = _output(data.draw(st.sampled_from([RECORDS, NEW_RECORDS, COMPACT])))
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(i, min(len(text), i + 30)))
    _check(text[:i] + data.draw(st.text(max_size=10)) + text[j:])


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_target_results_never_raise_and_never_invent_an_open(data: st.DataObject) -> None:
    text = _output(data.draw(st.sampled_from([COMPACT, RECORDS])), "triage")
    i = data.draw(st.integers(0, len(text)))
    text = text[:i] + data.draw(st.text(alphabet="0123456789abcut\t.\n", max_size=8)) + text[i:]
    try:
        report = parse_probe_output(text, "probe")
    except InputError:
        return
    sent = data.draw(st.lists(st.sampled_from([*SENT, "10.224.0.9"]), unique=True))
    got = target_results(report, sent)
    opened = {t for t, s in got.statuses.items() if s is Status.OPEN}
    named = {r.target.host for r in report.targets.results} if report.targets else set()
    # An address is OPEN only when its own lines say so, or when the summary proves it.
    assert opened <= named or (report.reach is not None and got.gaps == ())


def test_scripted_nodes_speak_the_scripts_compact_format() -> None:
    # tests/armsim/scripted.py stands in for the script in worker tests and the benchmark.
    targets = [f"10.224.{i // 250}.{i % 250 + 1}" for i in range(1000)]
    nodes = ScriptedNodes({("vmss", "0"): "10.224.9.9"}, unreachable=set(targets[:400]))
    params = [("TW_TARGETS", ",".join(targets)), ("TW_API_HOST", "x.io"), ("TW_MODE", "triage")]
    out, _ = nodes("s", "rg", "vmss", "0", [], params)
    assert len(out.encode()) <= 4096
    report = parse_probe_output(out, "scripted")
    assert report.reach is not None and report.reach.cut
    assert (report.reach.tested, report.reach.open) == (1000, 600)
    got = target_results(report, targets)
    assert 100 < len(got.statuses) == report.reach.named < 400 and got.unnamed > 0
    nodes.unreachable = set(targets[:2])
    report = parse_probe_output(nodes("s", "rg", "vmss", "0", [], params)[0], "scripted")
    got = target_results(report, targets)
    assert got.gaps == () and sum(s is Status.OPEN for s in got.statuses.values()) == 998
