"""Logging of the Functions worker process, set up once at import of function_app.py.

Two things, in this order: every record is redacted where it is made (shared.redaction), and
the Azure SDK's per-request log (`azure.core.pipeline.policies.http_logging_policy`, one INFO
record per HTTP request and one per response, headers included) is raised to WARNING. The
worker forwards INFO records to Application Insights, where a scan of a few hundred ARM and
storage calls would otherwise write a few hundred traces every five minutes. A level set on
that logger before this runs is kept: it was chosen on purpose.
"""

from __future__ import annotations

import logging

from shared.redaction import install_log_redaction

__all__ = ["SDK_HTTP_LOGGER", "configure_logging"]

SDK_HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


def configure_logging() -> None:
    """Install log redaction and quiet the SDK's request log (idempotent)."""
    install_log_redaction()
    http = logging.getLogger(SDK_HTTP_LOGGER)
    if http.level == logging.NOTSET:
        http.setLevel(logging.WARNING)
