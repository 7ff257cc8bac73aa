"""The Azure Functions entry point (Python v2 model): create the app, register the blueprints.

Each trigger family lives in functions/ as a Blueprint; the product's logic lives in shared/.
Log redaction is installed first, once per worker process: every record, ours and the SDKs',
has its credentials masked before any handler (the host's, App Insights') sees it.
"""

from __future__ import annotations

import azure.functions as func

from functions import BLUEPRINTS
from shared.redaction import install_log_redaction

install_log_redaction()

app = func.FunctionApp()
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
