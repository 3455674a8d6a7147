"""The rollout server: the GHPO sampling loop (plan, generate, verify, escalate, score) feeding a durable
Redis batch queue that the trainer pulls over HTTP. See app.py for the wiring and queue.py for the keys."""
