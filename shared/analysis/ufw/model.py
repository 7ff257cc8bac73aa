"""The data of a `ufw status` capture: rules, their two sides, and the firewall's state.

Only data lives here (enums and frozen dataclasses); `parse.py` builds it from text and
`evaluate.py` decides a flow against it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "Action",
    "Direction",
    "IPNetwork",
    "Policy",
    "PortSet",
    "Side",
    "State",
    "StatusFormat",
    "UfwRule",
    "UfwStatus",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Action(StrEnum):
    ALLOW = "allow"
    DENY = "deny"  # iptables DROP: the client times out
    REJECT = "reject"  # iptables REJECT: the client is refused
    LIMIT = "limit"  # accept, but the 6th new connection in 30 s from one address is rejected


class Direction(StrEnum):
    IN = "in"
    OUT = "out"
    FWD = "fwd"  # `ufw route` rules: forwarded traffic, never traffic to the node itself


class Policy(StrEnum):
    """A default policy as `ufw status verbose` prints it (deny = DROP)."""

    ALLOW = "allow"
    DENY = "deny"
    REJECT = "reject"


class State(StrEnum):
    ACTIVE = "active"
    INACTIVE = "inactive"
    NOT_INSTALLED = "not-installed"  # the shell said `ufw: command not found`
    UNREADABLE = "unreadable"  # ufw answered with an error (not root, iptables failure)


class StatusFormat(StrEnum):
    PLAIN = "plain"  # `ufw status`
    VERBOSE = "verbose"  # `ufw status verbose`
    NUMBERED = "numbered"  # `ufw status numbered`


@dataclass(frozen=True, slots=True)
class PortSet:
    """Ports as ufw prints them: `22`, `22,10250`, `10000:10300`, or a mix (`22,80:90`)."""

    ranges: tuple[tuple[int, int], ...]

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and any(lo <= port <= hi for lo, hi in self.ranges)


@dataclass(frozen=True, slots=True)
class Side:
    """One side (To or From) of a rule, as printed and as understood.

    `network` None means Anywhere; `ports` None means any port (unless `app` names the
    ports); `protocol` is the `/tcp` suffix printed on this side, if any.
    """

    text: str
    network: IPNetwork | None = None
    ports: PortSet | None = None
    app: str | None = None
    protocol: str | None = None
    iface: str | None = None
    v6_marker: bool = False  # "(v6)" printed on this side


@dataclass(frozen=True, slots=True)
class UfwRule:
    """One rule line. `number` is ufw's own number (as `ufw delete N` wants it) or None
    when it cannot be known from this capture."""

    line: int
    text: str
    to: Side
    action: Action
    direction: Direction
    from_: Side
    protocol: str  # "any", "tcp", "udp", ... ("app" when a plain status hides it behind an app)
    v6: bool
    number: int | None = None
    log: str | None = None  # "log" or "log-all"
    comment: str | None = None

    @property
    def action_text(self) -> str:
        return f"{self.action.value.upper()} {self.direction.value.upper()}"

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "to": self.to.text,
            "action": self.action.value,
            "direction": self.direction.value,
            "from": self.from_.text,
            "text": self.text,
            "line": self.line,
        }


@dataclass(frozen=True, slots=True)
class UfwStatus:
    """A whole capture. `default_incoming` is None when the format does not show it."""

    source: str
    state: State
    format: StatusFormat | None = None
    rules: tuple[UfwRule, ...] = ()
    default_incoming: Policy | None = None
    default_line: int | None = None
    reason: str = ""  # why the state is not-installed / unreadable, in ufw's own words
    warnings: tuple[str, ...] = ()
    # Why the IN rules of IPv4 (`cut4`) and of IPv6 (`cut6`) may go on past what the capture
    # shows (a cut capture); "" when it proves they ended, or its producer proved it whole.
    # A flow no rule shown decides is then unknown: the default policy may not come next.
    cut4: str = ""
    cut6: str = ""

    def cut(self, v6: bool) -> str:
        return self.cut6 if v6 else self.cut4

    @property
    def active(self) -> bool:
        return self.state is State.ACTIVE
