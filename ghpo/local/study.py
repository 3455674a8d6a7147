"""The figures of the GHPO-vs-GRPO study (bench/study.py runs it): what each `ghpo run` folder measured,
and their mean and spread over seeds per method.

A study run folder is an ordinary `ghpo run` folder plus `study.json` ({"method", "seed"}, written by the
driver). Figures come from the run's own records, read with report.py's loader (history.jsonl) and
`end.json` (why the run stopped; the rollout server's all-time counters then):
- held-out accuracy per level: the last evaluation (greedy, no hints; and sampled at T = 1 where the run
  measured it) and the first (the start), and every evaluation by optimizer step and by completions
  generated (to compare methods at equal steps and at equal completions, and to read off the completions
  a method needs to reach a target accuracy: `completions_to_reach`);
- difficult and zero-advantage fraction of *trained* batches: mean over the trainer's step lines (with
  dynamic sampling the trained batches hold no zero-advantage group by construction);
- difficult and no-signal fraction of *sampled* groups: the rollout server's counters, over the whole run
  and per interval between history lines (the curves);
- the mechanism: unhinted training-rollout accuracy over the first and the last 5 steps (does the policy
  improve on what it trains on?), hinted rollout accuracy, and the share of the advantage weight on hinted
  rows (how much of the gradient the hints supply), from the trainer's step lines;
- gradient-norm variance: population variance of the per-step gradient norm (before clipping);
- completions per signal group: completions generated (every round, dropped groups' included) divided
  by the sampled groups whose rewards were not all equal;
- wall time: from the trainer's start to its stop (one invocation: a run resumed after a crash restarts
  that clock, and its figure is not comparable).

What it deliberately does not do: start runs (bench/study.py), write the README, results and plots
(study_report.py, whose `aggregate` is the entry point), or test significance: with 3 seeds the tables
give mean ± sample std.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ghpo.local.history import load_history
from ghpo.local.report import GREEDY, SAMPLED, accuracy_change, level_order
from ghpo.local.run import CONFIG_FILE, END_FILE


@dataclass(frozen=True)
class Method:
    """One arm of the study: the README's words for it and the run settings that make it."""

    text: str
    broker_policy: str
    dynamic_sampling: bool = False
    ghpo: tuple[tuple[str, Any], ...] = ()  # [ghpo] keys this arm sets (the rest are the run's)


STUDY_METHODS: dict[str, Method] = {  # in the study's order
    "grpo": Method("broker policy none", "none"),
    "grpo-dapo": Method(
        "none + DAPO dynamic sampling: groups whose rewards are all equal are dropped and more are drawn",
        "none",
        dynamic_sampling=True,
    ),
    "ghpo": Method(
        "the run's [ghpo] settings with the paper's policy: every all-wrong group climbs the ladder", "ghpo"
    ),
    "ghpo-memory": Method("the broker starts a prompt at the hint level it last needed", "ghpo-memory"),
    "ghpo-hinted": Method(
        "paper's policy, rescued groups trained on the hinted prompt they were sampled from",
        "ghpo",
        ghpo=(("condition_on", "hinted"),),
    ),
    "ghpo-plain": Method(
        "paper's policy, rescued groups trained on the plain prompt with weight 1 (the reference code)",
        "ghpo",
        ghpo=(("condition_on", "plain"), ("plain_correction", "none")),
    ),
    "ghpo-plain-is": Method(
        "paper's policy, rescued groups trained on the plain prompt with truncated IS weights (Guide)",
        "ghpo",
        ghpo=(("condition_on", "plain"), ("plain_correction", "truncated_is")),
    ),
    "ghpo-line": Method("paper's policy, hints cut at line breaks", "ghpo", ghpo=(("hint_cut", "line"),)),
    "ghpo-adaptive": Method(
        "the broker holds each prompt near 50% hinted accuracy on a finer ladder (0.25, 0.5, 0.625, 0.75, "
        "0.875): it starts at the last final level, one lower when that group was more than half right",
        "ghpo-adaptive",
        ghpo=(("hint_ladder", [0.25, 0.5, 0.625, 0.75, 0.875]),),
    ),
    "ghpo-keep1": Method(
        "paper's policy, a rescued group keeps one rollout of its failed unhinted round (NuRL)",
        "ghpo",
        ghpo=(("keep_unhinted", 1),),
    ),
}
METHOD_TEXT = {name: method.text for name, method in STUDY_METHODS.items()}
METHODS = tuple(STUDY_METHODS)
BASELINES = ("grpo", "grpo-dapo")
STUDY_FILE = "study.json"
SETTINGS_FILE = "study-settings.json"  # in the runs folder: the shared settings, for the README
# (key, label, which way is better: "higher", "lower", or None for a figure that only describes the run)
# of the scalar figures in the tables, in order. Difficult fractions describe the data a method met (GHPO's
# trained batches count its rescued groups as difficult), so they are shown but not judged.
EDGE_STEPS = 5  # steps averaged for the training-rollout accuracy at the start and at the end of a run
FIGURES = (
    ("accuracy_final_mean", "held-out accuracy, mean over levels", "higher"),
    ("difficult_fraction_sampled", "difficult fraction of sampled groups", None),
    ("no_signal_fraction_sampled", "no-signal fraction of sampled groups", "lower"),
    ("difficult_fraction_trained", "difficult fraction of trained batches", None),
    ("zero_advantage_fraction_trained", "zero-advantage fraction of trained batches", "lower"),
    ("plain_rollout_accuracy_first", f"unhinted rollout accuracy, first {EDGE_STEPS} steps", None),
    ("plain_rollout_accuracy_last", f"unhinted rollout accuracy, last {EDGE_STEPS} steps", "higher"),
    ("hinted_rollout_accuracy", "hinted rollout accuracy (over steps)", None),
    ("hinted_advantage_share", "share of the advantage weight on hinted rows", None),
    ("grad_norm_variance", "gradient-norm variance (over steps)", "lower"),
    ("completions_per_signal_group", "completions generated per signal group", "lower"),
    ("completions_generated", "completions generated", None),
    ("steps", "optimizer steps", None),
    ("wall_time_s", "wall time from trainer start to stop (s)", "lower"),
)


def mean_or_none(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def step_mean(steps: list[dict[str, Any]], key: str) -> float | None:
    """Mean of a step-line figure over the steps that recorded it (None where a step had no such rows)."""
    return mean_or_none([s[key] for s in steps if s.get(key) is not None])


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def sampled_curve(records: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per interval between history lines whose counters moved: the completions generated at its end and
    the difficult and no-signal fractions of the groups sampled in it."""
    points, prev = [], None
    for record in records:
        now = record.get("rollout")
        if now is None:
            continue
        if prev is not None and now["groups_sampled"] > prev["groups_sampled"]:
            n = now["groups_sampled"] - prev["groups_sampled"]
            points.append(
                {
                    "completions": now["completions_generated"],
                    "difficult": (now["difficult_groups"] - prev["difficult_groups"]) / n,
                    "no_signal": (now["no_signal_groups"] - prev["no_signal_groups"]) / n,
                }
            )
        if prev is None or now["groups_sampled"] > prev["groups_sampled"]:
            prev = now
    return points


def curve_point(record: dict[str, Any]) -> dict[str, Any]:
    """One held-out evaluation against the completions generated by then: greedy accuracy (mean over levels
    and by level) and, where the run sampled, the same at temperature 1."""
    point = {
        "completions": record["rollout"]["completions_generated"],
        "accuracy": mean_or_none(list(record[GREEDY].values())),
        "by_level": record[GREEDY],
    }
    if SAMPLED in record:
        point |= {
            "sampled": mean_or_none(list(record[SAMPLED].values())),
            "sampled_by_level": record[SAMPLED],
        }
    return point


def completions_to_reach(curve: list[dict[str, Any]], level: str, target: float) -> int | None:
    """Completions generated by the first evaluation at which greedy accuracy on `level` was at least
    `target` (None: never, within the run). Read off the evaluation points, so its resolution is the
    evaluation interval."""
    for point in curve:
        if point["by_level"].get(level, -1.0) >= target:
            return int(point["completions"])
    return None


def run_figures(run_dir: Path) -> dict[str, Any]:
    """Every figure of one study run (see the module docstring)."""
    run_dir = Path(run_dir)
    meta = json.loads((run_dir / STUDY_FILE).read_text())
    end_path = run_dir / END_FILE
    if not end_path.exists():
        raise ValueError(f"{run_dir}: the run did not finish (no {END_FILE}); resume it or remove it")
    end = json.loads(end_path.read_text())
    steps, evals = load_history(run_dir)
    if not evals:
        raise ValueError(f"{run_dir}: no held-out evaluation recorded")
    change = accuracy_change(evals)
    counters = end["rollout"]
    sampled = counters["groups_sampled"]
    grad_norms = [float(s["grad_norm"]) for s in steps]
    return {
        "method": meta["method"],
        "seed": meta["seed"],
        "run_dir": str(run_dir),
        "budget": json.loads((run_dir / CONFIG_FILE).read_text())["run"]["max_rollouts"],
        "stop_reason": end["stop_reason"],
        "steps": end["step"],
        "accuracy_start": {level: first for level, (first, _) in change.items()},
        "accuracy_final": {level: last for level, (_, last) in change.items()},
        "sampled_final": {level: last for level, (_, last) in accuracy_change(evals, SAMPLED).items()},
        "accuracy_final_mean": mean_or_none([last for _, last in change.values()]),
        "difficult_fraction_trained": mean_or_none([s["difficult_fraction"] for s in steps]),
        "zero_advantage_fraction_trained": mean_or_none([s["zero_advantage_fraction"] for s in steps]),
        "difficult_fraction_sampled": _ratio(counters["difficult_groups"], sampled),
        "no_signal_fraction_sampled": _ratio(counters["no_signal_groups"], sampled),
        "plain_rollout_accuracy_first": step_mean(steps[:EDGE_STEPS], "plain_accuracy"),
        "plain_rollout_accuracy_last": step_mean(steps[-EDGE_STEPS:], "plain_accuracy"),
        "hinted_rollout_accuracy": step_mean(steps, "hinted_accuracy"),
        "hinted_advantage_share": step_mean(steps, "hinted_advantage_share"),
        "grad_norm_variance": statistics.pvariance(grad_norms) if len(grad_norms) > 1 else None,
        "completions_generated": counters["completions_generated"],
        "completions_per_signal_group": _ratio(
            counters["completions_generated"], sampled - counters["no_signal_groups"]
        ),
        "groups_acked": counters["acked_groups"],
        "groups_dropped": counters["groups_dropped"],
        "wall_time_s": (
            round(end["elapsed_s"] - end["trainer_started_s"], 2) if "trainer_started_s" in end else None
        ),
        "accuracy_by_step": {str(e["step"]): e["accuracy_by_level"] for e in evals},
        "accuracy_curve": [curve_point(e) for e in evals if "rollout" in e],
        "trained_curve": [
            {
                "completions": s["rollout"]["completions_generated"],
                "zero_advantage": s["zero_advantage_fraction"],
            }
            for s in steps
            if "rollout" in s
        ],
        "sampled_curve": sampled_curve(steps),
    }


def _spread(values: list[float]) -> dict[str, float | int]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def common_eval_step(runs: list[dict[str, Any]]) -> int | None:
    """The largest step > 0 at which every run was evaluated: where methods that took different numbers of
    steps for the same generation budget are compared at equal optimizer steps."""
    shared = set.intersection(*({int(k) for k in r["accuracy_by_step"]} for r in runs)) if runs else set()
    shared.discard(0)
    return max(shared) if shared else None


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: mean, sample std, range and n over seeds of every scalar figure and of accuracy per level,
    at the end and at the last step every run was evaluated at (`common_eval_step`)."""
    out: dict[str, dict[str, Any]] = {}
    step = common_eval_step(runs)
    for method in [m for m in METHODS if any(r["method"] == m for r in runs)]:
        mine = [r for r in runs if r["method"] == method]
        entry: dict[str, Any] = {"seeds": sorted(r["seed"] for r in mine)}
        for key, _, _ in FIGURES:
            values = [r[key] for r in mine if r[key] is not None]
            entry[key] = _spread(values) if values else None
        for which in ("accuracy_start", "accuracy_final", "sampled_final"):
            levels = sorted({lvl for r in mine for lvl in r.get(which, {})}, key=level_order)
            entry[which] = {
                lvl: _spread([r[which][lvl] for r in mine if lvl in r.get(which, {})]) for lvl in levels
            }
        if step is not None:
            at_step = [r["accuracy_by_step"][str(step)] for r in mine]
            levels = sorted({lvl for acc in at_step for lvl in acc}, key=level_order)
            entry["accuracy_equal_steps"] = {
                "step": step,
                "levels": {lvl: _spread([acc[lvl] for acc in at_step if lvl in acc]) for lvl in levels},
            }
        out[method] = entry
    return out


TARGET_SHARE = 0.5  # the target accuracy: this share of GRPO's mean final accuracy on the hard level


def hard_level(settings: dict[str, Any], summary: dict[str, dict[str, Any]]) -> str | None:
    """The hardest level the runs trained on (the study's settings name them), else the hardest evaluated."""
    trained = [str(lv) for lv in settings.get("levels", [])]
    evaluated = summary_levels(summary)
    for level in sorted(trained, key=level_order, reverse=True):
        if level in evaluated:
            return level
    return evaluated[-1] if evaluated else None


def speed_to_target(runs: list[dict[str, Any]], level: str) -> dict[str, Any] | None:
    """Per method, the completions each seed needed to reach TARGET_SHARE x GRPO's mean final greedy
    accuracy on `level` (None: not within the budget), their mean over the seeds that reached it, and the
    ratio of that mean to GRPO's; None without GRPO runs, or where GRPO ends at 0 on the level."""
    grpo = [
        r["accuracy_final"][level] for r in runs if r["method"] == "grpo" and level in r["accuracy_final"]
    ]
    if not grpo or sum(grpo) == 0:
        return None
    target = TARGET_SHARE * sum(grpo) / len(grpo)
    methods: dict[str, Any] = {}
    for method in [m for m in METHODS if any(r["method"] == m for r in runs)]:
        seeds = {
            r["seed"]: completions_to_reach(r["accuracy_curve"], level, target)
            for r in runs
            if r["method"] == method
        }
        reached = [c for c in seeds.values() if c is not None]
        methods[method] = {"by_seed": seeds, "mean": mean_or_none(reached), "reached": len(reached)}
    base = methods["grpo"]["mean"]
    for entry in methods.values():
        entry["ratio_to_grpo"] = entry["mean"] / base if entry["mean"] is not None and base else None
    return {"level": level, "target": target, "methods": methods}


def summary_levels(summary: dict[str, dict[str, Any]]) -> list[str]:
    return sorted({lvl for e in summary.values() for lvl in e["accuracy_final"]}, key=level_order)
