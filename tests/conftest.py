"""Test-wide rules: namespace tests skip with a reason by hand without root, fail under CI=true."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import settings

from tests.lab.netns import netns_unavailable_reason
from tests.skips import cannot_run, ci

# Under CI, property tests draw the same examples every run, so a landing never fails by luck;
# developers' runs keep exploring with fresh random examples (and replay what failed before).
settings.register_profile("ci", derandomize=True, print_blob=True)
if ci():
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def netns_ok() -> None:
    """Depend on this in any test that needs root and network namespaces."""
    reason = netns_unavailable_reason()
    if reason:
        cannot_run(f"needs root and Linux network namespaces: {reason}")


def require_tools(*names: str) -> None:
    """Skip (or fail under CI) when a command-line tool the test drives is missing."""
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        cannot_run(f"needs {', '.join(missing)} (make test installs them as root)")
