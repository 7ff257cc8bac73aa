"""The one finding model every check produces, and the remediation texts they share.

A Finding says what is wrong (or could not be checked), where, why we think so (evidence)
and the narrowest fix with the exact command. tunnelwatch never runs that command: the
user does. `fingerprint` identifies "the same problem on the same thing" across scans, so
storage can keep first/last seen and notifications fire only when the state flips.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Any

from shared.analysis.shell import command

__all__ = [
    "RECREATE_TUNNEL_PODS",
    "TUNNEL_POD_REMINDER",
    "Cause",
    "Finding",
    "Kind",
    "Origin",
    "Remediation",
    "Severity",
    "Subject",
]

RECREATE_TUNNEL_PODS = command(
    "kubectl", "-n", "kube-system", "rollout", "restart", "deployment", "konnectivity-agent"
)
TUNNEL_POD_REMINDER = (
    "After the fix, the tunnel pods may need to be recreated before kubectl logs/exec work "
    f"again: {RECREATE_TUNNEL_PODS}"
)


class Cause(IntEnum):
    """The causes of the troubleshooting article (1-5) and our own addition (6)."""

    NSG = 1  # an NSG blocks TCP 10250 between nodes
    UFW = 2  # UFW is active without allowing 10250
    IPTABLES = 3  # an iptables/nft rule drops or rejects 10250 in the INPUT path
    EGRESS = 4  # tunnel egress blocked (9000/1194 from the article; 443 is our extension)
    SNAT = 5  # SNAT port exhaustion on the outbound load balancer
    AGENT = 6  # ours: the Konnectivity agent's own health (restarts, OOM kills)

    @property
    def title(self) -> str:
        return _CAUSE_TITLES[self]


_CAUSE_TITLES = {
    Cause.NSG: "NSG blocks the tunnel port",
    Cause.UFW: "UFW blocks the tunnel port",
    Cause.IPTABLES: "iptables blocks the tunnel port",
    Cause.EGRESS: "tunnel egress blocked",
    Cause.SNAT: "SNAT port exhaustion",
    Cause.AGENT: "Konnectivity agent unhealthy",
}


class Origin(StrEnum):
    """Whether a check comes from the troubleshooting article or is tunnelwatch's addition."""

    ARTICLE = "article"
    TUNNELWATCH = "tunnelwatch"


class Kind(StrEnum):
    PROBLEM = "problem"  # something blocks or degrades the tunnel
    INCONCLUSIVE = "inconclusive"  # we looked and could not decide; never a silent pass
    COVERAGE = "coverage"  # we could not look (permission, lockdown, unsupported pool type)


class Severity(StrEnum):
    CRITICAL = "critical"  # the tunnel is (or will be) broken
    WARNING = "warning"  # degraded, at risk, or undecided
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Subject:
    """Where a finding applies; empty fields are unknown or not applicable."""

    subscription: str = ""
    cluster: str = ""
    node_pool: str = ""
    node: str = ""
    resource: str = ""  # the NSG, load balancer, file ... the evidence came from

    def label(self) -> str:
        parts = [
            f"{name}={value}"
            for name, value in (
                ("cluster", self.cluster),
                ("pool", self.node_pool),
                ("node", self.node),
                ("resource", self.resource),
            )
            if value
        ]
        return " ".join(parts) or "(input)"

    def to_json(self) -> dict[str, str]:
        return {
            "subscription": self.subscription,
            "cluster": self.cluster,
            "node_pool": self.node_pool,
            "node": self.node,
            "resource": self.resource,
        }


@dataclass(frozen=True, slots=True)
class Remediation:
    """The narrowest fix: what to do, the exact commands, and what to remember afterwards."""

    summary: str
    commands: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary, "commands": list(self.commands), "notes": list(self.notes)}


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem (or one thing we could not decide) on one subject.

    `check` is a stable id of the check ("iptables.input", "nsg.inbound", ...); `key` tells
    apart two findings of one check on one subject (for example the deciding rule). Both,
    with the cause and the subject, make the fingerprint; titles, evidence and times do not,
    so rewording a message never reopens a finding.
    """

    check: str
    cause: Cause | None
    kind: Kind
    severity: Severity
    subject: Subject
    title: str
    evidence: tuple[str, ...] = ()
    remediation: Remediation | None = None
    key: str = ""
    origin: Origin = Origin.ARTICLE
    first_seen: datetime | None = field(default=None, compare=False)
    last_seen: datetime | None = field(default=None, compare=False)

    @property
    def fingerprint(self) -> str:
        s = self.subject
        material = "\x1f".join(
            (
                self.check,
                "" if self.cause is None else str(int(self.cause)),
                s.subscription.lower(),
                s.cluster.lower(),
                s.node_pool.lower(),
                s.node.lower(),
                s.resource.lower(),
                self.key,
            )
        )
        return hashlib.sha256(material.encode()).hexdigest()[:32]

    def seen(self, now: datetime, previous: Finding | None = None) -> Finding:
        """This finding observed at `now`, keeping first_seen from an earlier observation."""
        first = previous.first_seen if previous is not None and previous.first_seen else now
        return replace(self, first_seen=first, last_seen=now)

    def to_json(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "check": self.check,
            "cause": None if self.cause is None else int(self.cause),
            "cause_title": None if self.cause is None else self.cause.title,
            "origin": self.origin.value,
            "kind": self.kind.value,
            "severity": self.severity.value,
            "subject": self.subject.to_json(),
            "title": self.title,
            "evidence": list(self.evidence),
            "remediation": None if self.remediation is None else self.remediation.to_json(),
            "first_seen": None if self.first_seen is None else self.first_seen.isoformat(),
            "last_seen": None if self.last_seen is None else self.last_seen.isoformat(),
        }
