"""Reward functions by name: the pluggable part of the verifier's scoring.

A reward function maps (completion, Score) to a float, where the Score already carries math-verify's
outcome (computed once per item in a worker). Adding a reward is one decorated function here; requests
pick rewards and weights by name (`{"accuracy": 1.0, "format": 0.5}`), and the item's total is the
weighted sum. In the verifier service, rewards run inside its worker processes, so they may be slow or
pathological on bad text without harming the service. Not here: anything that needs a model or network
access, processes or HTTP (the verifier service, services/verifier/).

Weights are never negative, and at least one is positive. The total is what the group advantages are
computed from, while the broker and the rollout server judge a group by its accuracy (all wrong:
difficult, hint it); a negative accuracy weight would train toward wrong answers while hints push toward
right ones, and a negative format weight would punish the layout the accuracy reward reads. A penalty
(length, say) is a reward function of its own whose value is <= 0, given a positive weight, so a weight
always means "how much this reward counts". All-zero weights make every total 0: no signal at all.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ghpo.shared.scoring.answers import Score

RewardFn = Callable[[str, Score], float]
MAX_WEIGHT = 1000.0  # the wire schema's bound on a weight
REWARDS: dict[str, RewardFn] = {}


def reward(name: str) -> Callable[[RewardFn], RewardFn]:
    def register(fn: RewardFn) -> RewardFn:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} registered twice")
        REWARDS[name] = fn
        return fn

    return register


@reward("accuracy")
def accuracy(completion: str, score: Score) -> float:
    """1.0 iff math-verify finds the completion's answer equal to the gold answer."""
    return score.accuracy


@reward("format")
def format_(completion: str, score: Score) -> float:
    """1.0 iff the completion matches the reference `<think>...</think><answer>...</answer>` layout."""
    return score.format


@reward("tag_count")
def tag_count(completion: str, score: Score) -> float:
    """0.25 per think/answer tag present exactly once on its own line (open-r1's soft format reward)."""
    tags = ("<think>\n", "\n</think>\n", "\n<answer>\n", "\n</answer>")
    return sum(0.25 for tag in tags if completion.count(tag) == 1)


def weights_problem(weights: dict[str, float]) -> str | None:
    """Why `weights` is unusable (unknown reward name, a weight that is negative, non-finite or too large,
    all zero, empty), or None if it is fine."""
    if not weights:
        return f"name at least one reward; known: {sorted(REWARDS)}"
    unknown = sorted(set(weights) - set(REWARDS))
    if unknown:
        return f"unknown reward(s) {unknown}; known: {sorted(REWARDS)}"
    bad = sorted(name for name, w in weights.items() if not (math.isfinite(w) and 0 <= w <= MAX_WEIGHT))
    if bad:
        return (
            f"weights must be numbers within 0..{MAX_WEIGHT:g} (a negative weight is refused: express a "
            f"penalty as a reward whose value is negative): {bad}"
        )
    if not any(weights.values()):
        return "every weight is 0: the total would always be 0; give at least one reward a positive weight"
    return None


def compute(completion: str, score: Score, weights: dict[str, float]) -> tuple[dict[str, float], float]:
    """Each named reward and their weighted sum. Items that did not score (timeout, error,
    unparsable gold) get 0 for every reward: a reward is never credited for an answer we could not check."""
    if score.status != "ok" and score.status != "no_answer":
        values = {name: 0.0 for name in weights}
    else:
        values = {name: float(REWARDS[name](completion, score)) for name in weights}
    return values, sum(weights[name] * values[name] for name in weights)
