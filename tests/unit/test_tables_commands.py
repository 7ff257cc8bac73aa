"""Stored fixes: every command whole and in order, or left out with a marker saying so.

A string property holds 64 KiB; text that does not fit is cut with a marker. A command cut
that way would run as another command when pasted, and step 2 of a fix without step 1 may
fix nothing: commands are kept whole, in order, up to the first that does not fit.
"""

from __future__ import annotations

import json

from shared.adapters.tables.entities import finding_properties
from shared.adapters.tables.limits import TRUNCATION_MARK
from shared.analysis.findings import Finding, Kind, Remediation, Severity, Subject
from shared.analysis.shell import command


def _stored(*commands: str) -> tuple[list[str], bool]:
    f = Finding(
        "nsg.inbound", None, Kind.PROBLEM, Severity.CRITICAL, Subject(cluster="c"), "t",
        remediation=Remediation("s", commands, ("note",)),
    )  # fmt: skip
    props, cut = finding_properties(f)
    rem = json.loads(props["remediation"])
    assert rem["notes"] == ["note"]
    return rem["commands"], cut


def test_commands_that_fit_are_stored_whole_and_in_order() -> None:
    move = command("az", "network", "nsg", "rule", "update", "--name", "deny(1)", "--priority", 101)
    create = command("az", "network", "nsg", "rule", "create", "--priority", 100)
    assert _stored(move, create) == ([move, create], False)


def test_a_command_too_long_is_left_out_with_the_rest_never_cut() -> None:
    first = command("az", "network", "nsg", "rule", "update", "--priority", 101)
    long = command("az", "network", "nsg", "rule", "create", "--description", "x" * 30_000)
    after = command("kubectl", "get", "pods")
    stored, cut = _stored(first, long, after)
    assert cut
    assert stored[0] == first
    (marker,) = stored[1:]  # neither a partial command nor the step after it
    assert marker.startswith(TRUNCATION_MARK) and "2 of 3 command(s) left out" in marker


def test_a_command_redaction_would_change_is_left_out_not_masked() -> None:
    secret = command("az", "x", "--uri", "https://a.blob.core.windows.net/c?sig=abcdefgh1234")
    stored, cut = _stored(secret)
    assert cut and len(stored) == 1
    assert stored[0].startswith(TRUNCATION_MARK) and "sig=" not in stored[0]
