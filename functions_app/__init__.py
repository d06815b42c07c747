"""Azure Functions (Python v2 programming model): the function app that the host indexes.

The root ``function_app.py`` imports ``app`` from here; the functions live in blueprints
(``timers``). Importing this package does not set Django up: that happens on the first
invocation (``runner.django_setup``), so a configuration error shows as a failed invocation with
its message instead of functions missing from the portal.
"""

import azure.functions as func

from functions_app import timers

app = func.FunctionApp()
app.register_blueprint(timers.bp)
