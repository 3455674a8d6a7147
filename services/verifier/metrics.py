"""Prometheus metrics of the verifier service (default registry, names ghpo_verifier_*).

Request counts and latencies per route come from the shared app; these cover the worker pool. Labels
only take values from fixed sets (item status, restart reason).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

ITEMS = Counter(
    "ghpo_verifier_items",
    "Items verified, by result status (ok, no_answer, unparsable_gold, timeout, error).",
    ["status"],
    registry=REGISTRY,
)
BATCH_DURATION = Histogram(
    "ghpo_verifier_batch_duration_seconds",
    "Time one /v1/verify batch spent in the worker pool, from enqueue to its last result.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
    registry=REGISTRY,
)
DEADLINE_TIMEOUTS = Counter(
    "ghpo_verifier_deadline_timeouts",
    "Items that ran past the per-item deadline (their worker was killed).",
    registry=REGISTRY,
)
WORKER_RESTARTS = Counter(
    "ghpo_verifier_worker_restarts",
    "Worker processes replaced, by reason: deadline (killed by us) or died (exited on its own).",
    ["reason"],
    registry=REGISTRY,
)
WORKERS_READY = Gauge(
    "ghpo_verifier_workers_ready", "Worker processes ready to take items.", registry=REGISTRY
)
QUEUED_ITEMS = Gauge("ghpo_verifier_queued_items", "Items waiting for a worker.", registry=REGISTRY)

for _status in ("ok", "no_answer", "unparsable_gold", "timeout", "error"):
    ITEMS.labels(status=_status)
for _reason in ("deadline", "died"):
    WORKER_RESTARTS.labels(reason=_reason)
