"""The UFW analyzer: is TCP 10250 to a node let through by its ufw configuration?

parse_status() reads a `ufw status` / `status verbose` / `status numbered` capture
(parse.py), evaluate() decides one inbound flow against it (evaluate.py), findings_for()
turns the verdict into findings with the narrowest fix (report.py). model.py holds the data,
apps.py the application profiles we know. Everything here is pure: text in, values out.
"""

from __future__ import annotations

from shared.analysis.ufw.evaluate import (
    EPHEMERAL_PORTS,
    IPAddress,
    UfwFlowVerdict,
    UfwUndecided,
    UfwVerdict,
    evaluate,
)
from shared.analysis.ufw.model import (
    Action,
    Direction,
    Policy,
    PortSet,
    Side,
    State,
    StatusFormat,
    UfwRule,
    UfwStatus,
)
from shared.analysis.ufw.parse import parse_status
from shared.analysis.ufw.report import CHECK, NODE_SUBNET_PLACEHOLDER, findings_for

__all__ = [
    "CHECK",
    "EPHEMERAL_PORTS",
    "NODE_SUBNET_PLACEHOLDER",
    "Action",
    "Direction",
    "IPAddress",
    "Policy",
    "PortSet",
    "Side",
    "State",
    "StatusFormat",
    "UfwFlowVerdict",
    "UfwRule",
    "UfwStatus",
    "UfwUndecided",
    "UfwVerdict",
    "evaluate",
    "findings_for",
    "parse_status",
]
