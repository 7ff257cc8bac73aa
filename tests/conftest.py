"""Test-wide rules: namespace tests skip with a reason by hand without root, fail under CI=true."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.lab.netns import netns_unavailable_reason


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def netns_ok() -> None:
    """Depend on this in any test that needs root and network namespaces."""
    reason = netns_unavailable_reason()
    if reason:
        if _ci():
            pytest.fail(f"CI=true but namespace tests cannot run: {reason}")
        pytest.skip(f"needs root and Linux network namespaces: {reason}")


def require_tools(*names: str) -> None:
    """Skip (or fail under CI) when a command-line tool the test drives is missing."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        msg = f"needs {', '.join(missing)} (make test installs them as root)"
        if _ci():
            pytest.fail(f"CI=true but {msg}")
        pytest.skip(msg)
