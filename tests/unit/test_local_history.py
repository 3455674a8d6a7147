"""The run's history file follows what the final model was trained on: a step redone after a resume or a
restart replaces its old record in the file itself, evaluations of the lost steps go, restarts stay, and
a resumed `ghpo run` copies only the trainer lines it has not seen."""

from __future__ import annotations

import json
from pathlib import Path

from ghpo.local.history import (
    TRAINER_STEPS_FILE,
    HistoryCopy,
    append_history,
    load_history,
    read_records,
    trained_groups,
)


def _trainer_line(run_dir: Path, step: int, batch: str, groups: int = 4, skipped: int = 0) -> None:
    line = {"step": step, "batch_id": batch, "groups_by_level": {"0": groups}, "skipped_groups": skipped}
    with (run_dir / TRAINER_STEPS_FILE).open("a") as out:
        out.write(json.dumps(line) + "\n")


def test_a_redone_step_replaces_its_record_in_the_file_and_drops_the_lost_evaluations(tmp_path):
    append_history(tmp_path, {"kind": "eval", "step": 0, "accuracy_by_level": {"1": 0.5}})
    copy = HistoryCopy(tmp_path)
    for step in (1, 2, 3, 4):
        _trainer_line(tmp_path, step, f"b{step}")
    copy.copy({})
    append_history(tmp_path, {"kind": "eval", "step": 4, "accuracy_by_level": {"1": 0.6}})
    append_history(tmp_path, {"kind": "restart", "process": "trainer", "step": 4, "at_s": 9.0})
    # The trainer comes back from its step-2 checkpoint and redoes steps 3 and 4 on new batches.
    _trainer_line(tmp_path, 3, "b7")
    _trainer_line(tmp_path, 4, "b8")
    _trainer_line(tmp_path, 5, "b9")
    written = copy.copy({"elapsed_s": 1.0})

    assert [r["batch_id"] for r in written] == ["b7", "b8", "b9"]
    records = read_records(tmp_path)
    steps = [(r["step"], r["batch_id"]) for r in records if r["kind"] == "step"]
    assert steps == [(1, "b1"), (2, "b2"), (3, "b7"), (4, "b8"), (5, "b9")]  # each step once, the later
    assert [r["step"] for r in records if r["kind"] == "eval"] == [0]  # step 4's model is gone
    assert [r["kind"] for r in records].count("restart") == 1  # events stay
    assert copy.last_step == 5


def test_a_resumed_run_copies_only_what_it_has_not_seen(tmp_path):
    first = HistoryCopy(tmp_path)
    for step, batch in ((1, "b1"), (2, "b2"), (3, "b3"), (2, "b4"), (3, "b5")):
        _trainer_line(tmp_path, step, batch)
    first.copy({})
    _trainer_line(tmp_path, 4, "b6")
    resumed = HistoryCopy(tmp_path)  # a new `ghpo run --resume` reads on from where the last one stopped
    assert [r["batch_id"] for r in resumed.copy({})] == ["b6"]
    steps, _ = load_history(tmp_path)
    assert [(s["step"], s["batch_id"]) for s in steps] == [(1, "b1"), (2, "b4"), (3, "b5"), (4, "b6")]


def test_lines_copied_before_the_read_offset_was_saved_are_not_copied_twice(tmp_path):
    copy = HistoryCopy(tmp_path)
    _trainer_line(tmp_path, 1, "b1")
    copy.copy({})
    (tmp_path / "trainer-steps.read").unlink()  # killed after appending, before saving the offset
    assert HistoryCopy(tmp_path).copy({}) == []
    assert len(read_records(tmp_path)) == 1


def test_trained_groups_count_the_steps_groups_and_those_acknowledged_untrained():
    steps = [
        {"step": 1, "groups_by_level": {"0": 3, "1": 1}, "skipped_groups": 0},
        {"step": 2, "groups_by_level": {"0": 4}, "skipped_groups": 8},
    ]
    assert trained_groups(steps) == (8, 8)
