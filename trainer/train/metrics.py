"""Prometheus metrics of the trainer (default registry, names ghpo_trainer_*), served on the status port.

Gauges hold the last step's figures; counters count since process start. No labels: one trainer process
(rank 0) exports them. Not here: computing the figures (step.py, batches.py).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

STEPS = Counter("ghpo_trainer_steps", "Optimizer steps taken.", registry=REGISTRY)
LOSS = Gauge("ghpo_trainer_loss", "Policy loss of the last step.", registry=REGISTRY)
GRAD_NORM = Gauge(
    "ghpo_trainer_grad_norm", "Gradient norm of the last step, before clipping.", registry=REGISTRY
)
ENTROPY = Gauge("ghpo_trainer_entropy", "Mean token entropy (nats) of the last step.", registry=REGISTRY)
MISMATCH_KL = Gauge(
    "ghpo_trainer_logprob_mismatch_kl",
    "k3 estimate of KL(inference || trainer) per completion token, last step.",
    registry=REGISTRY,
)
STEP_SECONDS = Histogram(
    "ghpo_trainer_step_seconds",
    "Wall time of one training step (forward, backward, optimizer).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
    registry=REGISTRY,
)
WEIGHT_SYNC_SECONDS = Histogram(
    "ghpo_trainer_weight_sync_seconds",
    "Wall time of one weight push to all inference replicas.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
WEIGHT_SYNC_BYTES = Counter("ghpo_trainer_weight_sync_bytes", "Bytes of weights pushed.", registry=REGISTRY)
WEIGHT_SYNC_FAILURES = Counter(
    "ghpo_trainer_weight_sync_failures", "Weight pushes to one replica that failed.", registry=REGISTRY
)
TOKENS = Counter("ghpo_trainer_tokens", "Completion tokens trained on.", registry=REGISTRY)
POLICY_VERSION = Gauge("ghpo_trainer_policy_version", "Policy version the trainer holds.", registry=REGISTRY)
NONFINITE = Counter(
    "ghpo_trainer_nonfinite", "Steps stopped by a NaN/Inf loss or gradient.", registry=REGISTRY
)
LAST_STEP_TIMESTAMP = Gauge(
    "ghpo_trainer_last_step_timestamp_seconds", "Unix time of the last optimizer step.", registry=REGISTRY
)
BATCH_DIFFICULT = Gauge(
    "ghpo_trainer_batch_difficult_fraction",
    "Share of the last batch's groups that were difficult (hinted, or all wrong without a hint).",
    registry=REGISTRY,
)
BATCH_ZERO_ADVANTAGE = Gauge(
    "ghpo_trainer_batch_zero_advantage_fraction",
    "Share of the last batch's groups whose rewards are all equal.",
    registry=REGISTRY,
)
BATCH_REWARD_MEAN = Gauge(
    "ghpo_trainer_batch_reward_mean",
    "Mean reward of the last batch: accuracy plus the weighted format term, not an accuracy.",
    registry=REGISTRY,
)
EMPTY_BATCHES = Counter(
    "ghpo_trainer_empty_batches",
    "Batches with nothing trainable (acknowledged, not trained).",
    registry=REGISTRY,
)
