"""The one environment form of GHPOConfig, and the check that two components were given the same.

Every component that takes the GHPO settings (broker, rollout server, trainer) reads them from the same
variables, one per key: `GHPO_ALGORITHM_<KEY>` (GHPO_ALGORITHM_HINT_LADDER="[0.25, 0.5, 0.75]",
GHPO_ALGORITHM_COLD_START_STEPS=20, GHPO_ALGORITHM_HINT_CUT=char). A value is JSON, or else a bare string;
a key left out takes GHPOConfig's default. A deployment sets the block once (a compose `x-` anchor, a
Kubernetes ConfigMap consumed with `envFrom`, `ghpo run`'s environment for each process), so the
components cannot be given different values by accident; `disagreement` names the ones that differ when
they were given them anyway (the rollout server asks the broker at start-up and refuses to start).

What it deliberately does not do: decide precedence against other sources (the services' settings base,
ghpo.shared.settings, and the trainer's config loader do), or validate values (GHPOConfig does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ghpo.shared.algorithm.config import ConfigError, GHPOConfig

ENV_PREFIX = "GHPO_ALGORITHM_"


def env_name(key: str) -> str:
    """The variable of one GHPOConfig key: hint_ladder -> GHPO_ALGORITHM_HINT_LADDER."""
    return ENV_PREFIX + key.upper()


def env_text(value: Any) -> str:
    """A setting's value as the variable holds it: strings bare, everything else JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def environment_of(config: GHPOConfig) -> dict[str, str]:
    """Every setting of `config` as its variable (what `ghpo run` gives each component)."""
    return {env_name(key): env_text(value) for key, value in config.model_dump().items()}


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the GHPO_ALGORITHM_* variables of `environ` give, by key (unvalidated); ConfigError
    naming a variable that is no GHPO setting (a misspelt one would otherwise leave the default)."""
    values: dict[str, Any] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name.removeprefix(ENV_PREFIX).lower()
        if key not in GHPOConfig.model_fields:
            known = ", ".join(env_name(k) for k in GHPOConfig.model_fields)
            raise ConfigError(f"{name} is not a GHPO setting; known: {known}")
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    return values


def disagreement(theirs: GHPOConfig, ours: GHPOConfig, *, their_name: str, our_name: str) -> str | None:
    """None when the two configs are equal; else one clause per differing key, naming both values:
    "broker hint_ladder=[0.25, 0.5] differs from rollout's [0.25, 0.5, 0.75]"."""
    clauses = [
        f"{their_name} {key}={env_text(getattr(theirs, key))} differs from {our_name}'s "
        f"{env_text(getattr(ours, key))}"
        for key in GHPOConfig.model_fields
        if getattr(theirs, key) != getattr(ours, key)
    ]
    return "; ".join(clauses) or None
