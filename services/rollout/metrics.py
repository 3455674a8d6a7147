"""Prometheus metrics of the rollout server (default registry, names ghpo_rollout_*).

Counters are per process since start (durable all-time drop counts are in Redis, GET /v1/status). Label
sets are fixed and small: final_level 0..16, hinted true/false, reason from DropReason (plus lease_lost:
a claim another server took over), service inference/verifier/broker. Definitions:
- difficult: the level-0 group had every rollout wrong, counted only after the cold start;
- zero advantage: an enqueued group whose rewards are all equal (no GRPO signal);
- group overhead: a step's wall time minus its time waiting on inference/verifier/broker, per group.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

GROUPS_STARTED = Counter("ghpo_rollout_groups_started", "Groups whose generation began.", registry=REGISTRY)
DIFFICULT = Counter(
    "ghpo_rollout_difficult_groups",
    "Level-0 groups with every rollout wrong, after the cold start.",
    registry=REGISTRY,
)
ENQUEUED = Counter(
    "ghpo_rollout_groups_enqueued", "Groups queued for the trainer, by final hint level.", ["final_level"]
)
ZERO_ADVANTAGE = Counter(
    "ghpo_rollout_zero_advantage_groups", "Enqueued groups whose rewards are all equal.", registry=REGISTRY
)
DROPPED = Counter("ghpo_rollout_groups_dropped", "Groups dropped whole, by reason.", ["reason"])
ROUNDS = Histogram(
    "ghpo_rollout_generation_rounds",
    "Generation rounds per enqueued group.",
    buckets=(1, 2, 3, 4, 5, 6, 8, 17),
    registry=REGISTRY,
)
COMPLETIONS = Counter("ghpo_rollout_completions", "Completions generated and scored.", ["hinted"])
CORRECT = Counter("ghpo_rollout_correct_completions", "Completions with accuracy 1.", ["hinted"])
QUEUE_DEPTH = Gauge("ghpo_rollout_queue_depth_groups", "Groups queued, not yet delivered.")
IN_FLIGHT = Gauge("ghpo_rollout_in_flight_groups", "Groups claimed and being generated (all servers).")
UNACKED = Gauge("ghpo_rollout_unacked_batches", "Batches delivered and not yet acknowledged.")
TRAINER_VERSION = Gauge("ghpo_rollout_trainer_policy_version", "Policy version the trainer announced.")
POLICY_LAG = Histogram(
    "ghpo_rollout_policy_lag",
    "Trainer version minus a group's oldest completion version, at delivery.",
    buckets=(0, 1, 2, 3, 4, 6, 8, 16, 32),
    registry=REGISTRY,
)
ENGINE_BUSY = Gauge(
    "ghpo_rollout_engine_busy_fraction", "Share of the last 60 s with a generate call outstanding."
)
OVERHEAD = Histogram(
    "ghpo_rollout_group_overhead_seconds",
    "Time per group not spent waiting on inference, verifier or broker.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    "ghpo_rollout_upstream_errors", "Failed upstream calls, by service and kind.", ["service", "kind"]
)
BATCHES_DELIVERED = Counter("ghpo_rollout_batches_delivered", "Batches delivered for the first time.")
BATCHES_REDELIVERED = Counter("ghpo_rollout_batches_redelivered", "Batches delivered again (no ack).")
BATCHES_ACKED = Counter("ghpo_rollout_batches_acked", "Batches acknowledged.")
