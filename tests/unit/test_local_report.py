"""The `ghpo run` report: Markdown figures and PNG plots from the run's history file."""

from __future__ import annotations

from ghpo.local.history import append_history, load_history
from ghpo.local.report import write_report


def _step(step, difficult, levels):
    return {
        "kind": "step",
        "step": step,
        "elapsed_s": float(step),
        "difficult_fraction": difficult,
        "zero_advantage_fraction": difficult / 2,
        "groups_by_level": levels,
        "plain_accuracy": 1 - difficult,
        "hinted_accuracy": 0.25,
        "reward_mean": 0.5,
        "loss": 0.0,
    }


def _eval(step, greedy, sampled=None):
    record = {"kind": "eval", "step": step, "accuracy_by_level": greedy}
    return record | ({"sampled_accuracy_by_level": sampled, "eval_samples": 4} if sampled else {})


def test_report_states_accuracy_change_per_level_and_draws_the_three_plots(tmp_path):
    append_history(tmp_path, _eval(0, {"1": 0.9, "3": 0.05}))
    for step in range(1, 5):
        append_history(tmp_path, _step(step, 0.6 - 0.1 * step, {"0": 6, "1": 2, "3": step % 2}))
    append_history(tmp_path, _eval(4, {"1": 0.95, "3": 0.2}))

    report = write_report(tmp_path, {"model": "tiny"}).read_text()

    assert "| 3 | 5.0% → 20.0% | +15.0 | — | — |" in report
    assert "| 1 | 90.0% → 95.0% | +5.0 | — | — |" in report
    assert "level 0: 24, level 1: 8, level 3: 2" in report
    # difficult fraction: steps 1-2 average 0.45, steps 3-4 average 0.25
    assert "| difficult fraction (all wrong without hints) | 0.450 | 0.250 |" in report
    for name in ("accuracy_per_level", "reward_sparsity", "hint_levels"):
        png = tmp_path / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{name}]({name}.png)" in report


def test_report_gives_greedy_and_sampled_accuracy_side_by_side(tmp_path):
    append_history(tmp_path, _eval(0, {"4": 0.02}, {"4": 0.03}))
    append_history(tmp_path, _step(1, 0.5, {"0": 8}))
    append_history(tmp_path, _eval(1, {"4": 0.40}, {"4": 0.155}))

    report = write_report(tmp_path, {}).read_text()

    assert "sampled at temperature 1 (mean of 4 per problem)" in report
    assert "| 4 | 2.0% → 40.0% | +38.0 | 3.0% → 15.5% | +12.5 |" in report


def test_resumed_run_keeps_the_last_record_of_a_repeated_step(tmp_path):
    append_history(tmp_path, _step(1, 0.5, {"0": 1}))
    append_history(tmp_path, _step(2, 0.5, {"0": 1}))
    append_history(tmp_path, _step(2, 0.1, {"0": 1}))  # step 2 again after --resume

    steps, evals = load_history(tmp_path)

    assert [s["step"] for s in steps] == [1, 2]
    assert steps[1]["difficult_fraction"] == 0.1
    assert evals == []


def test_report_without_history_says_so(tmp_path):
    report = write_report(tmp_path, {}).read_text()
    assert "No evaluation was recorded." in report
    assert "No training step was recorded." in report


def test_report_gives_the_median_seconds_of_each_step_phase(tmp_path):
    for step, (wait, train) in enumerate([(4.0, 1.0), (6.0, 3.0), (5.0, 2.0)], start=1):
        append_history(
            tmp_path, _step(step, 0.5, {"0": 8}) | {"wait_s": wait, "train_s": train, "sync_s": 0.25}
        )
    append_history(tmp_path, _step(4, 0.5, {"0": 8}))  # a step from a trainer that did not time phases

    report = write_report(tmp_path, {}).read_text()

    assert "## Where a step's time goes (median over 3 steps, seconds)" in report
    assert "| waiting for the batch (generation, hints, verification not yet done) | 5.00 |" in report
    assert "| training (forward, backward, optimizer) | 2.00 |" in report
    assert "| weight push to inference, new version announced to the rollout server | 0.25 |" in report


def test_report_gives_the_rescue_rate_of_each_hint_level_per_half_and_plots_hint_use(tmp_path):
    rescues = [{"1": [4, 1], "2": [3, 0]}, {"1": [4, 1]}, {"1": [2, 2], "3": [1, 1]}, {"1": [2, 0]}]
    for step, counts in enumerate(rescues, start=1):
        record = _step(step, 0.5, {"0": 4, "1": 2}) | {"rescues_by_level": counts}
        append_history(tmp_path, record | {"hinted_advantage_share": 0.1 * step})

    report = write_report(tmp_path, {}).read_text()

    assert "| 1 | 25% (2/8) | 50% (2/4) |" in report
    assert "| 2 | 0% (0/3) | — |" in report
    assert "| 3 | — | 100% (1/1) |" in report
    assert "0.150 in the first half, 0.350 in the second" in report
    assert (tmp_path / "hint_use.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![hint_use](hint_use.png)" in report


def test_report_lists_each_restart_with_the_time_until_the_next_step(tmp_path):
    for step in (1, 2, 3):
        append_history(tmp_path, _step(step, 0.5, {"0": 4}) | {"elapsed_s": 10.0 * step})
    restart = {
        "kind": "restart",
        "process": "rollout",
        "step": 2,
        "at_s": 21.0,
        "exit": "was killed by SIGKILL",
    }
    append_history(tmp_path, restart | {"back_off_s": 0.8, "ready_after_s": 6.5})
    append_history(tmp_path, _step(4, 0.5, {"0": 4}) | {"elapsed_s": 95.0})

    report = write_report(tmp_path, {}).read_text()

    assert "## Restarts (1)" in report
    assert "| rollout | 0.3 | 2 | was killed by SIGKILL | 0.8 | 6.5 | 9.0 |" in report


def test_report_names_rollout_accuracy_as_the_step_line_does(tmp_path):
    for step in range(1, 5):
        append_history(tmp_path, _step(step, 0.5, {"0": 6, "1": 2}))

    report = write_report(tmp_path, {}).read_text()

    assert "| acc: rollout accuracy without hints (plain rounds) | 0.500 | 0.500 |" in report
    assert "| hinted acc: rollout accuracy of the hinted rounds | 0.250 | 0.250 |" in report
    assert "reward" not in report.lower().replace("reward sparsity", "").replace("reward_sparsity", "")
