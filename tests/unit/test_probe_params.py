"""Probe parameters: only validated values are rendered, and the preamble runs nothing else."""

from __future__ import annotations

import re
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import InputError
from shared.probe import script_text
from shared.probe.params import MAX_TARGETS, rendered_preamble, validate_probe_parameters

GOOD = (["10.224.0.4", "10.224.0.5"], "aks-x1-abc.hcp.westeurope.azmk8s.io", 443, "triage")


def _bash(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/bin/bash", "-c", code], capture_output=True, text=True, timeout=10, env={}
    )


def test_accepts_and_renders() -> None:
    params = validate_probe_parameters(*GOOD)
    assert params == [
        ("TW_TARGETS", "10.224.0.4,10.224.0.5"),
        ("TW_API_HOST", "aks-x1-abc.hcp.westeurope.azmk8s.io"),
        ("TW_API_PORT", "443"),
        ("TW_MODE", "triage"),
    ]
    assert rendered_preamble(params).splitlines()[0] == "export TW_TARGETS=10.224.0.4,10.224.0.5"


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((["1.2.3.4; reboot"], "h.example", 443, "triage"), "TW_TARGETS"),
        ((["$(id)"], "h.example", 443, "triage"), "TW_TARGETS"),
        ((["127.0.0.1"], "h.example", 443, "triage"), "TW_TARGETS"),
        ((["224.0.0.1"], "h.example", 443, "triage"), "TW_TARGETS"),
        ((["0.0.0.0"], "h.example", 443, "triage"), "TW_TARGETS"),
        ((["010.1.1.1"], "h.example", 443, "triage"), "TW_TARGETS"),
        ((["fe80::1"], "h.example", 443, "triage"), "TW_TARGETS"),
        ((["10.0.0.1\n"], "h.example", 443, "triage"), "TW_TARGETS"),
        (("10.0.0.1", "h.example", 443, "triage"), "TW_TARGETS"),
        (
            (
                [f"10.0.{i // 250}.{i % 250 + 1}" for i in range(MAX_TARGETS + 1)],
                "h.example",
                443,
                "triage",
            ),
            "TW_TARGETS",
        ),
        (([], "`id`", 443, "triage"), "TW_API_HOST"),
        (([], "a.b'c", 443, "triage"), "TW_API_HOST"),
        (([], 'x"y', 443, "triage"), "TW_API_HOST"),
        (([], "host\nreboot", 443, "triage"), "TW_API_HOST"),
        (([], "host\n", 443, "triage"), "TW_API_HOST"),
        (([], "-host", 443, "triage"), "TW_API_HOST"),
        (([], "a" * 64 + ".io", 443, "triage"), "TW_API_HOST"),
        (([], ("a" * 60 + ".") * 5, 443, "triage"), "TW_API_HOST"),
        (([], "127.0.0.1", 443, "triage"), "TW_API_HOST"),
        (([], "localhost", 443, "triage"), "TW_API_HOST"),  # one label
        (([], "0x7f000001", 443, "triage"), "TW_API_HOST"),  # what inet_aton reads as 127.0.0.1
        (([], "2130706433", 443, "triage"), "TW_API_HOST"),  # the same as one number
        (([], "10.0.0", 443, "triage"), "TW_API_HOST"),  # dotted numbers, not a quad
        (([], "api.cluster.123", 443, "triage"), "TW_API_HOST"),  # an all-digit top label
        (([], "h.example", 0, "triage"), "TW_API_PORT"),
        (([], "h.example", 65536, "triage"), "TW_API_PORT"),
        (([], "h.example", True, "triage"), "TW_API_PORT"),
        (([], "h.example", "443", "triage"), "TW_API_PORT"),
        (([], "h.example", 443, "deep; id"), "TW_MODE"),
    ],
)
def test_refuses_hostile_or_bad_values(args: tuple[object, ...], name: str) -> None:
    with pytest.raises(InputError) as err:
        validate_probe_parameters(*args)  # type: ignore[arg-type]
    assert name in err.value.message


@pytest.mark.parametrize(
    "params",
    [
        [("TW_MODE", "triage; reboot")],
        [("TW_MODE", "$(id)")],
        [("PATH", "/tmp")],
        [("TW_API_HOST", "a b")],
    ],
)
def test_preamble_refuses_hand_built_unsafe_lists(params: list[tuple[str, str]]) -> None:
    with pytest.raises(InputError):
        rendered_preamble(params)


_octet = st.integers(1, 223)
_ip = st.builds(lambda a, b, c, d: f"{a}.{b}.{c}.{d}", _octet, st.integers(0, 255),
                st.integers(0, 255), st.integers(1, 254))  # fmt: skip
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_tld = st.from_regex(r"[a-z][a-z0-9-]{0,8}[a-z0-9]", fullmatch=True)
_fqdn = st.builds(lambda a, b: ".".join([*a, b]), st.lists(_label, min_size=1, max_size=3), _tld)


@settings(max_examples=25, deadline=None)
@given(
    targets=st.lists(_ip, max_size=5),
    host=st.one_of(_fqdn, _ip),
    port=st.integers(1, 65535),
    mode=st.sampled_from(["triage", "deep"]),
)
def test_preamble_defines_exactly_the_variables(
    targets: list[str], host: str, port: int, mode: str
) -> None:
    try:
        params = validate_probe_parameters(targets, host, port, mode)
    except InputError:
        return  # e.g. 127.x drawn: refusing is the contract, tested above
    preamble = rendered_preamble(params)
    assert _bash("set -n\n" + preamble + script_text()).returncode == 0  # bash -n, whole script
    # Run only the preamble, with nounset; print every variable that exists afterwards.
    shown = _bash("set -u\n" + preamble + "compgen -v TW_; env -0 | tr '\\0' '\\n' | grep ^TW_")
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr == ""
    names = shown.stdout.splitlines()[:4]
    assert names == sorted(n for n, _ in params)
    exported = dict(line.split("=", 1) for line in shown.stdout.splitlines()[4:])
    assert exported == dict(params)


def test_preamble_executes_nothing_else() -> None:
    params = validate_probe_parameters(*GOOD)
    trace = _bash("set -x\n" + rendered_preamble(params))
    commands = [line for line in trace.stderr.splitlines() if line.startswith("+")]
    # bash -x shows each export and then its assignment; anything else would be a command.
    assert sum(c.startswith("+ export TW_") for c in commands) == 4
    assert all(re.fullmatch(r"\+ (export )?TW_[A-Z_]+=[A-Za-z0-9.,-]*", c) for c in commands)


def test_the_longest_target_list_renders_and_the_script_takes_all_of_it() -> None:
    # 1,000 addresses of 15 characters: the longest TW_TARGETS the worker can send.
    longest = [f"100.{i // 100 + 100}.{i % 100 + 100}.{i % 50 + 200}" for i in range(MAX_TARGETS)]
    params = validate_probe_parameters(longest, "", 443, "deep")
    assert len(params[0][1]) == 15 * MAX_TARGETS + MAX_TARGETS - 1
    # Parameter checks only: cut the script before its first probe.
    script = script_text()
    head = script[: script.index('tw_line="TWPROBE 1 BEGIN')]
    shown = _bash(rendered_preamble(params) + head + 'echo "${#tw_targets[@]} ${#tw_errors[@]}"')
    assert shown.stdout.split() == [str(MAX_TARGETS), "0"]
    one_more = [*longest, "100.99.99.99"]
    code = f"export TW_TARGETS={','.join(one_more)}\n" + head + 'echo "${#tw_targets[@]}"'
    shown = _bash(code)
    assert shown.stdout.split() == ["0"]  # the script refuses more than 1,000 on its own
