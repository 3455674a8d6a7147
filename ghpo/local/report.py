"""The end-of-run report of `ghpo run`: a Markdown summary and PNG plots from the run's history file.

What it is for: a user who ran the default job should see, without Grafana, whether GHPO did its work:
held-out accuracy per level over steps, how sparse the rewards were (difficult fraction before hints,
zero-advantage fraction after), where the hints ended (groups by final hint level), how often each hint
level rescued an all-wrong group, plain vs hinted rollout accuracy, and where a step's time went
(waiting for generation, training, weight push), and which processes died and were restarted.

The history is `<run_dir>/history.jsonl` (history.py), one JSON object per line, appended as the run
goes (so a resumed run continues the same file; a step redone after a resume replaces its old record):
    {"kind": "step", "step": 12, "elapsed_s": 81.2, "difficult_fraction": 0.4,
     "zero_advantage_fraction": 0.1, "groups_by_level": {"0": 10, "1": 4, ...},
     "plain_accuracy": 0.3, "hinted_accuracy": 0.2, "reward_mean": 0.4, "loss": 0.01,
     "rescues_by_level": {"1": [12, 3], ...}, "hinted_advantage_share": 0.3,
     "wait_s": 5.1, "train_s": 2.0, "sync_s": 0.1, "batch_id": "b12-...", "skipped_groups": 0,
     "checkpoint_s": 0.4}
    {"kind": "eval", "step": 0, "elapsed_s": 3.0, "accuracy_by_level": {"1": 0.93, ...}, "n_per_level": 60}
    {"kind": "restart", "process": "rollout", "step": 7, "at_s": 95.1, "exit": "killed by SIGKILL",
     "back_off_s": 0.7, "ready_after_s": 6.2}
Both kinds also carry `rollout`: the rollout server's all-time generation counters when the line was
written (completions_generated, groups_sampled, difficult_groups, no_signal_groups, acked_groups,
groups_dropped), so figures can be set against the generation budget (ghpo/local/study.py does).

What it deliberately does not do: compute any figure (the trainer and the evaluator do), or fail the run
when a plot cannot be drawn (the Markdown still says what is missing).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ghpo.local.history import load_history, load_restarts


def level_order(level: str) -> tuple[int, str]:
    """Sort key of per-level keys: numeric levels in order, then anything else ("all": an evaluation set
    without levels)."""
    return (int(level), "") if level.isdigit() else (1 << 30, level)


def _levels(records: Iterable[Mapping[str, Any]], key: str) -> list[str]:
    found = {level for record in records for level in record.get(key, {})}
    return sorted(found, key=level_order)


GREEDY, SAMPLED = "accuracy_by_level", "sampled_accuracy_by_level"  # an eval record's two figures


def accuracy_change(evals: list[dict[str, Any]], key: str = GREEDY) -> dict[str, tuple[float, float]]:
    """Per level: (first, last) held-out accuracy, greedy or (key=SAMPLED) sampled, over the evaluations
    that recorded it."""
    evals = [e for e in evals if key in e]
    if not evals:
        return {}
    first, last = evals[0][key], evals[-1][key]
    return {
        level: (first[level], last[level])
        for level in _levels(evals, key)
        if level in first and level in last
    }


def plot_history(run_dir: Path, steps: list[dict[str, Any]], evals: list[dict[str, Any]]) -> list[Path]:
    """Write the three PNG plots; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    written = []

    fig, ax = plt.subplots(figsize=(7, 4))
    for level in _levels(evals, GREEDY):
        points = [(e["step"], e[GREEDY][level]) for e in evals if level in e[GREEDY]]
        (line,) = ax.plot(*zip(*points, strict=True), marker="o", label=f"level {level}, greedy")
        sampled = [(e["step"], e[SAMPLED][level]) for e in evals if level in e.get(SAMPLED, {})]
        if sampled:
            ax.plot(
                *zip(*sampled, strict=True), ls="--", color=line.get_color(), label=f"level {level}, T = 1"
            )
    ax.set(xlabel="optimizer step", ylabel="held-out accuracy", ylim=(-0.02, 1.02))
    ax.set_title("Held-out accuracy per level")
    ax.legend(fontsize="small", ncol=2)
    written.append(save_figure(fig, run_dir / "accuracy_per_level.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [s["step"] for s in steps]
    ax.plot(xs, [s["difficult_fraction"] for s in steps], label="difficult (all wrong, no hint)")
    ax.plot(xs, [s["zero_advantage_fraction"] for s in steps], label="zero advantage (after hints)")
    ax.set(xlabel="optimizer step", ylabel="fraction of groups", ylim=(-0.02, 1.02))
    ax.set_title("Reward sparsity")
    ax.legend(fontsize="small")
    written.append(save_figure(fig, run_dir / "reward_sparsity.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    levels = _levels(steps, "groups_by_level")
    bottom = [0.0] * len(steps)
    for level in levels:
        counts = [float(s["groups_by_level"].get(level, 0)) for s in steps]
        ax.bar(
            xs, counts, bottom=bottom, width=1.0, label="no hint" if level == "0" else f"hint level {level}"
        )
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    ax.set(xlabel="optimizer step", ylabel="groups in the batch")
    ax.set_title("Groups by final hint level")
    ax.legend(fontsize="small")
    written.append(save_figure(fig, run_dir / "hint_levels.png"))

    if any(s.get("hinted_accuracy") is not None for s in steps):
        written.append(plot_hint_use(run_dir, steps))
    return written


def plot_hint_use(run_dir: Path, steps: list[dict[str, Any]]) -> Path:
    """Rollout accuracy of plain vs hinted rounds over the steps, and the rescue rate of each hint level."""
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for key, label in (
        ("plain_accuracy", "acc (plain rollouts, no hint)"),
        ("hinted_accuracy", "hinted acc (hinted rounds)"),
    ):
        points = [(s["step"], s[key]) for s in steps if s.get(key) is not None]
        if points:
            top.plot(*zip(*points, strict=True), label=label)
    top.set(ylabel="rollout accuracy", ylim=(-0.02, 1.02))
    top.set_title("Plain vs hinted rollouts")
    top.legend(fontsize="small")
    for level in _levels(steps, "rescues_by_level"):
        points = [
            (s["step"], s["rescues_by_level"][level][1] / s["rescues_by_level"][level][0])
            for s in steps
            if s.get("rescues_by_level", {}).get(level, [0, 0])[0]
        ]
        if points:
            bottom.plot(*zip(*points, strict=True), marker=".", linestyle="none", label=f"hint level {level}")
    bottom.set(xlabel="optimizer step", ylabel="groups rescued / tried", ylim=(-0.02, 1.02))
    bottom.set_title("Rescue rate per hint level")
    bottom.legend(fontsize="small")
    return save_figure(fig, Path(run_dir) / "hint_use.png")


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write as PNG and close a matplotlib figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


STEP_PHASES = (
    ("wait_s", "waiting for the batch (generation, hints, verification not yet done)"),
    ("train_s", "training (forward, backward, optimizer)"),
    ("sync_s", "weight push to inference, new version announced to the rollout server"),
)


def _rescues(steps: list[dict[str, Any]]) -> dict[str, list[int]]:
    totals: dict[str, list[int]] = {}
    for s in steps:
        for level, (tried, rescued) in s.get("rescues_by_level", {}).items():
            pair = totals.setdefault(level, [0, 0])
            pair[0] += tried
            pair[1] += rescued
    return totals


def rescue_lines(early: list[dict[str, Any]], late: list[dict[str, Any]]) -> list[str]:
    """Per hint level: groups rescued / groups tried there, in each half of the run; and the share of the
    advantage weight that hinted groups carried."""
    first, second = _rescues(early), _rescues(late)
    levels = sorted(set(first) | set(second), key=int)
    if not levels:
        return []

    def cell(pair: list[int] | None) -> str:
        return "—" if not pair or not pair[0] else f"{pair[1] / pair[0]:.0%} ({pair[1]}/{pair[0]})"

    lines = ["", "## Hints at work", "", "| hint level | rescued / tried, first half | second half |"]
    lines.append("|---|---|---|")
    lines += [f"| {level} | {cell(first.get(level))} | {cell(second.get(level))} |" for level in levels]
    shares = [
        [s["hinted_advantage_share"] for s in half if s.get("hinted_advantage_share") is not None]
        for half in (early, late)
    ]
    lines += [
        "",
        "Share of the advantage weight (sum of |advantage|) on hinted groups: "
        f"{_fmt(_mean(shares[0]))} in the first half, {_fmt(_mean(shares[1]))} in the second.",
    ]
    return lines


def step_time_lines(steps: list[dict[str, Any]]) -> list[str]:
    """The median seconds of each phase of a trainer step, for the steps that timed their phases."""
    timed = [s for s in steps if all(key in s for key, _ in STEP_PHASES)]
    if not timed:
        return []
    lines = ["", f"## Where a step's time goes (median over {len(timed)} steps, seconds)", ""]
    lines += ["| phase | median s |", "|---|---|"]
    for key, label in STEP_PHASES:
        lines.append(f"| {label} | {statistics.median(s[key] for s in timed):.2f} |")
    return lines


def restart_lines(restarts: list[dict[str, Any]], steps: list[dict[str, Any]]) -> list[str]:
    """The processes that died during the run and were restarted: which, when, how, how long until ready
    again, and until the next step was trained (the time the run lost; from the same clock)."""
    if not restarts:
        return []
    lines = ["", f"## Restarts ({len(restarts)})", ""]
    lines += [
        "| process | at (min) | after step | how it ended | back-off s | ready after s | next step after s |"
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for r in restarts:
        later = [s["elapsed_s"] for s in steps if s.get("elapsed_s", 0.0) > r["at_s"]]
        next_step = f"{min(later) - r['at_s']:.1f}" if later else "—"
        lines.append(
            f"| {r['process']} | {r['at_s'] / 60:.1f} | {r.get('step', '—')} | {r['exit']} "
            f"| {r['back_off_s']:.1f} | {r['ready_after_s']:.1f} | {next_step} |"
        )
    return lines


def accuracy_lines(evals: list[dict[str, Any]]) -> list[str]:
    """Per level, greedy and (where recorded) sampled accuracy at the first and the last evaluation."""
    greedy, sampled = accuracy_change(evals), accuracy_change(evals, SAMPLED)
    if not greedy:
        return []
    first_step, last_step = evals[0]["step"], evals[-1]["step"]
    samples = f"mean of {evals[-1]['eval_samples']}" if "eval_samples" in evals[-1] else "mean over samples"
    lines = [
        f"Greedy, and sampled at temperature 1 ({samples} per problem), step {first_step} and step {last_step}:",
        "",
        "| level | greedy | change (points) | sampled | change (points) |",
        "|---|---|---|---|---|",
    ]
    for level, (before, after) in greedy.items():
        row = f"| {level} | {before:.1%} → {after:.1%} | {100 * (after - before):+.1f} |"
        if level in sampled:
            s_before, s_after = sampled[level]
            row += f" {s_before:.1%} → {s_after:.1%} | {100 * (s_after - s_before):+.1f} |"
        else:
            row += " — | — |"
        lines.append(row)
    return lines


def write_report(run_dir: Path, summary: Mapping[str, Any]) -> Path:
    """Write `<run_dir>/report.md` (and the plots) from the history; `summary` holds run facts to print."""
    run_dir = Path(run_dir)
    steps, evals = load_history(run_dir)
    lines = ["# ghpo run report", ""]
    lines += [f"- **{key}**: {value}" for key, value in summary.items()]
    lines += ["", "## Held-out accuracy (no hints)", ""]
    lines += accuracy_lines(evals) or ["No evaluation was recorded."]
    lines += ["", "## Reward sparsity", ""]
    if steps:
        half = max(1, len(steps) // 2)
        early, late = steps[:half], steps[half:] or steps[-1:]
        lines += ["| figure | first half of the steps | second half |", "|---|---|---|"]
        for key, label in (
            ("difficult_fraction", "difficult fraction (all wrong without hints)"),
            ("zero_advantage_fraction", "zero-advantage fraction (after hints)"),
            ("plain_accuracy", "acc: rollout accuracy without hints (plain rounds)"),
            ("hinted_accuracy", "hinted acc: rollout accuracy of the hinted rounds"),
        ):
            early_values = [s[key] for s in early if s.get(key) is not None]
            late_values = [s[key] for s in late if s.get(key) is not None]
            lines.append(f"| {label} | {_fmt(_mean(early_values))} | {_fmt(_mean(late_values))} |")
        totals: dict[str, int] = {}
        for s in steps:
            for level, count in s["groups_by_level"].items():
                totals[level] = totals.get(level, 0) + int(count)
        lines += [
            "",
            "Groups by final hint level over the run: "
            + ", ".join(f"level {lvl}: {totals[lvl]}" for lvl in sorted(totals, key=int)),
        ]
        lines += rescue_lines(early, late)
        lines += step_time_lines(steps)
    else:
        lines.append("No training step was recorded.")
    lines += restart_lines(load_restarts(run_dir), steps)
    try:
        plots = plot_history(run_dir, steps, evals) if steps or evals else []
    except ImportError as exc:  # matplotlib is an optional extra
        plots = []
        lines += ["", f"Plots skipped: {exc}"]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
