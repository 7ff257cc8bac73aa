"""`tunnelwatch analyze nc` (being written)."""

from __future__ import annotations

import argparse
from typing import Any


def register(kinds: Any) -> None:
    parser: argparse.ArgumentParser = kinds.add_parser("nc", help="(being written)")
    parser.set_defaults(handler=None)
