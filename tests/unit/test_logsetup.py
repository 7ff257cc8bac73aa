"""The Functions app's logging: redaction installed, the SDK's per-request log at WARNING.

Each check runs in a fresh interpreter that imports function_app.py the way the worker does,
with the root logger at DEBUG (the worker forwards what its root logger lets through), so no
other test's logging state can make it pass or fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

_IMPORT_APP = """
import logging
logging.getLogger().setLevel(logging.DEBUG)
{before}
import function_app
http = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
factory = logging.getLogRecordFactory()
print(http.isEnabledFor(logging.INFO), http.isEnabledFor(logging.WARNING),
      getattr(factory, "tunnelwatch_redacts", False))
"""


def _run(before: str = "") -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", _IMPORT_APP.format(before=before)],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return out.stdout.split()


def test_the_sdk_request_log_is_off_at_info_and_redaction_stays() -> None:
    info, warning, redacts = _run()
    assert info == "False"  # the SDK logs each request and response at INFO
    assert warning == "True"  # its warnings and errors still reach Application Insights
    assert redacts == "True"


def test_a_level_chosen_before_the_app_loads_is_kept() -> None:
    before = 'logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(10)'
    info, _, _ = _run(before)
    assert info == "True"
