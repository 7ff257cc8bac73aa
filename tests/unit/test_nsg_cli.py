"""`tunnelwatch analyze nsg` end to end: exit codes, JSON document, text, errors on stderr."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from shared.cli.main import main
from tests.unit.test_nsg_support import FIXTURES, doc, rule

SUBNET = str(FIXTURES / "subnet-nsg-rest.json")
NIC = str(FIXTURES / "nic-nsg-az.json")
TAGS = str(FIXTURES / "service-tags.json")
KUBELET = ["analyze", "nsg", "--direction", "inbound", "--src", "10.224.0.4", "--dst",
           "10.224.0.5", "--dport", "10250"]  # fmt: skip
EGRESS = ["analyze", "nsg", "--direction", "outbound", "--src", "10.224.0.4", "--dst",
          "20.50.1.2", "--dport", "443"]  # fmt: skip


def run_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    code = main([*argv, "--json"])
    out, err = capsys.readouterr()
    assert err == ""
    return code, json.loads(out)


def test_deny_exit_1_with_fix_and_findings(capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_json(
        [*KUBELET, "--subnet-nsg", SUBNET, "--nic-nsg", NIC, "--vnet-prefix", "10.224.0.0/12",
         "--fix-source", "10.224.0.0/16"],
        capsys,
    )  # fmt: skip
    assert code == 1
    assert set(document) >= {"verdict", "decided_by", "undecided", "fix", "flow", "findings"}
    assert document["verdict"] == "deny"
    decided = document["decided_by"]
    assert isinstance(decided, list)
    assert [(d["layer"], d["rule"], d["priority"]) for d in decided] == [
        ("subnet", "deny-kubelet-from-anywhere", 200),
        ("nic", "deny-kubelet-ports", 1000),
    ]
    fix = document["fix"]
    assert isinstance(fix, dict)
    assert [r["rule"]["priority"] for r in fix["rules"]] == [198, 999]  # 199 is taken
    assert fix["commands"][0].startswith(
        "az network nsg rule create --resource-group MC_rg-tw_aks-tw_westeurope "
        "--nsg-name aks-agentpool-31415926-nsg --name allow-tunnel-tcp-10250-from-10-224-0-0-16 "
        "--priority 198 --direction Inbound"
    )
    findings = document["findings"]
    assert isinstance(findings, list) and findings[0]["cause"] == 1
    assert findings[0]["kind"] == "problem"


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*KUBELET, "--subnet-nsg", SUBNET, "--vnet-prefix", "10.224.0.0/12"])
    out, _ = capsys.readouterr()
    assert code == 1
    assert out.startswith("NSG verdict: DENY")
    assert "deny-kubelet-from-anywhere (priority 200, Deny)" in out
    assert "--source-address-prefixes 10.224.0.4/32 --source-port-ranges '*'" in out
    assert "konnectivity-agent" in out


def test_allow_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(doc(rule("allow-kubelet", 100, dport="10250"))))
    code, document = run_json([*KUBELET, "--nic-nsg", str(path)], capsys)
    assert code == 0
    assert document["verdict"] == "allow" and document["fix"] is None
    assert document["findings"] == []


def test_rule_list_deny_and_unknown_egress_without_tags(capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_json([*KUBELET, "--nic-nsg", str(FIXTURES / "rule-list-az.json"),
                               "--src", "192.168.5.5"], capsys)  # fmt: skip
    # allow-kubelet (10.224/16) does not match; DenyAll at 4000 is certain: deny, not unknown
    assert code == 1 and document["verdict"] == "deny"
    code, document = run_json([*EGRESS, "--nic-nsg", NIC], capsys)
    assert code == 3 and document["verdict"] == "unknown"
    undecided = document["undecided"]
    assert isinstance(undecided, list) and any(u["matters"] for u in undecided)
    assert document["findings"][0]["kind"] == "inconclusive"  # type: ignore[index]


def test_service_tags_decide_egress(capsys: pytest.CaptureFixture[str]) -> None:
    code, document = run_json([*EGRESS, "--nic-nsg", NIC, "--service-tags", TAGS], capsys)
    assert code == 1
    assert document["decided_by"][0]["rule"] == "deny-azurecloud-https"  # type: ignore[index]
    finding = document["findings"][0]  # type: ignore[index]
    assert finding["cause"] == 4 and finding["origin"] == "tunnelwatch"


def test_asg_flags(capsys: pytest.CaptureFixture[str]) -> None:
    asg = ("/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/rg-tw-net/providers"
           "/Microsoft.Network/applicationSecurityGroups/asg-web")  # fmt: skip
    base = [*KUBELET[:-1], "443", "--nic-nsg", NIC, "--vnet-prefix", "10.224.0.0/12"]
    assert run_json([*base, "--src-asg", asg.upper()], capsys)[0] == 0
    assert run_json([*base, "--src-asg", "none"], capsys)[0] == 0  # AllowVnetInBound
    code, document = run_json([*base, "--src", "8.8.8.8", "--src-asg", "none"], capsys)
    assert code == 1 and document["verdict"] == "deny"
    code, document = run_json([*base, "--src", "8.8.8.8"], capsys)
    assert code == 3 and document["verdict"] == "unknown"  # membership unknown and it matters


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(SUBNET).read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, document = run_json(
        [*KUBELET, "--subnet-nsg", "-", "--vnet-prefix", "10.224.0.0/12"], capsys
    )
    assert code == 1 and document["verdict"] == "deny"


@pytest.mark.parametrize(
    ("extra", "content", "message"),
    [
        ([], None, "give --subnet-nsg FILE and/or --nic-nsg FILE"),
        (["--subnet-nsg", "-", "--nic-nsg", "-"], None, "only one input can be read from stdin"),
        (["--subnet-nsg", "{path}"], '{"name": "x",\n oops}', "{path}:2: not valid JSON"),
        (["--subnet-nsg", "{path}"], '{"securityRules": [{"name": "r"}]}', "rule 'r' (securityRules[0]): field 'priority' is missing"),
        (["--nic-nsg", NIC, "--service-tags", "{path}"], '{"values": 3}', "{path}: 'values' must be a list"),
        (["--subnet-nsg", "/nonexistent/nsg.json"], None, "/nonexistent/nsg.json: no such file"),
    ],
)  # fmt: skip
def test_bad_input_exit_2_on_stderr(
    extra: list[str],
    content: str | None,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "input.json"
    if content is not None:
        path.write_text(content)
    argv = [a.replace("{path}", str(path)) for a in extra]
    code = main([*KUBELET, *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert message.replace("{path}", str(path)) in err


def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*KUBELET[:-1], "99999", "--subnet-nsg", SUBNET])
    assert exc.value.code == 2
    assert "outside 0-65535" in capsys.readouterr().err
