"""What the Functions host would check: the registered functions and their bindings.

Core Tools cannot run here, so these tests read the bindings the v2 model generates and check
them against our settings: every %PLACEHOLDER% must be a known setting with a valid default and
appear in local.settings.sample.json, and timers must not run on startup.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import function_app
from shared.config import SETTINGS, Settings

ROOT = Path(__file__).resolve().parents[2]
SETTING_KEYS = {s.key for s in SETTINGS}


@functools.cache  # the SDK's get_functions() refuses to index the same app twice
def _functions() -> dict[str, dict[str, object]]:
    return {
        f.get_function_name(): json.loads(f.get_function_json())
        for f in function_app.app.get_functions()
    }


def test_the_scan_timer_is_registered_with_its_schedule_setting() -> None:
    functions = _functions()
    assert "scan_timer" in functions
    (binding,) = functions["scan_timer"]["bindings"]  # type: ignore[misc]
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == "%SCAN_SCHEDULE%"
    assert binding["runOnStartup"] is False  # a restart must not trigger a scan storm


def test_every_placeholder_is_a_known_setting_present_in_the_sample() -> None:
    sample = json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]
    text = json.dumps(_functions())
    placeholders = set(re.findall(r"%([A-Za-z0-9_]+)%", text))
    assert placeholders  # the test would prove nothing otherwise
    for key in placeholders:
        assert key in SETTING_KEYS, f"%{key}% is not a setting of shared/config.py"
        assert key in sample, f"%{key}% missing from local.settings.sample.json"
    # the defaults the host would substitute are themselves valid
    Settings.from_env({"TUNNELWATCH_SUBSCRIPTIONS": "00000000-0000-0000-0000-000000000000"})


def test_host_json_queue_settings_fit_the_probe_worker() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    queues = host["extensions"]["queues"]
    # Our own retries are new delayed messages; the host's are only for our storage failures.
    assert 1 <= queues["maxDequeueCount"] <= 5
    assert queues["messageEncoding"] == "base64"  # what ProbeQueue writes
    # At most batchSize + newBatchThreshold messages run at once on one instance (the
    # WebJobs QueuesOptions rule); each may hold a run command for minutes.
    assert queues["batchSize"] >= 1 and queues["newBatchThreshold"] >= 0
    assert queues["batchSize"] + queues["newBatchThreshold"] == 4  # docs/node-probes.md
    hours, minutes, _ = (int(x) for x in host["functionTimeout"].split(":"))
    assert hours * 60 + minutes >= 15  # a slow run command, polled to its end, and a retry


def test_host_json_logs_every_invocation_result() -> None:
    """Host.Results is the category of the requests table in Application Insights: at Error,
    only failed runs appear there, and a successful scan leaves no trace of having run."""
    levels = json.loads((ROOT / "host.json").read_text())["logging"]["logLevel"]
    verbose_enough = ("Trace", "Debug", "Information")
    assert levels.get("Host.Results", levels["default"]) in verbose_enough
    sampling = json.loads((ROOT / "host.json").read_text())["logging"]["applicationInsights"]
    assert "Request" in sampling["samplingSettings"]["excludedTypes"].split(";")


def test_probe_functions_are_registered_on_the_probe_queue_and_its_poison_queue() -> None:
    functions = _functions()
    (timer,) = functions["probe_timer"]["bindings"]  # type: ignore[misc]
    assert timer["schedule"] == "%PROBE_SCHEDULE%" and timer["runOnStartup"] is False
    (worker,) = functions["probe_worker"]["bindings"]  # type: ignore[misc]
    (poison,) = functions["probe_poison"]["bindings"]  # type: ignore[misc]
    assert worker["type"] == poison["type"] == "queueTrigger"
    assert worker["queueName"] == "%PROBE_QUEUE%"
    # The host moves a message it gave up on to "<queue>-poison": the same name as ours.
    assert poison["queueName"] == "%PROBE_QUEUE%-poison"
    assert worker["connection"] == poison["connection"] == "AzureWebJobsStorage"
    # ... the same setting the senders use: the only STORAGE_CONNECTION Settings accepts
    settings = Settings.from_env(
        {"TUNNELWATCH_SUBSCRIPTIONS": "00000000-0000-0000-0000-000000000000"}
    )
    assert settings.storage_connection == worker["connection"]
