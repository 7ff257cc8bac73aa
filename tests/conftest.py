"""Test-wide rules: namespace tests skip with a reason by hand without root, fail under CI=true."""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import settings

from tests.lab.netns import netns_unavailable_reason


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# Under CI, property tests draw the same examples every run, so a landing never fails by luck;
# developers' runs keep exploring with fresh random examples (and replay what failed before).
settings.register_profile("ci", derandomize=True, print_blob=True)
if _ci():
    settings.load_profile("ci")


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
