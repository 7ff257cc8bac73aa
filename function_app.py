"""The Azure Functions entry point (Python v2 model): create the app, register the blueprints.

Each trigger family lives in functions/ as a Blueprint; the product's logic lives in shared/.
Logging is set up first, once per worker process (shared.logsetup): every record, ours and the
SDKs', has its credentials masked before any handler (the host's, App Insights') sees it, and the
SDK's per-request HTTP log is kept at WARNING.
"""

from __future__ import annotations

import azure.functions as func

from functions import BLUEPRINTS
from shared.logsetup import configure_logging

configure_logging()

app = func.FunctionApp()
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
