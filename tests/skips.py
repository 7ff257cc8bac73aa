"""One rule for every test that cannot run here: skip with the reason when run by hand, fail
under CI=true (CI runs every test it can, so a missing part there is a broken machine)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def cannot_run(reason: str) -> NoReturn:
    """Skip the test with `reason` (what it needs and what is missing), or fail under CI."""
    if not reason.strip():
        raise ValueError("a skipped test must say why")
    if ci():
        pytest.fail(f"CI=true but this test cannot run: {reason}")
    pytest.skip(reason)
