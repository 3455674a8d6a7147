"""Every Prometheus series name the ghpo services export, for checking dashboards and alert rules.

Names come from the services' own metrics modules (imported, then read from the default registry, with the
series suffixes Prometheus scrapes: `_total`/`_created` for counters, `_bucket`/`_sum`/`_count` for
histograms). A metrics module not written yet falls back to the names the session contract promises, so a
dashboard may reference them ahead of the code; once the module exists, only what it really exports counts.
"""

from __future__ import annotations

import importlib
import re

from prometheus_client import REGISTRY

# Module -> the metric-name prefix it owns (ghpo.shared.app owns the request metrics of every service).
METRICS_MODULES = {
    "ghpo.shared.app": "ghpo_http_",
    "ghpo.services.verifier.metrics": "ghpo_verifier_",
    "ghpo.services.broker.metrics": "ghpo_broker_",
    "ghpo.services.inference.metrics": "ghpo_inference_",
    "ghpo.services.rollout.metrics": "ghpo_rollout_",
    "ghpo.trainer.train.metrics": "ghpo_trainer_",
}


def _typed(prefix: str, kind: str, names: str) -> dict[str, str]:
    return {f"{prefix}{name}": kind for name in names.split()}


# From the session contract (notes/session3_contracts.md): name without suffix -> type.
CONTRACT = {
    **_typed(
        "ghpo_rollout_",
        "counter",
        "groups_started groups_enqueued difficult_groups zero_advantage_groups groups_dropped completions "
        "correct_completions upstream_errors batches_delivered batches_redelivered batches_acked",
    ),
    **_typed(
        "ghpo_rollout_",
        "gauge",
        "queue_depth_groups in_flight_groups unacked_batches trainer_policy_version engine_busy_fraction",
    ),
    **_typed("ghpo_rollout_", "histogram", "generation_rounds policy_lag group_overhead_seconds"),
    **_typed(
        "ghpo_trainer_",
        "counter",
        "steps weight_sync_bytes weight_sync_failures tokens nonfinite empty_batches",
    ),
    **_typed(
        "ghpo_trainer_",
        "gauge",
        "loss grad_norm entropy logprob_mismatch_kl policy_version last_step_timestamp_seconds "
        "batch_difficult_fraction batch_zero_advantage_fraction batch_reward_mean",
    ),
    **_typed("ghpo_trainer_", "histogram", "step_seconds weight_sync_seconds"),
}

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
}
BUILTIN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}
_NAME = re.compile(r"(?<![\w:$])([a-zA-Z_][a-zA-Z0-9_]*)(?![\w:(])")


def _series(name: str, kind: str) -> set[str]:
    return {name + suffix for suffix in SUFFIXES.get(kind, ("",))}


def known_series() -> set[str]:
    names = set(BUILTIN)
    missing_prefixes = []
    for module, prefix in METRICS_MODULES.items():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise  # the module exists but one of its imports is missing: a real error
            missing_prefixes.append(prefix)
    for family in REGISTRY.collect():
        if family.name.startswith("ghpo_"):
            names |= _series(family.name, family.type)
    for name, kind in CONTRACT.items():
        if any(name.startswith(p) for p in missing_prefixes):
            names |= _series(name, kind)
    return names


def metric_names(promql: str) -> set[str]:
    """Metric names a PromQL expression selects (ghpo_* and Prometheus' own `up`); recording rules
    (names with a colon), functions, label names and keywords are left out."""
    return {n for n in _NAME.findall(promql) if n.startswith("ghpo_") or n in BUILTIN}
