"""The probe worker: a queue trigger on PROBE_QUEUE, and one on its poison queue.

Decode (the host hands over the message text) -> one job (shared.jobs.probe) -> log the outcome.
The job never raises for a bad message or a failed run command: those are recorded outcomes
(refused, skipped, retry as a new delayed message, denied, poisoned). It raises only when our
own storage fails; the host then retries the message (host.json maxDequeueCount) and finally
moves it to `<queue>-poison`, where `probe_poison` turns it into an inconclusive finding.
`make_deps` is this module's seam, as in scan_timer (production: the process's composition root).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping

import azure.functions as func

from shared.compose import probe_options, root_for
from shared.config import TRIGGER_STORAGE, Settings
from shared.jobs.probe import (
    MessageOutcome,
    ProbeDeps,
    handle_poison,
    handle_probe_message,
)
from shared.redaction import redacted_exceptions

log = logging.getLogger(__name__)
bp = func.Blueprint()  # type: ignore[no-untyped-call]


def production_deps(settings: Settings, environ: Mapping[str, str]) -> ProbeDeps:
    return root_for(settings, environ).probe()


make_deps: Callable[[Settings, Mapping[str, str]], ProbeDeps] = production_deps
_deps: dict[str, ProbeDeps] = {}  # one per process: the inventory cache lives in it


def _deps_for(settings: Settings, environ: Mapping[str, str]) -> ProbeDeps:
    if "deps" not in _deps:
        _deps["deps"] = make_deps(settings, environ)
    return _deps["deps"]


def probe_once(
    text: str, environ: Mapping[str, str], *, poison: bool = False, message_id: str = ""
) -> MessageOutcome:
    settings = Settings.from_env(environ)
    deps = _deps_for(settings, environ)
    if poison:
        return handle_poison(text, probe_options(settings), deps)
    return handle_probe_message(text, probe_options(settings), deps, message_id=message_id)


def _text(msg: func.QueueMessage) -> str:
    return msg.get_body().decode("utf-8", errors="replace")


# connection: the same setting the senders use (Settings rejects any other STORAGE_CONNECTION)
@bp.queue_trigger(arg_name="msg", queue_name="%PROBE_QUEUE%", connection=TRIGGER_STORAGE)
def probe_worker(msg: func.QueueMessage) -> None:
    with redacted_exceptions():  # the worker hands an exception's text to the host
        result = probe_once(_text(msg), os.environ, message_id=msg.id or "")
    log.info(
        "probe message %s (dequeue %s): %s, %d run commands",
        msg.id, msg.dequeue_count, result.detail, result.run_commands,
    )  # fmt: skip


@bp.queue_trigger(arg_name="msg", queue_name="%PROBE_QUEUE%-poison", connection=TRIGGER_STORAGE)
def probe_poison(msg: func.QueueMessage) -> None:
    with redacted_exceptions():
        result = probe_once(_text(msg), os.environ, poison=True)
    log.warning("poison probe message %s: %s", msg.id, result.detail)
