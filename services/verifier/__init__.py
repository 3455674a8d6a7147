"""The verifier service: math-verify rewards (accuracy, format, ...) for batches of completions over HTTP.

`scoring` holds the pure, torch-free scoring functions other packages may import; the rest (settings,
worker pool, API, app) is the service. See app.py for the entry point (`create_app`).
"""
