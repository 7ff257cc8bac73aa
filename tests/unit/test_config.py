"""Settings: defaults, validation with every problem listed at once, and the sample file in sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared.config import SETTINGS, Settings
from shared.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SUB = "0b1f6471-1bf0-4dda-aec3-111122223333"


def test_defaults() -> None:
    s = Settings.from_env({"TUNNELWATCH_SUBSCRIPTIONS": SUB})
    assert s.subscriptions == (SUB,)
    assert s.scan_schedule == "0 */5 * * * *"
    assert s.probe_budget == 20
    assert s.probe_queue == "probe-requests"
    assert s.arm_endpoint == "https://management.azure.com"
    assert s.check_legacy_tunnel_ports is False
    assert s.snat_threshold_percent == 80


def test_values_are_parsed_and_normalised() -> None:
    s = Settings.from_env(
        {
            "TUNNELWATCH_SUBSCRIPTIONS": f" {SUB.upper()} , {SUB} ",
            "SCAN_SCHEDULE": "0  */10 * * * *",
            "ARM_ENDPOINT": "https://management.usgovcloudapi.net/",
            "CHECK_LEGACY_TUNNEL_PORTS": "Yes",
            "PROBE_BUDGET": "0",
        }
    )
    assert s.subscriptions == (SUB,)  # case-folded, duplicates dropped
    assert s.scan_schedule == "0 */10 * * * *"
    assert s.arm_endpoint == "https://management.usgovcloudapi.net"
    assert s.check_legacy_tunnel_ports is True
    assert s.probe_budget == 0


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "TUNNELWATCH_SUBSCRIPTIONS": "not-a-guid",
                "SCAN_SCHEDULE": "*/5 * * * *",
                "PROBE_BUDGET": "lots",
                "PROBE_QUEUE": "Probe_Requests",
                "ARM_ENDPOINT": "http://management.azure.com",
                "SNAT_THRESHOLD_PERCENT": "120",
                "CHECK_LEGACY_TUNNEL_PORTS": "maybe",
            }
        )
    problems = info.value.problems
    keys = [p.split(":", 1)[0] for p in problems]
    assert keys == [
        "TUNNELWATCH_SUBSCRIPTIONS",
        "SCAN_SCHEDULE",
        "PROBE_BUDGET",
        "PROBE_QUEUE",
        "ARM_ENDPOINT",
        "SNAT_THRESHOLD_PERCENT",
        "CHECK_LEGACY_TUNNEL_PORTS",
    ]
    assert "needs 6 NCRONTAB fields" in problems[1]
    assert "120 is outside 1-100" in problems[5]


def test_required_and_cross_field_checks() -> None:
    with pytest.raises(ConfigError, match="TUNNELWATCH_SUBSCRIPTIONS: required"):
        Settings.from_env({})
    with pytest.raises(ConfigError, match="SNAT_MIN_BAD_POINTS: 6 is more than"):
        Settings.from_env(
            {
                "TUNNELWATCH_SUBSCRIPTIONS": SUB,
                "SNAT_MIN_BAD_POINTS": "6",
                "SNAT_WINDOW_MINUTES": "5",
            }
        )


def test_sample_settings_and_readme_list_every_setting() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    readme = (ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert setting.key in sample, f"{setting.key} missing from local.settings.sample.json"
        assert f"`{setting.key}`" in readme, f"{setting.key} not described in README.md"
    Settings.from_env(sample)  # the sample itself is valid


def test_storage_connection_must_be_the_one_the_queue_triggers_read() -> None:
    # The probe worker's trigger reads AzureWebJobsStorage; a scan sending elsewhere would
    # queue probe requests no worker ever receives.
    assert Settings.from_env({"TUNNELWATCH_SUBSCRIPTIONS": SUB}).storage_connection == (
        "AzureWebJobsStorage"
    )
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TUNNELWATCH_SUBSCRIPTIONS": SUB, "STORAGE_CONNECTION": "ProbeStore"})
    (problem,) = info.value.problems
    assert problem.startswith("STORAGE_CONNECTION: names another setting")
    assert "AzureWebJobsStorage" in problem


def test_a_connection_string_in_storage_connection_is_refused_without_quoting_it() -> None:
    key = "AccountKey=c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"
    value = f"DefaultEndpointsProtocol=https;AccountName=acct;{key}"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TUNNELWATCH_SUBSCRIPTIONS": SUB, "STORAGE_CONNECTION": value})
    (problem,) = info.value.problems
    assert "names a connection string" in problem
    assert "c2VjcmV0" not in problem and "acct" not in problem


def test_damping_settings_reach_the_store_validated() -> None:
    env = {"TUNNELWATCH_SUBSCRIPTIONS": "11111111-1111-1111-1111-111111111111"}
    default = Settings.from_env(env).damping
    assert (default.open_after, default.resolve_after) == (1, 2)
    tuned = Settings.from_env({**env, "OPEN_AFTER": "3", "RESOLVE_AFTER": "1"}).damping
    assert (tuned.open_after, tuned.resolve_after) == (3, 1)
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**env, "OPEN_AFTER": "0", "RESOLVE_AFTER": "two"})
    assert list(err.value.problems) == [
        "OPEN_AFTER: 0 is outside 1-100",
        "RESOLVE_AFTER: 'two' is not a whole number",
    ]
