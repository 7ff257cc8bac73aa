"""The trigger families of the Functions app, one Blueprint each.

Each trigger decodes its input, calls one job in shared/, and logs the outcome; nothing else.
The scan timer (issue 3) and the probe queue worker (issue 4) register here.
"""

from __future__ import annotations

import azure.functions as func

BLUEPRINTS: tuple[func.Blueprint, ...] = ()
