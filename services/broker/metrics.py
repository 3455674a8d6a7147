"""Prometheus metrics of the guidance broker (default registry, names ghpo_broker_*): reward sparsity.

Counters (since process start, per replica) count applied outcomes; the *_ratio gauges are computed
over the last `metrics_window_groups` outcomes this process applied (a recent window, so a dashboard
shows the trend without rate() arithmetic). Durable all-time totals are in Redis (GET /v1/stats).
Definitions:
- difficult: the level-0 group had every rollout wrong (only outcomes whose first group is at level 0);
- zero advantage: the final group, after any hints, is all wrong or all right (no GRPO signal);
- rescue at level k: a group generated at level k was not all wrong (k = 0: not difficult);
- no-hint accuracy: correct / total rollouts of level-0 groups.
Labels: `level` only, from the fixed set 0..len(ladder). Never a prompt id.
"""

from __future__ import annotations

from collections import deque

from prometheus_client import REGISTRY, Counter, Gauge

from ghpo.services.broker.policies import GroupSummary

GROUPS = Counter("ghpo_broker_groups", "Outcomes applied, by final hint level.", ["level"], registry=REGISTRY)
DIFFICULT = Counter(
    "ghpo_broker_difficult_groups", "Level-0 groups with every rollout wrong.", registry=REGISTRY
)
NOHINT_GROUPS = Counter(
    "ghpo_broker_nohint_groups", "Outcomes whose first group was at level 0.", registry=REGISTRY
)
ZERO_ADVANTAGE = Counter(
    "ghpo_broker_zero_advantage_groups",
    "Final groups all wrong or all right (after hints).",
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "ghpo_broker_level_attempts", "Groups generated, by hint level.", ["level"], registry=REGISTRY
)
RESCUES = Counter(
    "ghpo_broker_level_rescues", "Groups not all wrong, by hint level.", ["level"], registry=REGISTRY
)
NOHINT_ROLLOUTS = Counter("ghpo_broker_nohint_rollouts", "Rollouts of level-0 groups.", registry=REGISTRY)
NOHINT_CORRECT = Counter(
    "ghpo_broker_nohint_correct_rollouts", "Correct rollouts at level 0.", registry=REGISTRY
)
DUPLICATES = Counter(
    "ghpo_broker_duplicate_outcomes",
    "Outcomes skipped because their update id was applied.",
    registry=REGISTRY,
)
PLANNED = Counter(
    "ghpo_broker_planned_prompts", "Prompts planned, by start level.", ["level"], registry=REGISTRY
)

DIFFICULT_RATIO = Gauge(
    "ghpo_broker_difficult_ratio", "Difficult / level-0 groups over the recent window.", registry=REGISTRY
)
ZERO_ADVANTAGE_RATIO = Gauge(
    "ghpo_broker_zero_advantage_ratio",
    "Zero-advantage final groups over the recent window.",
    registry=REGISTRY,
)
NOHINT_ACCURACY = Gauge(
    "ghpo_broker_nohint_accuracy_ratio", "Level-0 rollout accuracy over the recent window.", registry=REGISTRY
)
FINAL_LEVEL_RATIO = Gauge(
    "ghpo_broker_final_level_ratio",
    "Share of recent outcomes ending at each level.",
    ["level"],
    registry=REGISTRY,
)
RESCUE_RATIO = Gauge(
    "ghpo_broker_rescue_ratio",
    "Recent groups at a level that were not all wrong.",
    ["level"],
    registry=REGISTRY,
)


class SparsityWindow:
    """Running sums over the last `size` outcomes; updates the ratio gauges."""

    def __init__(self, size: int, n_levels: int):
        self.size = size
        self.levels = [str(k) for k in range(n_levels)]
        self.window: deque[GroupSummary] = deque()
        self.sums = {"n": 0, "nohint": 0, "difficult": 0, "zero": 0, "nh_correct": 0, "nh_total": 0}
        self.final = [0] * n_levels
        self.attempts = [0] * n_levels
        self.rescues = [0] * n_levels
        for level in self.levels:  # export every level from the start (0, not absent)
            for metric in (GROUPS, ATTEMPTS, RESCUES, PLANNED, FINAL_LEVEL_RATIO, RESCUE_RATIO):
                metric.labels(level=level)

    def _add(self, s: GroupSummary, sign: int) -> None:
        self.sums["n"] += sign
        if s.nohint_g is not None:
            self.sums["nohint"] += sign
            self.sums["nh_correct"] += sign * (s.nohint_correct or 0)
            self.sums["nh_total"] += sign * s.nohint_g
        self.sums["difficult"] += sign * s.difficult
        self.sums["zero"] += sign * s.zero_advantage
        self.final[s.final_level] += sign
        for level in s.attempts:
            self.attempts[level] += sign
        for level in s.rescues:
            self.rescues[level] += sign

    def observe(self, summaries: list[GroupSummary]) -> None:
        # Summed here and added to each counter once per batch: a labelled inc() costs a lock and a
        # lookup, too much to pay per outcome at thousands of outcomes per second.
        before_final, before_att, before_res = list(self.final), list(self.attempts), list(self.rescues)
        before = dict(self.sums)
        for s in summaries:
            self.window.append(s)
            self._add(s, 1)
        delta = {k: self.sums[k] - before[k] for k in before}
        for k, level in enumerate(self.levels):
            GROUPS.labels(level=level).inc(self.final[k] - before_final[k])
            ATTEMPTS.labels(level=level).inc(self.attempts[k] - before_att[k])
            RESCUES.labels(level=level).inc(self.rescues[k] - before_res[k])
        ZERO_ADVANTAGE.inc(delta["zero"])
        NOHINT_GROUPS.inc(delta["nohint"])
        DIFFICULT.inc(delta["difficult"])
        NOHINT_ROLLOUTS.inc(delta["nh_total"])
        NOHINT_CORRECT.inc(delta["nh_correct"])
        while len(self.window) > self.size:
            self._add(self.window.popleft(), -1)
        self._export()

    def _export(self) -> None:
        n, sums = self.sums["n"], self.sums
        if sums["nohint"]:
            DIFFICULT_RATIO.set(sums["difficult"] / sums["nohint"])
        if sums["nh_total"]:
            NOHINT_ACCURACY.set(sums["nh_correct"] / sums["nh_total"])
        if n:
            ZERO_ADVANTAGE_RATIO.set(sums["zero"] / n)
        for k, level in enumerate(self.levels):
            if n:
                FINAL_LEVEL_RATIO.labels(level=level).set(self.final[k] / n)
            if self.attempts[k]:
                RESCUE_RATIO.labels(level=level).set(self.rescues[k] / self.attempts[k])
