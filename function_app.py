from functions_app import app  # noqa: F401  The Functions host indexes the FunctionApp found in this module.
