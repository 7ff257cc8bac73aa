"""The probe timer with node probes off (PROBE_BUDGET=0): nothing built, nothing read."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from functions import probe_timer
from shared.config import Settings

SUB = "11111111-1111-1111-1111-111111111111"
NOW = datetime(2026, 1, 5, 10, 7, tzinfo=UTC)


class DepsBuilt(Exception):
    pass


def _make_deps(settings: Settings, environ: Mapping[str, str]) -> probe_timer.CycleDeps:
    raise DepsBuilt(settings.probe_budget)


@pytest.fixture
def counted_deps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_timer, "make_deps", _make_deps)


def test_budget_zero_builds_no_client_and_reads_no_estate(counted_deps: None) -> None:
    env = {"TUNNELWATCH_SUBSCRIPTIONS": SUB, "PROBE_BUDGET": "0"}
    outcome = probe_timer.probe_cycle_once(env, NOW)
    assert outcome.requests == () and outcome.errors == () and outcome.refused == ()
    assert outcome.cycle_id == "probe-20260105T100700Z"


def test_a_budget_builds_the_deps(counted_deps: None) -> None:
    with pytest.raises(DepsBuilt):  # the control: the seam is the one the timer uses
        probe_timer.probe_cycle_once({"TUNNELWATCH_SUBSCRIPTIONS": SUB, "PROBE_BUDGET": "1"}, NOW)
