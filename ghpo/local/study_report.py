"""The GHPO-vs-GRPO study's written results: `aggregate(runs_dir, out_dir)` reads every study run
(study.py's figures), writes `results.json`, the README (tables of mean ± sample std over seeds, "where
GHPO does not win" by the plain rule stated there) and the plots.

What it deliberately does not do: read a run's records (study.py), start runs (bench/study.py), or test
significance: with 3 seeds the tables describe, they do not decide.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ghpo.local.report import level_order, save_figure
from ghpo.local.study import (
    BASELINES,
    FIGURES,
    METHOD_TEXT,
    METHODS,
    SETTINGS_FILE,
    STUDY_FILE,
    STUDY_METHODS,
    TARGET_SHARE,
    hard_level,
    mean_or_none,
    run_figures,
    speed_to_target,
    summarize,
    summary_levels,
)
from ghpo.services.broker.policies import REMEMBERING


def _pm(spread: dict[str, Any] | None, fmt: str = ".3f") -> str:
    if spread is None:
        return "—"
    if spread["n"] == 1:  # one seed has no spread to show
        return f"{spread['mean']:{fmt}}"
    return f"{spread['mean']:{fmt}} ± {spread['std']:{fmt}}"


def _range(spread: dict[str, Any] | None) -> str:
    if spread is None:
        return "—"
    return f"{_pm(spread)} [{spread['min']:.3f}–{spread['max']:.3f}]"


def level_verdicts(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Each GHPO variant against each baseline on each level's final held-out accuracy: the gain in points
    and whether the seed ranges are apart (every seed of one above every seed of the other; a side with
    one seed has no range, and says so)."""
    lines = []
    for variant in _variants(summary):
        for base in [m for m in BASELINES if m in summary]:
            for level in summary_levels(summary):
                mine = summary[variant]["accuracy_final"].get(level)
                theirs = summary[base]["accuracy_final"].get(level)
                if mine is None or theirs is None:
                    continue
                gain = 100 * (mine["mean"] - theirs["mean"])
                if min(len(summary[variant]["seeds"]), len(summary[base]["seeds"])) < 2:
                    apart = "one seed: no range to compare"
                elif mine["min"] > theirs["max"]:
                    apart = "seed ranges apart, GHPO above"
                elif theirs["min"] > mine["max"]:
                    apart = "seed ranges apart, GHPO below"
                else:
                    apart = "seed ranges overlap"
                lines.append(
                    f"- {variant} vs {base}, level {level}: {gain:+.1f} points "
                    f"([{mine['min']:.3f}–{mine['max']:.3f}] vs [{theirs['min']:.3f}–{theirs['max']:.3f}]; {apart})"
                )
    return lines


def _variants(summary: dict[str, dict[str, Any]]) -> list[str]:
    return [m for m in summary if m not in BASELINES]


def where_ghpo_does_not_win(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Each comparison of a GHPO variant with a baseline that GHPO does not win: its mean is no better,
    or better by less than the larger of the two seed spreads (std), which 3 seeds cannot tell apart."""
    lines = []
    comparisons = [
        ("held-out accuracy, level " + lvl, ("accuracy_final", lvl), "higher")
        for lvl in summary_levels(summary)
    ]
    comparisons += [(label, (key,), better) for key, label, better in FIGURES if better is not None]
    for variant in _variants(summary):
        for base in [m for m in BASELINES if m in summary]:
            for label, path, better in comparisons:
                mine, theirs = _get(summary[variant], path), _get(summary[base], path)
                if mine is None or theirs is None:
                    continue
                gain = mine["mean"] - theirs["mean"] if better == "higher" else theirs["mean"] - mine["mean"]
                noise = max(mine["std"], theirs["std"])
                if abs(gain) <= 1e-9 * max(1.0, abs(theirs["mean"])):  # the same figure, up to rounding
                    verdict = "equal"
                elif gain < 0:
                    verdict = "worse"
                elif gain <= noise:
                    verdict = f"better by {gain:.3g}, within the seed spread ({noise:.3g})"
                else:
                    continue
                mine_text, theirs_text = _pm(mine, ".3g"), _pm(theirs, ".3g")  # 3 digits of 1e-3 too
                lines.append(f"- {variant} vs {base}, {label}: {mine_text} vs {theirs_text} — {verdict}")
    return lines


def _get(entry: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any] | None:
    value: Any = entry
    for part in path:
        value = value.get(part) if value is not None else None
    return value


SPEED_BAR = 0.7  # GHPO "learns faster" where it needs at most this share of GRPO's completions


def speed_lines(speed: dict[str, Any] | None) -> list[str]:
    if speed is None:
        return ["No GRPO run with accuracy above 0 on the hard level: no target to reach."]
    lines = [
        f"Target: {speed['target']:.1%} greedy on level {speed['level']} ({TARGET_SHARE:.0%} of GRPO's mean "
        "final accuracy). Completions generated by the first evaluation at or above it, per seed "
        "(— = not within the budget); GHPO learns faster where its ratio is at most "
        f"{SPEED_BAR} and its seeds' range lies below GRPO's.",
        "",
        "| method | per seed | mean (seeds that reached it) | ratio to GRPO | ranges |",
        "|---|---|---|---|---|",
    ]
    grpo = list(speed["methods"]["grpo"]["by_seed"].values())
    for method, entry in speed["methods"].items():
        seeds = entry["by_seed"]
        cells = ", ".join(f"s{seed} {'—' if c is None else c}" for seed, c in sorted(seeds.items()))
        mean = "—" if entry["mean"] is None else f"{entry['mean']:.0f} ({entry['reached']}/{len(seeds)})"
        ratio = "—" if entry["ratio_to_grpo"] is None else f"{entry['ratio_to_grpo']:.2f}"
        if method == "grpo":
            apart = ""
        elif None in seeds.values() or None in grpo or min(len(seeds), len(grpo)) < 2:
            apart = "not comparable (a seed did not reach it, or one seed)"
        elif max(seeds.values()) < min(grpo):
            apart = "apart, faster"
        elif min(seeds.values()) > max(grpo):
            apart = "apart, slower"
        else:
            apart = "overlap"
        lines.append(f"| {method} | {cells} | {mean} | {ratio} | {apart} |")
    return lines


def render_readme(
    summary: dict[str, dict[str, Any]],
    runs: list[dict[str, Any]],
    settings: dict[str, Any],
    plots: list[Path],
) -> str:
    levels = summary_levels(summary)
    lines = [
        "# GHPO vs GRPO at an equal generation budget",
        "",
        "Written by `python bench/study.py` (re-aggregate with `--aggregate-only RUNS_DIR`); figures in "
        "`results.json`. Each run is a `ghpo run` stopped once the rollout server had generated the budget "
        "of completions (every round, hinted ones and dropped groups' included; the check runs once a "
        "second, so a run overshoots by what was in flight: see `completions generated`). Mean ± sample "
        "std over seeds.",
        "",
        "Settings: " + ", ".join(f"{k} = {v}" for k, v in settings.items()),
        "",
        "Methods: " + ", ".join(f"{m} ({METHOD_TEXT[m]})" for m in summary) + ".",
        "",
        "## Held-out accuracy at the end (greedy, no hints)",
        "",
        "| method | seeds | " + " | ".join(f"level {lvl}" for lvl in levels) + " | mean | start (mean) |",
        "|---" * (len(levels) + 4) + "|",
    ]
    for method, entry in summary.items():
        start = mean_or_none([s["mean"] for s in entry["accuracy_start"].values()])
        cells = [_range(entry["accuracy_final"].get(lvl)) for lvl in levels]
        lines.append(
            f"| {method} | {len(entry['seeds'])} | "
            + " | ".join(cells)
            + f" | {_pm(entry['accuracy_final_mean'])} | {'—' if start is None else f'{start:.3f}'} |"
        )
    lines += ["", "Cells: mean ± std [lowest–highest seed].", ""]
    sampled_levels = sorted(
        {lv for e in summary.values() for lv in e.get("sampled_final", {})}, key=level_order
    )
    if sampled_levels:
        lines += ["Sampled at temperature 1 (mean accuracy of several completions per problem):", ""]
        lines += ["| method | " + " | ".join(f"level {lvl}" for lvl in sampled_levels) + " |"]
        lines += ["|---" * (len(sampled_levels) + 1) + "|"]
        for method, entry in summary.items():
            cells = [_range(entry.get("sampled_final", {}).get(lvl)) for lvl in sampled_levels]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    level = hard_level(settings, summary)
    if level is not None:
        lines += [f"## Completions to reach a target on level {level}", ""]
        lines += [*speed_lines(speed_to_target(runs, level)), ""]
    lines += ["## GHPO against the baselines, level by level", ""]
    lines += level_verdicts(summary) or ["No GHPO variant and baseline to compare."]
    equal = [e.get("accuracy_equal_steps") for e in summary.values()]
    if all(equal) and equal:
        step = equal[0]["step"]
        lines += [
            "",
            f"## Held-out accuracy at equal optimizer steps (step {step}, the last every run reached)",
            "",
            "| method | " + " | ".join(f"level {lvl}" for lvl in levels) + " |",
            "|---" * (len(levels) + 1) + "|",
        ]
        for method, entry in summary.items():
            at = entry["accuracy_equal_steps"]["levels"]
            lines.append(f"| {method} | " + " | ".join(_range(at.get(lvl)) for lvl in levels) + " |")
    lines += ["", "## Training figures", "", "| figure | " + " | ".join(summary) + " |"]
    lines.append("|---" * (len(summary) + 1) + "|")
    for key, label, better in FIGURES[1:]:
        fmt = ".0f" if key in ("completions_generated", "steps", "wall_time_s") else ".3g"
        arrow = f" ({better} is better)" if better else ""
        lines.append(f"| {label}{arrow} | " + " | ".join(_pm(e[key], fmt) for e in summary.values()) + " |")
    other = [r for r in runs if not r["stop_reason"].startswith("generation budget")]
    if other:
        lines += ["", "Runs not ended by the generation budget (their figures are not at an equal budget):"]
        lines += [f"- {Path(r['run_dir']).name}: {r['stop_reason']}" for r in other]
    if "grpo-dapo" in summary:
        lines += [
            "",
            "grpo-dapo trains on no zero-advantage group by construction; what that costs shows in the "
            "completions it generates per signal group.",
        ]
    remembering = [m for m in summary if STUDY_METHODS[m].broker_policy in REMEMBERING]
    if remembering:
        lines += [
            "",
            f"Under {' and '.join(remembering)} a prompt that starts hinted has no unhinted round: the "
            "unhinted rollout accuracy is over the prompts that started plain, the easier ones, and is not "
            "comparable with the other methods'.",
        ]
    lines += ["", "## Where GHPO does not win", ""]
    verdicts = where_ghpo_does_not_win(summary)
    lines += verdicts or ["Nowhere: every GHPO variant beats every baseline by more than the seed spread."]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _plot_runs(ax: Any, runs: list[dict[str, Any]], colours: dict[str, str], points_of: Any) -> None:
    """One line per run, coloured by method, labelled once per method; points_of(run) -> [(x, y)]."""
    labelled = set()
    for run in runs:
        points = points_of(run)
        if not points:
            continue
        label = None if run["method"] in labelled else run["method"]
        labelled.add(run["method"])
        ax.plot(
            [x for x, _ in points],
            [y for _, y in points],
            color=colours[run["method"]],
            alpha=0.7,
            marker="." if len(points) < 30 else None,
            label=label,
        )
    ax.legend(fontsize="x-small")


def plot_study(out_dir: Path, runs: list[dict[str, Any]], summary: dict[str, dict[str, Any]]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    colours = {m: f"C{i}" for i, m in enumerate(METHODS)}
    written = []
    levels = [*summary_levels(summary), "mean"]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(1, len(summary))
    for i, (method, entry) in enumerate(summary.items()):
        spreads = [entry["accuracy_final"].get(lvl) for lvl in levels[:-1]] + [entry["accuracy_final_mean"]]
        xs = [j + i * width for j in range(len(levels))]
        means = [s["mean"] if s else 0.0 for s in spreads]
        stds = [s["std"] if s else 0.0 for s in spreads]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=method, color=colours[method])
    ax.set_xticks(
        [j + 0.4 - width / 2 for j in range(len(levels))],
        [f"level {lv}" if lv != "mean" else lv for lv in levels],
    )
    ax.set(
        ylabel="held-out accuracy (greedy)",
        ylim=(0, 1.02),
        title="Held-out accuracy at the end (± std over seeds)",
    )
    ax.legend(fontsize="small")
    written.append(save_figure(fig, out_dir / "accuracy_final.png"))

    panels = (
        ("accuracy_curve", "accuracy", "held-out accuracy, mean over levels"),
        ("sampled_curve", "no_signal", "no-signal fraction of sampled groups"),
        ("sampled_curve", "difficult", "difficult fraction of sampled groups"),
        ("trained_curve", "zero_advantage", "zero-advantage fraction of trained batches"),
    )
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (curve, key, title) in zip(axes.flat, panels, strict=True):
        _plot_runs(ax, runs, colours, lambda run, c=curve, k=key: [(p["completions"], p[k]) for p in run[c]])
        ax.set(xlabel="completions generated", ylim=(-0.02, 1.02), title=title)
    written.append(save_figure(fig, out_dir / "over_training.png"))

    # Per level: the mean over levels can hide a gain on one level behind noise on another.
    fig, axes = plt.subplots(1, len(levels) - 1, figsize=(4 * (len(levels) - 1), 3.6), squeeze=False)
    for ax, level in zip(axes.flat, levels[:-1], strict=True):
        _plot_runs(
            ax,
            runs,
            colours,
            lambda run, lv=level: [
                (p["completions"], p["by_level"][lv])
                for p in run["accuracy_curve"]
                if lv in p.get("by_level", {})
            ],
        )
        ax.set(xlabel="completions generated", ylim=(-0.02, 1.02), title=f"held-out accuracy, level {level}")
    written.append(save_figure(fig, out_dir / "accuracy_per_level.png"))
    return written


def aggregate(runs_dir: Path, out_dir: Path) -> Path:
    """Read every study run under `runs_dir`, write results.json, README.md and the plots to `out_dir`."""
    settings_path = Path(runs_dir) / SETTINGS_FILE
    settings = json.loads(settings_path.read_text()) if settings_path.exists() else {}
    folders = sorted(p.parent for p in Path(runs_dir).glob(f"*/{STUDY_FILE}"))
    if not folders:
        raise ValueError(f"no study runs (folders with {STUDY_FILE}) under {runs_dir}")
    runs = [run_figures(folder) for folder in folders]
    budgets = {r["budget"] for r in runs}
    if len(budgets) > 1:
        raise ValueError(
            f"runs under {runs_dir} have different generation budgets {sorted(budgets, key=str)}"
        )
    summary = summarize(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = plot_study(out_dir, runs, summary)
    level = hard_level(settings, summary)
    speed = speed_to_target(runs, level) if level is not None else None
    results = {"settings": settings, "summary": summary, "speed_to_target": speed, "runs": runs}
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    readme = out_dir / "README.md"
    readme.write_text(render_readme(summary, runs, settings, plots))
    return readme
