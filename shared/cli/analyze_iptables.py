"""`tunnelwatch analyze iptables` (being written)."""

from __future__ import annotations

import argparse
from typing import Any


def register(kinds: Any) -> None:
    parser: argparse.ArgumentParser = kinds.add_parser("iptables", help="(being written)")
    parser.set_defaults(handler=None)
