"""What `ghpo run` shows while it trains: a live bar in a terminal, one plain line per step in a log file.

Every figure is named for what it is. The step is shown against the budget that will stop the run:
`run.steps`, `run.max_minutes` or `run.max_rollouts` (completions), whichever comes first. Until
MIN_TIMED_STEPS steps are timed that is not known, and the line names the budgets (`step 2/150 or 13
min`); from then on it shows the steps the binding budget allows, estimated from the median step time
and the completions generated per step (`step 9/~52 (13 min budget)`), or plainly `step 9/150` when the
step target comes first. `acc` is the accuracy of the plain (unhinted) rollouts, `hinted acc` that of
the hinted rounds' rollouts (the trainer's `plain_accuracy` and `hinted_accuracy`); the reward the
trainer optimises (accuracy plus a format term) is not shown, as "reward 0.74" reads as 74% right.

In a terminal (stdout is a TTY) a rich progress bar carries the step, held-out accuracy per level, `acc`
and `hinted acc`, the difficult and zero-advantage fractions, the hint levels and, during warm-up, the
learning rate. Anywhere else (`ghpo run > run.log`, nohup, CI) a bar would print only its first and last
state, so each step is one line instead: step, seconds, trainable groups (those whose advantages are not
all 0), `acc`, `hinted acc` and learning rate (`lr 1.2e-04 (warm-up 3/5)` while it warms up), and a
held-out line when the set is evaluated. Either way, notes (restarts, stops) are plain lines, and
batches with nothing trainable are warned about while they last: the trainer acknowledges them without
a step, so without the warning the run would look stalled. Libraries' own progress bars follow the same
rule (ghpo.shared.progress_bars).

What it deliberately does not do: decide anything (run.py) or read files (history.py).
"""

from __future__ import annotations

import statistics
import sys
from typing import Any, TextIO

from ghpo.local.config import RunConfig, RunSection
from ghpo.local.report import level_order

EMPTY_WARN_FIRST = 3  # consecutive batches with nothing trainable before the first warning
MIN_TIMED_STEPS = 3  # steps timed before the budget's steps are estimated
RECENT_STEPS = 20  # the estimate's window
STEP_PHASES = ("wait_s", "train_s", "sync_s")


def accuracy_text(accuracy: dict[str, float]) -> str:
    return " ".join(
        f"L{lvl} {v:.0%}" for lvl, v in sorted(accuracy.items(), key=lambda kv: level_order(kv[0]))
    )


def lr_text(record: dict[str, Any], warmup_steps: int) -> str:
    lr = f"lr {record.get('lr', 0.0):.1e}"
    step = int(record["step"])
    return f"{lr} (warm-up {step}/{warmup_steps})" if step <= warmup_steps else lr


def groups_in(record: dict[str, Any]) -> int:
    return sum(int(n) for n in record.get("groups_by_level", {}).values())


def step_seconds(record: dict[str, Any]) -> float:
    return sum(record.get(key, 0.0) for key in STEP_PHASES)


def steps_allowed(run: RunSection, recent: list[dict[str, Any]]) -> tuple[int, str | None] | None:
    """(steps the run will end at, the budget that ends it: None for the step target), estimated from this
    invocation's recent step records (`elapsed_s` since it started, `rollout` counters); None until
    MIN_TIMED_STEPS of them are timed."""
    timed = [r for r in recent[-RECENT_STEPS:] if "elapsed_s" in r and step_seconds(r) > 0]
    if len(timed) < MIN_TIMED_STEPS:
        return None
    first, last = timed[0], timed[-1]
    step = int(last["step"])
    ends: list[tuple[int, str | None]] = [(run.steps, None)]
    left_s = 60 * run.max_minutes - last["elapsed_s"]
    per_step_s = statistics.median(step_seconds(r) for r in timed)
    ends.append((step + max(0, int(left_s // per_step_s)), f"{run.max_minutes:g} min"))
    made = [r.get("rollout", {}).get("completions_generated") for r in (first, last)]
    if run.max_rollouts is not None and None not in made and made[1] > made[0] and step > first["step"]:
        per_step = (made[1] - made[0]) / (step - int(first["step"]))
        left = max(0, int((run.max_rollouts - made[1]) // per_step))
        ends.append((step + left, f"{run.max_rollouts} completions"))
    return min(ends, key=lambda end: end[0])  # the step target wins a tie (listed first)


def budget_text(step: int, run: RunSection, recent: list[dict[str, Any]]) -> str:
    """`step 9/150`, `step 9/~52 (13 min budget)`, or before an estimate `step 2/150 or 13 min`."""
    allowed = steps_allowed(run, recent)
    if allowed is None:
        others = [f"{run.max_minutes:g} min"]
        if run.max_rollouts is not None:
            others.append(f"{run.max_rollouts} completions")
        return f"step {step}/{run.steps} or {' or '.join(others)}"
    steps, budget = allowed
    return f"step {step}/{steps}" if budget is None else f"step {step}/~{steps} ({budget} budget)"


def rollout_accuracy_text(record: dict[str, Any]) -> str:
    """`acc 16% | hinted acc 54%`: plain and hinted rollout accuracy, each only when the batch had it."""
    parts = [
        f"{label} {record[key]:.0%}"
        for key, label in (("plain_accuracy", "acc"), ("hinted_accuracy", "hinted acc"))
        if record.get(key) is not None
    ]
    return " | ".join(parts)


def step_line(record: dict[str, Any], budget: str, warmup_steps: int) -> str:
    """One step as a plain line: step against its budget, seconds, trainable groups, rollout accuracy
    (plain, hinted), learning rate."""
    groups = groups_in(record)
    trainable = groups - round(record.get("zero_advantage_fraction", 0.0) * groups)
    accuracy = rollout_accuracy_text(record)
    return (
        f"{budget} | {step_seconds(record):.1f} s | trainable {trainable}/{groups} groups "
        f"| {accuracy + ' | ' if accuracy else ''}{lr_text(record, warmup_steps)}"
    )


def summary_line(
    budget: str, accuracy: dict[str, float], last: dict[str, Any] | None, warmup_steps: int
) -> str:
    """The bar's description: held-out accuracy, rollout accuracy, sparsity, hint levels, and warm-up
    while it lasts."""
    if last is None:
        return f"{budget} | held-out {accuracy_text(accuracy)}"
    levels = " ".join(
        f"{lvl}:{n}" for lvl, n in sorted(last["groups_by_level"].items(), key=lambda kv: int(kv[0]))
    )
    rollouts = rollout_accuracy_text(last)
    warmup = f" | {lr_text(last, warmup_steps)}" if int(last["step"]) <= warmup_steps else ""
    return (
        f"{budget} | held-out {accuracy_text(accuracy)} | {rollouts + ' | ' if rollouts else ''}"
        f"difficult {last['difficult_fraction']:.0%} | zero-adv {last['zero_advantage_fraction']:.0%} "
        f"| hint levels {levels}{warmup}"
    )


class RunView:
    """The bar (TTY) or the lines (not a TTY) of one `ghpo run` invocation. Use as a context manager."""

    def __init__(self, cfg: RunConfig, *, out: TextIO | None = None, tty: bool | None = None):
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.run = cfg.run
        self.recent: list[dict[str, Any]] = []  # this invocation's step records, for the budget estimate
        self.warmup_steps = cfg.optim.warmup_steps
        self.max_empty = 20  # the trainer's run.max_empty_batches (ghpo run keeps its default)
        self.empty_warned = 0
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> RunView:
        return self

    def start(self, step: int, accuracy: dict[str, float], last: dict[str, Any] | None) -> None:
        if not self.tty:
            self.note(f"training: {self.budget(step)}, held-out {accuracy_text(accuracy)}")
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = (
            TextColumn("[bold]ghpo"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
        )
        self.progress = Progress(*columns, console=Console(file=self.out), transient=False)
        self.progress.start()
        description = summary_line(self.budget(step), accuracy, last, self.warmup_steps)
        self.task = self.progress.add_task(description, total=self.run.steps, completed=step)

    def budget(self, step: int) -> str:
        return budget_text(step, self.run, self.recent)

    def steps_done(self, records: list[dict[str, Any]], accuracy: dict[str, float]) -> None:
        """New step records: a line each (not a TTY), or the bar moved to the last one."""
        if records:
            self.empty_warned = 0
        for record in records:
            # A step redone after a restart replaces the records from it on.
            kept = [r for r in self.recent if r["step"] < record["step"]]
            self.recent = [*kept[-RECENT_STEPS:], record]
            if self.progress is None:
                self.note(step_line(record, self.budget(record["step"]), self.warmup_steps))
        if self.progress is not None and records:
            last = records[-1]
            allowed = steps_allowed(self.run, self.recent)
            description = summary_line(self.budget(last["step"]), accuracy, last, self.warmup_steps)
            total = allowed[0] if allowed else self.run.steps
            self.progress.update(self.task, completed=last["step"], total=total, description=description)

    def rolled_back(self, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def held_out(self, step: int, accuracy: dict[str, float]) -> None:
        if self.progress is None:
            self.note(f"{self.budget(step)} | held-out {accuracy_text(accuracy)}")

    def empty_batches(self, consecutive: int) -> None:
        """Warn when batches with nothing trainable keep coming (at 3 in a row, then at each doubling)."""
        if consecutive < max(EMPTY_WARN_FIRST, 2 * self.empty_warned):
            return
        self.empty_warned = consecutive
        self.note(
            f"warning: {consecutive} batches in a row had nothing trainable (every group's rewards were "
            f"equal: acknowledged, not trained); the trainer stops after {self.max_empty} in a row"
        )

    def note(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.out, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
