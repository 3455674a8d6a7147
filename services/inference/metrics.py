"""Prometheus metrics of the inference service (default registry, names ghpo_inference_*).

Per-route request counts and latencies come from the shared app; these cover generation and weight
updates. Labels only take values from fixed sets (generation outcome, update failure reason).
"""

from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram

GENERATE_REQUESTS = Counter(
    "ghpo_inference_generate_requests",
    "/v1/generate requests by outcome: ok, rejected (4xx), failed (5xx or engine error).",
    ["outcome"],
    registry=REGISTRY,
)
PROMPT_TOKENS = Counter(
    "ghpo_inference_prompt_tokens", "Prompt tokens sent to the engine.", registry=REGISTRY
)
GENERATED_TOKENS = Counter(
    "ghpo_inference_generated_tokens", "Completion tokens generated (all samples).", registry=REGISTRY
)
SAMPLES = Counter(
    "ghpo_inference_samples", "Samples generated, by finish reason.", ["finish_reason"], registry=REGISTRY
)
GENERATE_DURATION = Histogram(
    "ghpo_inference_generate_duration_seconds",
    "Time one /v1/generate spent in the engine (after the update gate), all prompts and samples.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0),
    registry=REGISTRY,
)
INFLIGHT = Gauge(
    "ghpo_inference_inflight_requests", "Generate requests in the engine now.", registry=REGISTRY
)
WEIGHTS_VERSION = Gauge("ghpo_inference_weights_version", "Policy version being served.", registry=REGISTRY)
ENGINE_READY = Gauge("ghpo_inference_engine_ready", "1 once the engine has loaded.", registry=REGISTRY)
UPDATE_BYTES = Counter(
    "ghpo_inference_weight_update_bytes",
    "Weight-update bytes accepted: HTTP chunk bodies, NCCL tensor bytes.",
    registry=REGISTRY,
)
UPDATE_DURATION = Histogram(
    "ghpo_inference_weight_update_duration_seconds",
    "Commit time of a weight update: drain of in-flight requests plus loading into the engine.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
UPDATES = Counter("ghpo_inference_weight_updates", "Weight updates committed.", registry=REGISTRY)
UPDATE_FAILURES = Counter(
    "ghpo_inference_weight_update_failures",
    "Weight-update requests refused or failed, by reason.",
    ["reason"],
    registry=REGISTRY,
)

UPDATE_FAILURE_REASONS = (
    "stale_version",
    "bad_spec",
    "bad_chunk",
    "incomplete",
    "checksum",
    "drain_timeout",
    "engine",
    "not_gpu",
    "nccl",
    "nccl_timeout",
)
for _reason in UPDATE_FAILURE_REASONS:
    UPDATE_FAILURES.labels(reason=_reason)
for _outcome in ("ok", "rejected", "failed"):
    GENERATE_REQUESTS.labels(outcome=_outcome)
for _finish in ("stop", "length", "abort"):
    SAMPLES.labels(finish_reason=_finish)
