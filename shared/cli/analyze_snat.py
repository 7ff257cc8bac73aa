"""`tunnelwatch analyze snat` (being written)."""

from __future__ import annotations

import argparse
from typing import Any


def register(kinds: Any) -> None:
    parser: argparse.ArgumentParser = kinds.add_parser("snat", help="(being written)")
    parser.set_defaults(handler=None)
