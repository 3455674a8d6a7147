"""How long `ghpo run` waits for the trainer when it stops it, and what it says when the wait runs out.

A stop (Ctrl-C, SIGTERM, a time or generation budget) sends the trainer SIGTERM: it finishes the step it
is on, writes a checkpoint and exits. How long that takes depends on the model, so the grace is measured,
not fixed: the larger of `[run] stop_grace_s` and 2 x (median step seconds over the last 20 steps + the
last checkpoint's seconds), as the trainer's step lines report them. If the trainer is still running
when the grace is over it is killed, and the user is told which steps were lost (those trained after
the latest checkpoint) and from which checkpoint `ghpo run --resume` continues.

What it deliberately does not do: send signals (processes.py) or decide to stop (run.py).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECENT_STEPS = 20


@dataclass(frozen=True)
class Grace:
    seconds: float
    why: str


def stop_grace(floor_s: float, steps: list[dict[str, Any]]) -> Grace:
    """The trainer's grace from its measured step and checkpoint times, at least `floor_s`."""
    recent = steps[-RECENT_STEPS:]
    step_s = (
        statistics.median(sum(s.get(k, 0.0) for k in ("wait_s", "train_s", "sync_s")) for s in recent)
        if recent
        else 0.0
    )
    checkpoint_s = next(
        (s["checkpoint_s"] for s in reversed(steps) if s.get("checkpoint_s") is not None), 0.0
    )
    measured = 2 * (step_s + checkpoint_s)
    why = f"median step {step_s:.1f} s, last checkpoint {checkpoint_s:.1f} s"
    if measured >= floor_s:
        return Grace(measured, f"2 x ({why})")
    return Grace(floor_s, f"[run] stop_grace_s; {why}")


def latest_checkpoint(run_dir: Path) -> tuple[str, int] | None:
    """(folder name, step) of the trainer's latest complete checkpoint in the run folder, or None."""
    pointer = Path(run_dir) / "checkpoints" / "latest"
    try:
        name = pointer.read_text().strip()
    except OSError:
        return None
    digits = name.rpartition("-")[2]
    return (name, int(digits)) if digits.isdigit() else None


def stopping_line(grace: Grace, last_step: int) -> str:
    return (
        f"stopping: giving the trainer up to {grace.seconds:.0f} s to finish step {last_step + 1} and "
        f"write a checkpoint ({grace.why})"
    )


def stopped_line(run_dir: Path, last_step: int, killed: bool, grace: Grace) -> str:
    """What the stop left: the checkpoint a resume continues from, and the steps lost if it was killed."""
    latest = latest_checkpoint(run_dir)
    where = f"checkpoint {latest[0]} (step {latest[1]})" if latest else "no checkpoint (it starts over)"
    resume = f"`ghpo run --resume --run-dir {run_dir}` continues from {where}"
    if not killed:
        return f"the trainer stopped cleanly; {resume}"
    saved = latest[1] if latest else 0
    lost = (
        f"steps {saved + 1}-{last_step} (trained after it) are lost"
        if last_step > saved
        else "no trained step is lost"
    )
    return f"the trainer did not stop within {grace.seconds:.0f} s and was killed: {lost}; {resume}"
