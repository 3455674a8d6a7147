"""The run's history file (`history.jsonl`): one JSON object per line, steps, evaluations and restarts,
kept in step with what the final model was trained on.

The trainer appends one line per optimizer step to `trainer-steps.jsonl`; a trainer that comes back from
a checkpoint (a resume, or a restart after a crash) redoes the steps after it and appends them again, so
that file can hold a step twice: the later line is the one the model kept. `HistoryCopy` copies those
lines into `history.jsonl` with that rule applied to the file itself: a step that arrives again (a
step number at or below the last one copied, trained on another batch) rolls the history back first,
dropping the step and evaluation records from that step on, so every step is in the file once, with the
record of the batch the final model was trained on. Restart records (`kind: restart`) are events, not
steps: they stay. How far `trainer-steps.jsonl` has been read is kept beside it
(`trainer-steps.read`), so a resumed `ghpo run` copies only what it has not seen.

What it deliberately does not do: compute figures (the trainer and the evaluator do) or draw the report
(report.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

HISTORY_FILE = "history.jsonl"
TRAINER_STEPS_FILE = "trainer-steps.jsonl"
READ_OFFSET_FILE = "trainer-steps.read"


def append_history(run_dir: Path, record: Mapping[str, Any]) -> None:
    with (Path(run_dir) / HISTORY_FILE).open("a") as out:
        out.write(json.dumps(record, sort_keys=True) + "\n")


def read_records(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / HISTORY_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_history(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(step records, eval records), each sorted by step; a step recorded twice keeps the later record."""
    steps: dict[int, dict[str, Any]] = {}
    evals: dict[int, dict[str, Any]] = {}
    for record in read_records(run_dir):
        if record["kind"] in ("step", "eval"):
            (steps if record["kind"] == "step" else evals)[int(record["step"])] = record
    return [steps[k] for k in sorted(steps)], [evals[k] for k in sorted(evals)]


def load_restarts(run_dir: Path) -> list[dict[str, Any]]:
    return [r for r in read_records(run_dir) if r["kind"] == "restart"]


def trained_groups(steps: list[dict[str, Any]]) -> tuple[int, int]:
    """(groups the steps trained on, groups acknowledged untrained before them: nothing trainable)."""
    trained = sum(sum(int(n) for n in s.get("groups_by_level", {}).values()) for s in steps)
    return trained, sum(int(s.get("skipped_groups") or 0) for s in steps)


def _rewrite(run_dir: Path, records: list[dict[str, Any]]) -> None:
    path = Path(run_dir) / HISTORY_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    os.replace(tmp, path)  # atomic: a reader sees the old file or the new one


class HistoryCopy:
    """Copies the trainer's step lines into the history as they are appended, redone steps once."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.source = self.run_dir / TRAINER_STEPS_FILE
        self.offset_file = self.run_dir / READ_OFFSET_FILE
        self.offset = int(self.offset_file.read_text()) if self.offset_file.exists() else 0
        steps, _ = load_history(self.run_dir)
        self.batches = {int(s["step"]): s.get("batch_id") for s in steps}  # step -> batch it trained on

    @property
    def last_step(self) -> int:
        return max(self.batches, default=0)

    def _new_lines(self) -> list[dict[str, Any]]:
        if not self.source.exists():
            return []
        with self.source.open() as f:
            f.seek(self.offset)
            text = f.read()
        complete, _, _partial = text.rpartition("\n")  # a line being written is read next time
        if not complete:
            return []
        self.offset += len(complete.encode()) + 1
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def copy(self, extra: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Copy the new step lines (each with `extra` fields added); returns the records written. A step
        that comes again from another batch first rolls the history back to before it."""
        written = []
        for line in self._new_lines():
            step, batch = int(line["step"]), line.get("batch_id")
            if step in self.batches and self.batches[step] == batch:
                continue  # copied already (the read offset was saved after the copy)
            if step <= self.last_step:
                self.roll_back(step)
            record = {"kind": "step", **line, **extra}
            append_history(self.run_dir, record)
            self.batches[step] = batch
            written.append(record)
        self.offset_file.write_text(str(self.offset))
        return written

    def roll_back(self, step: int) -> None:
        """Drop the step and evaluation records from `step` on (their model was not kept)."""
        kept = [
            r for r in read_records(self.run_dir) if r["kind"] not in ("step", "eval") or r["step"] < step
        ]
        _rewrite(self.run_dir, kept)
        self.batches = {s: b for s, b in self.batches.items() if s < step}
