"""The trigger families of the Functions app, one Blueprint each.

Each trigger decodes its input, calls one job in shared/, and logs the outcome; nothing else.
"""

from __future__ import annotations

import azure.functions as func

from functions import probe_timer, probe_worker, scan_timer

BLUEPRINTS: tuple[func.Blueprint, ...] = (scan_timer.bp, probe_timer.bp, probe_worker.bp)
