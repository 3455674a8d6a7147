"""What `ghpo run` shows while it trains: a live bar in a terminal, one plain line per step in a log file.

In a terminal (stdout is a TTY) a rich progress bar carries the step, held-out accuracy per level, the
difficult and zero-advantage fractions, the hint levels and, during warm-up, the learning rate. Anywhere
else (`ghpo run > run.log`, nohup, CI) a bar would print only its first and last state, so each step is
one line instead: step, seconds, trainable groups (those whose advantages are not all 0), mean reward and
learning rate (`lr 1.2e-04 (warm-up 3/5)` while it warms up), and a held-out line when the set is
evaluated. Either way, notes (restarts, stops) are plain lines, and batches with nothing trainable are
warned about while they last: the trainer acknowledges them without a step, so without the warning the
run would look stalled.

What it deliberately does not do: decide anything (run.py) or read files (history.py).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ghpo.local.config import RunConfig
from ghpo.local.report import level_order

EMPTY_WARN_FIRST = 3  # consecutive batches with nothing trainable before the first warning


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


def step_line(record: dict[str, Any], steps: int, warmup_steps: int) -> str:
    """One step as a plain line: step, seconds, trainable groups, reward, learning rate."""
    groups = groups_in(record)
    trainable = groups - round(record.get("zero_advantage_fraction", 0.0) * groups)
    seconds = sum(record.get(key, 0.0) for key in ("wait_s", "train_s", "sync_s"))
    return (
        f"step {record['step']}/{steps} | {seconds:.1f} s | trainable {trainable}/{groups} groups "
        f"| reward {record.get('reward_mean', 0.0):.2f} | {lr_text(record, warmup_steps)}"
    )


def summary_line(
    step: int, steps: int, accuracy: dict[str, float], last: dict[str, Any] | None, warmup_steps: int
) -> str:
    """The bar's description: held-out accuracy, sparsity and hint levels, and warm-up while it lasts."""
    if last is None:
        return f"step {step}/{steps} | held-out {accuracy_text(accuracy)}"
    levels = " ".join(
        f"{lvl}:{n}" for lvl, n in sorted(last["groups_by_level"].items(), key=lambda kv: int(kv[0]))
    )
    warmup = f" | {lr_text(last, warmup_steps)}" if int(last["step"]) <= warmup_steps else ""
    return (
        f"step {step}/{steps} | held-out {accuracy_text(accuracy)} | difficult {last['difficult_fraction']:.0%} "
        f"| zero-adv {last['zero_advantage_fraction']:.0%} | hint levels {levels}{warmup}"
    )


class RunView:
    """The bar (TTY) or the lines (not a TTY) of one `ghpo run` invocation. Use as a context manager."""

    def __init__(self, cfg: RunConfig, *, out: TextIO | None = None, tty: bool | None = None):
        self.out = out or sys.stdout
        self.tty = self.out.isatty() if tty is None else tty
        self.steps = cfg.run.steps
        self.warmup_steps = cfg.optim.warmup_steps
        self.max_empty = 20  # the trainer's run.max_empty_batches (ghpo run keeps its default)
        self.empty_warned = 0
        self.progress: Any = None
        self.task: Any = None

    def __enter__(self) -> RunView:
        return self

    def start(self, step: int, accuracy: dict[str, float], last: dict[str, Any] | None) -> None:
        if not self.tty:
            self.note(f"training: step {step}/{self.steps}, held-out {accuracy_text(accuracy)}")
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
        description = summary_line(step, self.steps, accuracy, last, self.warmup_steps)
        self.task = self.progress.add_task(description, total=self.steps, completed=step)

    def steps_done(self, records: list[dict[str, Any]], accuracy: dict[str, float]) -> None:
        """New step records: a line each (not a TTY), or the bar moved to the last one."""
        if records:
            self.empty_warned = 0
        if self.progress is None:
            for record in records:
                self.note(step_line(record, self.steps, self.warmup_steps))
            return
        if records:
            last = records[-1]
            description = summary_line(last["step"], self.steps, accuracy, last, self.warmup_steps)
            self.progress.update(self.task, completed=last["step"], description=description)

    def rolled_back(self, step: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def held_out(self, step: int, accuracy: dict[str, float]) -> None:
        if self.progress is None:
            self.note(f"step {step}/{self.steps} | held-out {accuracy_text(accuracy)}")

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
