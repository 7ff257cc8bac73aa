"""The node probe: the one constant script run on nodes, its parameters and its output format.

`tunnelwatch-probe.sh` is shipped unchanged with the app; `params` builds the only values it
may receive, `output` reads what it prints.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["SCRIPT_NAME", "script_text"]

SCRIPT_NAME = "tunnelwatch-probe.sh"


def script_text() -> str:
    """The probe script exactly as shipped (the run command's `script`, one string)."""
    return resources.files(__name__).joinpath(SCRIPT_NAME).read_text(encoding="utf-8")
