"""Flips the Teams card tests build cards from: ordinary ones, hostile text, oversized ones."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from shared.analysis.findings import (
    TUNNEL_POD_REMINDER,
    Cause,
    Finding,
    Kind,
    Origin,
    Remediation,
    Severity,
    Subject,
)
from shared.analysis.shell import command
from shared.core.lifecycle import Event
from shared.notify.teams import CardFlip

CLUSTER_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-aks"
    "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
)
FIRST_SEEN = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
STATUS_PAGE = "https://status.example.com/tunnelwatch"

# Each is markdown (or card text syntax) that must come out as the literal characters.
HOSTILE = (
    "**bold** __under__ *it* _it_ ~~strike~~",
    "[click](https://evil.example/phish) ![img](https://evil.example/x.png)",
    "`code` ```fence```",
    "# heading",
    "> quote",
    "- item",
    "+ item",
    "* item",
    "1. numbered",
    "2) numbered",
    "<b>html</b> <script>alert(1)</script> &amp; &lt; &#x41;",
    "line one\nline two\r\n- injected item\r# injected heading\u2028> injected quote",
    "| a | b |\n|---|---|",
    "{{DATE(2017-02-14T06:08:39Z, SHORT)}} {{TIME(2017-02-14T06:08:39Z)}}",
    "tab\there nul\x00 esc\x1b[31m del\x7f undecodable byte \udcff",
    "\\*escaped already\\*",
)


def finding(
    node: str = "aks-nodepool1-12345678-vmss000000",
    pool: str = "nodepool1",
    comment: str = "block kubelet",
    key: str = "",
) -> Finding:
    rule = f'-A INPUT -p tcp -m tcp --dport 10250 -m comment --comment "{comment}" -j DROP'
    return Finding(
        check="iptables.input",
        cause=Cause.IPTABLES,
        kind=Kind.PROBLEM,
        severity=Severity.CRITICAL,
        subject=Subject(
            subscription="00000000-0000-0000-0000-000000000001",
            cluster="aks-prod",
            node_pool=pool,
            node=node,
        ),
        title=f"iptables drops TCP 10250 on {node}",
        evidence=(f"deciding rule: {rule}",),
        remediation=Remediation(
            summary="Delete the rule that drops the tunnel port, then persist the change.",
            commands=(
                command("iptables", "-D", "INPUT", "-p", "tcp", "--dport", "10250", "-j", "DROP"),
                command("sh", "-c", "iptables-save > /etc/iptables/rules.v4"),
            ),
            notes=(TUNNEL_POD_REMINDER,),
        ),
        key=key or rule,
        origin=Origin.ARTICLE,
        first_seen=FIRST_SEEN,
    )


def flip(event: Event = Event.NEW, reopen_count: int = 0, **kw: str) -> CardFlip:
    return CardFlip(
        event=event,
        cluster_id=CLUSTER_ID,
        finding=finding(**kw),
        opened_at=FIRST_SEEN,
        reopen_count=reopen_count,
    )


def several() -> list[CardFlip]:
    """A scan's mixed flips: opened, reopened, resolved, and an inconclusive without a cause."""
    undecided = replace(
        finding(node="aks-nodepool2-0", pool="nodepool2"),
        check="ufw.status",
        cause=None,
        kind=Kind.INCONCLUSIVE,
        severity=Severity.WARNING,
        title="ufw status could not be read: capture incomplete",
        remediation=None,
    )
    return [
        flip(Event.NEW, node="aks-nodepool1-0"),
        flip(Event.REOPENED, reopen_count=3, node="aks-nodepool1-1"),
        flip(Event.RESOLVED, node="aks-nodepool1-2"),
        CardFlip(Event.NEW, CLUSTER_ID, undecided, opened_at=FIRST_SEEN),
    ]


def hostile() -> list[CardFlip]:
    """One flip per hostile string, carried in every field that comes from a node or capture."""
    out = []
    for i, text in enumerate(HOSTILE):
        f = finding(node=text, pool=text, comment=text, key=f"k{i}")
        fix = f.remediation
        assert fix is not None
        f = replace(
            f,
            title=text,
            evidence=(*f.evidence, text),
            remediation=replace(fix, commands=(*fix.commands, text), notes=(text,)),
        )
        out.append(CardFlip(Event.NEW, CLUSTER_ID, f, opened_at=FIRST_SEEN))
    return out


def oversized() -> CardFlip:
    """One flip far over 28 KB: long values and many evidence lines and commands."""
    f = finding()
    fix = f.remediation
    assert fix is not None
    f = replace(
        f,
        title="T" * 40_000,
        evidence=tuple(f"rule {i}: -A INPUT -p tcp --dport 10250 -j DROP" for i in range(2_000)),
        remediation=replace(
            fix,
            commands=tuple(f"iptables -D INPUT {i}" for i in range(1_500)),
            notes=("é" * 30_000,),
        ),
    )
    return CardFlip(Event.NEW, CLUSTER_ID, f, opened_at=FIRST_SEEN)
