"""`ghpo run`'s progress: the step shown against the budget that will stop the run (estimated once a few
steps are timed), rollout accuracy named `acc` (plain) and `hinted acc`, never a bare "reward"; in a log
file a plain line per step with its seconds, trainable groups and learning rate (warm-up visible),
held-out lines, and a warning while batches have nothing trainable."""

from __future__ import annotations

import io

from ghpo.local.config import parse_run_config
from ghpo.local.progress import RunView, summary_line

RECORD = {
    "step": 3,
    "groups_by_level": {"0": 48, "1": 16},
    "zero_advantage_fraction": 0.25,
    "difficult_fraction": 0.4,
    "plain_accuracy": 0.16,
    "hinted_accuracy": 0.54,
    "reward_mean": 0.7413,
    "lr": 1.8e-4,
    "wait_s": 8.0,
    "train_s": 1.5,
    "sync_s": 0.5,
}


def lines_of(run: dict, records: list[dict]) -> list[str]:
    """The lines a `ghpo run` with this [run] section prints (not a TTY) for these step records."""
    out = io.StringIO()
    cfg = parse_run_config({"run": run, "optim": {"warmup_steps": 2}})
    with RunView(cfg, out=out, tty=False) as view:
        view.steps_done(records, {})
    return out.getvalue().splitlines()


def timed(steps: range, *, seconds_each: float = 10.0, completions_each: int = 0) -> list[dict]:
    """Step records as `ghpo run` copies them: `elapsed_s` since it started, the rollout counters."""
    return [
        RECORD
        | {"step": s, "elapsed_s": 60.0 + seconds_each * s, "rollout": {"completions_generated": 512 * s}}
        for s in steps
    ]


def test_a_step_line_names_plain_and_hinted_rollout_accuracy_and_no_bare_reward():
    line = lines_of({"steps": 150}, [RECORD])[0]
    assert line == (
        "step 3/150 or 13 min | 10.0 s | trainable 48/64 groups | acc 16% | hinted acc 54% | lr 1.8e-04"
    )
    assert "reward" not in line and "74" not in line  # accuracy + format, read as "74% right"
    plain_only = lines_of({"steps": 150}, [RECORD | {"step": 1, "hinted_accuracy": None}])[0]
    assert "| acc 16% | lr 1.8e-04 (warm-up 1/2)" in plain_only and "hinted" not in plain_only


def test_the_step_is_shown_against_the_time_budget_once_it_binds():
    # 10 s a step, 60 s of start-up: 13 minutes leave (780 - 60) / 10 = 72 steps, fewer than 150.
    lines = lines_of({"steps": 150, "max_minutes": 13}, timed(range(1, 5)))
    assert [line.split(" | ")[0] for line in lines] == [
        "step 1/150 or 13 min",
        "step 2/150 or 13 min",
        "step 3/~72 (13 min budget)",
        "step 4/~72 (13 min budget)",
    ]


def test_the_step_target_is_shown_plainly_when_it_comes_first():
    lines = lines_of({"steps": 40, "max_minutes": 60}, timed(range(1, 5)))
    assert lines[-1].startswith("step 4/40 | ")


def test_a_generation_budget_that_binds_first_is_the_one_shown():
    # 512 completions a step: 20480 completions are spent at step 40, long before 150 steps or 60 min.
    lines = lines_of({"steps": 150, "max_minutes": 60, "max_rollouts": 20480}, timed(range(1, 5)))
    assert lines[0].startswith("step 1/150 or 60 min or 20480 completions | ")
    assert lines[-1].startswith("step 4/~40 (20480 completions budget) | ")


def test_the_terminal_bar_shows_rollout_accuracy_and_warm_up_while_it_lasts():
    text = summary_line("step 1/150 or 13 min", {"1": 0.9}, RECORD | {"step": 1}, 2)
    assert "| acc 16% | hinted acc 54% |" in text and "(warm-up 1/2)" in text
    assert "warm-up" not in summary_line("step 6/150", {"1": 0.9}, RECORD | {"step": 6}, 2)
    out = io.StringIO()
    cfg = parse_run_config({"run": {"steps": 150, "max_minutes": 13}})
    with RunView(cfg, out=out, tty=True) as view:
        view.start(0, {"1": 0.9}, None)
        view.steps_done(timed(range(1, 5)), {"1": 0.9})
        assert view.progress.tasks[0].total == 72  # the bar's end is the budget's, not run.steps


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
    assert lines[0] == "training: step 0/10 or 13 min, held-out L1 90% L2 40%"
    assert lines[1].startswith("step 1/10 or 13 min | 10.0 s | trainable 48/64 groups")
    assert "(warm-up 1/2)" in lines[1]
    assert lines[3] == "step 2/10 or 13 min | held-out L1 93% L2 41%"
    warnings = [line for line in lines if line.startswith("warning:")]
    assert [w.split()[1] for w in warnings] == ["3", "6", "3"]  # at 3, at its doubling, again after a step
    assert "nothing trainable" in warnings[0]
