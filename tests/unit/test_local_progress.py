"""`ghpo run`'s progress in a log file: a plain line per step with its seconds, trainable groups, reward
and learning rate (warm-up visible), held-out lines, and a warning while batches have nothing trainable."""

from __future__ import annotations

import io

from ghpo.local.config import parse_run_config
from ghpo.local.progress import RunView, step_line, summary_line

RECORD = {
    "step": 3,
    "groups_by_level": {"0": 48, "1": 16},
    "zero_advantage_fraction": 0.25,
    "difficult_fraction": 0.4,
    "reward_mean": 0.4213,
    "lr": 1.8e-4,
    "wait_s": 2.0,
    "train_s": 1.5,
    "sync_s": 0.6,
}


def test_a_step_is_one_plain_line_with_seconds_trainable_groups_reward_and_warm_up():
    assert step_line(RECORD, 150, 5) == (
        "step 3/150 | 4.1 s | trainable 48/64 groups | reward 0.42 | lr 1.8e-04 (warm-up 3/5)"
    )
    assert step_line(RECORD | {"step": 6}, 150, 5).endswith("| lr 1.8e-04")  # warm-up over


def test_the_terminal_bar_shows_warm_up_while_it_lasts():
    assert "(warm-up 3/5)" in summary_line(3, 150, {"1": 0.9}, RECORD, 5)
    assert "warm-up" not in summary_line(6, 150, {"1": 0.9}, RECORD | {"step": 6}, 5)


def test_without_a_terminal_each_step_and_evaluation_is_a_line_and_empty_batches_are_warned_about():
    out = io.StringIO()
    cfg = parse_run_config({"run": {"steps": 10}, "optim": {"warmup_steps": 2}})
    with RunView(cfg, out=out, tty=False) as view:
        view.start(0, {"1": 0.9, "2": 0.4}, None)
        view.steps_done([RECORD | {"step": 1}, RECORD | {"step": 2}], {})
        view.held_out(2, {"1": 0.93, "2": 0.41})
        for consecutive in (1, 2, 3, 4, 5, 6, 7):
            view.empty_batches(consecutive)
        view.steps_done([RECORD | {"step": 3}], {})
        view.empty_batches(3)
    lines = out.getvalue().splitlines()
    assert lines[0] == "training: step 0/10, held-out L1 90% L2 40%"
    assert lines[1].startswith("step 1/10 | 4.1 s | trainable 48/64 groups") and "(warm-up 1/2)" in lines[1]
    assert lines[3] == "step 2/10 | held-out L1 93% L2 41%"
    warnings = [line for line in lines if line.startswith("warning:")]
    assert [w.split()[1] for w in warnings] == ["3", "6", "3"]  # at 3, at its doubling, again after a step
    assert "nothing trainable" in warnings[0]
