"""The Azure Functions entry point (Python v2 model): create the app, register the blueprints.

Each trigger family lives in functions/ as a Blueprint; the product's logic lives in shared/.
"""

from __future__ import annotations

import azure.functions as func

from functions import BLUEPRINTS

app = func.FunctionApp()
for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
