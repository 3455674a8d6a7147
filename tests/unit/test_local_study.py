"""The study's machinery without running anything heavy: the run config's new keys, the generation-budget
stop rule, the rollout env wiring, and the aggregation of realistic `ghpo run` folders into tables,
results.json and plots."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from ghpo.local.config import RunConfigError, parse_run_config
from ghpo.local.history import append_history
from ghpo.local.run import CONFIG_FILE, END_FILE, stop_reason
from ghpo.local.stack import Endpoints, service_specs
from ghpo.local.study import (
    METHOD_TEXT,
    SETTINGS_FILE,
    STUDY_FILE,
    common_eval_step,
    run_figures,
    speed_to_target,
)
from ghpo.local.study_report import aggregate, where_ghpo_does_not_win

BUDGET = 400
G, B = 4, 4


def test_bad_budget_and_dynamic_sampling_values_name_their_keys():
    with pytest.raises(RunConfigError, match=r"rollout\.dynamic_sampling"):
        parse_run_config({"rollout": {"dynamic_sampling": "sometimes"}})
    with pytest.raises(RunConfigError, match=r"run\.max_rollouts: .*greater than or equal to 1"):
        parse_run_config({"run": {"max_rollouts": 0}})
    cfg = parse_run_config({"run": {"max_rollouts": 96}, "rollout": {"dynamic_sampling": True}})
    assert cfg.run.max_rollouts == 96 and cfg.rollout.dynamic_sampling
    assert parse_run_config({}).run.max_rollouts is None  # no budget unless asked for


def test_dynamic_sampling_reaches_the_rollout_server_environment(tmp_path):
    ends = Endpoints(
        "redis://127.0.0.1:1/0", "t", dict.fromkeys(("verifier", "broker", "inference", "rollout"), 1)
    )
    for value, text in ((True, "true"), (False, "false")):
        cfg = parse_run_config({"rollout": {"dynamic_sampling": value}})
        rollout = next(s for s in service_specs(cfg, tmp_path, tmp_path, ends) if s.name == "rollout")
        assert rollout.env["GHPO_ROLLOUT_DYNAMIC_SAMPLING"] == text


def test_the_run_stops_once_the_generation_budget_is_spent_and_not_before():
    cfg = parse_run_config({"run": {"max_rollouts": 100, "max_minutes": 10}})
    deadline = 1000.0
    assert stop_reason(cfg, 3, {"completions_generated": 99}, 10.0, deadline) is None
    reason = stop_reason(cfg, 4, {"completions_generated": 100}, 10.0, deadline)
    assert reason is not None and "100 completions" in reason and "step 4" in reason
    assert "time budget" in stop_reason(cfg, 2, {"completions_generated": 5}, deadline + 1, deadline)
    unbounded = parse_run_config({})
    assert stop_reason(unbounded, 9, {"completions_generated": 10**9}, 10.0, deadline) is None


def _counters(generated: int, sampled: int, difficult: int, no_signal: int, acked: int) -> dict:
    return {
        "completions_generated": generated,
        "groups_sampled": sampled,
        "difficult_groups": difficult,
        "no_signal_groups": no_signal,
        "acked_groups": acked,
        "groups_dropped": {"no_signal": no_signal} if no_signal else {},
    }


def _write_run(root: Path, method: str, seed: int, *, final: dict, grad: list, no_signal_step: int) -> Path:
    """A run folder as `ghpo run` leaves it: config, history (evals + steps with counters), end.json."""
    run_dir = root / f"{method}-s{seed}"
    run_dir.mkdir(parents=True)
    config = parse_run_config(
        {"run": {"max_rollouts": BUDGET}, "rollout": {"group_size": G, "batch_groups": B}}
    )
    (run_dir / CONFIG_FILE).write_text(config.model_dump_json(indent=2))
    (run_dir / STUDY_FILE).write_text(json.dumps({"method": method, "seed": seed}))
    start = _counters(32, 8, 4, no_signal_step, 0)
    append_history(
        run_dir,
        {
            "kind": "eval",
            "step": 0,
            "elapsed_s": 40.0,
            "accuracy_by_level": {"1": 0.5, "2": 0.1},
            "rollout": start,
        },
    )
    generated = sampled = difficult = silent = 0
    for step, norm in enumerate(grad, start=1):
        generated, sampled = 32 + 16 * step * 2, 8 + 4 * step * 2
        difficult, silent = 4 + 2 * step, no_signal_step * (step + 1)
        append_history(
            run_dir,
            {
                "kind": "step",
                "step": step,
                "elapsed_s": 40.0 + 10 * step,
                "grad_norm": norm,
                "loss": 0.01,
                "difficult_fraction": 0.5,
                "zero_advantage_fraction": 0.25 if method != "grpo-dapo" else 0.0,
                "groups_by_level": {"0": 3, "1": 1},
                "plain_accuracy": 0.05 * step,
                "hinted_accuracy": 0.2,
                "hinted_advantage_share": None if step == 1 else 0.25,
                "reward_mean": 0.4,
                "rollout": _counters(generated, sampled, difficult, silent, 4 * step),
            },
        )
    end_counters = _counters(generated, sampled, difficult, silent, 4 * len(grad))
    append_history(
        run_dir,
        {
            "kind": "eval",
            "step": len(grad),
            "elapsed_s": 99.0,
            "accuracy_by_level": final,
            "rollout": end_counters,
        },
    )
    end = {
        "stop_reason": f"generation budget of {BUDGET} completions spent at step {len(grad)}",
        "step": len(grad),
        "elapsed_s": 90.0,
        "trainer_started_s": 45.0,
        "rollout": end_counters,
    }
    (run_dir / END_FILE).write_text(json.dumps(end))
    return run_dir


def _study(root: Path) -> None:
    finals = {
        "grpo": [{"1": 0.9, "2": 0.2}, {"1": 0.8, "2": 0.3}],
        "grpo-dapo": [{"1": 0.85, "2": 0.25}, {"1": 0.85, "2": 0.35}],
        "ghpo": [{"1": 0.7, "2": 0.6}, {"1": 0.7, "2": 0.62}],
        "ghpo-memory": [{"1": 0.9, "2": 0.3}, {"1": 0.9, "2": 0.5}],
    }
    for method, per_seed in finals.items():
        for seed, final in enumerate(per_seed):
            grad = [1.0, 2.0, 3.0] if seed == 0 else [1.0, 1.0, 1.0]
            _write_run(
                root, method, seed, final=final, grad=grad, no_signal_step=1 if method != "ghpo" else 0
            )


def test_run_figures_come_from_the_history_and_the_rollout_counters(tmp_path):
    run_dir = _write_run(
        tmp_path, "grpo", 0, final={"1": 0.9, "2": 0.2}, grad=[1.0, 2.0, 3.0], no_signal_step=1
    )
    figures = run_figures(run_dir)
    assert figures["accuracy_start"] == {"1": 0.5, "2": 0.1}
    assert figures["accuracy_final"] == {"1": 0.9, "2": 0.2}
    assert figures["accuracy_final_mean"] == pytest.approx(0.55)
    assert figures["grad_norm_variance"] == pytest.approx(statistics.pvariance([1.0, 2.0, 3.0]))
    # end counters: 128 completions, 32 groups sampled of which 4 without signal, 10 difficult
    assert figures["completions_generated"] == 128 and figures["budget"] == BUDGET
    assert figures["completions_per_signal_group"] == pytest.approx(128 / 28)
    assert figures["no_signal_fraction_sampled"] == pytest.approx(4 / 32)
    assert figures["difficult_fraction_sampled"] == pytest.approx(10 / 32)
    assert figures["zero_advantage_fraction_trained"] == pytest.approx(0.25)
    assert figures["wall_time_s"] == pytest.approx(45.0)  # from the trainer's start to its stop
    # between consecutive lines 8 groups were sampled, 2 of them difficult and 1 without signal
    assert figures["sampled_curve"][0] == {"completions": 96, "difficult": 0.25, "no_signal": 0.125}
    assert [p["completions"] for p in figures["accuracy_curve"]] == [32, 128]


def test_the_mechanism_figures_average_the_first_and_last_steps_and_skip_steps_without_rows(tmp_path):
    run_dir = _write_run(tmp_path, "ghpo", 0, final={"1": 0.9, "2": 0.2}, grad=[1.0] * 12, no_signal_step=0)
    figures = run_figures(run_dir)
    assert figures["plain_rollout_accuracy_first"] == pytest.approx(0.15)  # steps 1-5: 0.05 .. 0.25
    assert figures["plain_rollout_accuracy_last"] == pytest.approx(0.5)  # steps 8-12: 0.40 .. 0.60
    assert figures["hinted_rollout_accuracy"] == pytest.approx(0.2)
    assert figures["hinted_advantage_share"] == pytest.approx(0.25)  # step 1 had no hinted rows: skipped


def test_aggregation_writes_mean_and_spread_per_method_and_says_where_ghpo_does_not_win(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    _study(runs)
    end = json.loads((runs / "ghpo-memory-s1" / END_FILE).read_text())
    end["stop_reason"] = "time budget of 120.0 min spent at step 3"
    (runs / "ghpo-memory-s1" / END_FILE).write_text(json.dumps(end))
    readme = aggregate(runs, out)
    results = json.loads((out / "results.json").read_text())
    summary = results["summary"]
    assert sorted(summary) == ["ghpo", "ghpo-memory", "grpo", "grpo-dapo"] and len(results["runs"]) == 8
    level1 = summary["grpo"]["accuracy_final"]["1"]
    assert level1["mean"] == pytest.approx(0.85) and level1["std"] == pytest.approx(
        statistics.stdev([0.9, 0.8])
    )
    assert level1["n"] == 2 and summary["grpo"]["seeds"] == [0, 1]
    assert summary["ghpo"]["no_signal_fraction_sampled"]["mean"] == 0.0
    text = readme.read_text()
    assert "| grpo | 2 | 0.850 ± 0.071 [0.800–0.900] | 0.250 ± 0.071 [0.200–0.300] |" in text
    # level by level against each baseline, with the seed ranges: ghpo's level 2 sits above every grpo seed
    assert (
        "- ghpo vs grpo, level 2: +36.0 points ([0.600–0.620] vs [0.200–0.300]; seed ranges apart, GHPO above)"
        in text
    )
    assert (
        "- ghpo-memory vs grpo-dapo, level 2: +10.0 points ([0.300–0.500] vs [0.250–0.350]; seed ranges overlap)"
        in text
    )
    # every run was evaluated at step 3, so the methods are also compared there
    assert "## Held-out accuracy at equal optimizer steps (step 3, the last every run reached)" in text
    assert "- ghpo-memory-s1: time budget of 120.0 min spent at step 3" in text  # not at an equal budget
    assert "- ghpo-memory-s0:" not in text
    assert "Under ghpo-memory a prompt that starts hinted has no unhinted round" in text
    verdicts = text.split("## Where GHPO does not win")[1]
    # ghpo is worse on level 1 than both baselines; ghpo-memory's level-2 gain over grpo-dapo is within spread
    assert "ghpo vs grpo, held-out accuracy, level 1: 0.7 ± 0 vs 0.85 ± 0.0707 — worse" in verdicts
    assert "ghpo vs grpo-dapo, held-out accuracy, level 1" in verdicts
    assert (
        "ghpo-memory vs grpo-dapo, held-out accuracy, level 2" in verdicts
        and "within the seed spread" in verdicts
    )
    assert "ghpo vs grpo, held-out accuracy, level 2" not in verdicts  # a clear win is not listed
    for name in ("accuracy_final.png", "over_training.png", "accuracy_per_level.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_study_of_some_methods_describes_only_those(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    for method, final in (("grpo", {"1": 0.9, "2": 0.5}), ("ghpo", {"1": 0.8, "2": 0.4})):
        _write_run(runs, method, 0, final=final, grad=[1.0, 2.0], no_signal_step=1)

    text = aggregate(runs, out).read_text()

    assert f"Methods: grpo (broker policy none), ghpo ({METHOD_TEXT['ghpo']})." in text
    assert "grpo-dapo" not in text and "ghpo-memory" not in text
    assert "has no unhinted round" not in text  # no method here starts a prompt hinted


def test_methods_that_took_different_steps_are_compared_at_the_last_step_all_evaluated():
    runs = [
        {"accuracy_by_step": {"0": {}, "20": {}, "40": {}, "57": {}}},
        {"accuracy_by_step": {"0": {}, "20": {}, "31": {}}},
    ]
    assert common_eval_step(runs) == 20
    assert common_eval_step([{"accuracy_by_step": {"0": {}}}]) is None  # only the start: nothing to compare


def test_means_that_differ_only_by_float_rounding_are_called_equal():
    def entry(level1: float) -> dict:
        return {"accuracy_final": {"1": {"mean": level1, "std": 0.0, "n": 3}}}

    # 0.8 averaged over three seeds in another order: 0.8000000000000002
    lines = where_ghpo_does_not_win({"ghpo": entry(0.1 + 0.7), "grpo": entry(0.8)})
    assert lines == ["- ghpo vs grpo, held-out accuracy, level 1: 0.8 ± 0 vs 0.8 ± 0 — equal"]


def test_aggregation_refuses_unfinished_runs_and_mixed_budgets(tmp_path):
    _study(tmp_path / "runs")
    (tmp_path / "runs" / "ghpo-s1" / END_FILE).unlink()
    with pytest.raises(ValueError, match="ghpo-s1: the run did not finish"):
        aggregate(tmp_path / "runs", tmp_path / "out")
    mixed = tmp_path / "mixed"
    _study(mixed)
    config = json.loads((mixed / "grpo-s0" / CONFIG_FILE).read_text())
    config["run"]["max_rollouts"] = BUDGET + 1
    (mixed / "grpo-s0" / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="different generation budgets"):
        aggregate(mixed, tmp_path / "out")


def test_a_study_evaluated_on_a_set_without_levels_aggregates_under_all(tmp_path):
    # run.eval = "heldout" or "benchmark:amc23" on rows without a level column reports one figure, "all"
    runs, out = tmp_path / "runs", tmp_path / "out"
    for method, final in (("grpo", {"all": 0.5}), ("ghpo", {"all": 0.6})):
        run_dir = _write_run(runs, method, 0, final=final, grad=[1.0, 2.0], no_signal_step=1)
        history = run_dir / "history.jsonl"
        history.write_text(history.read_text().replace('{"1": 0.5, "2": 0.1}', '{"all": 0.4}'))

    text = aggregate(runs, out).read_text()

    summary = json.loads((out / "results.json").read_text())["summary"]
    assert summary["ghpo"]["accuracy_final"]["all"]["mean"] == pytest.approx(0.6)
    assert summary["ghpo"]["accuracy_equal_steps"]["levels"]["all"]["mean"] == pytest.approx(0.6)
    assert "ghpo vs grpo, level all: +10.0 points" in text


def test_with_one_seed_a_side_the_verdict_says_there_is_no_range_to_compare(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    _write_run(runs, "grpo", 0, final={"1": 0.9, "2": 0.2}, grad=[1.0, 2.0], no_signal_step=1)
    _write_run(runs, "ghpo", 0, final={"1": 0.7, "2": 0.6}, grad=[1.0, 2.0], no_signal_step=0)
    text = aggregate(runs, out).read_text()
    assert (
        "- ghpo vs grpo, level 2: +40.0 points ([0.600–0.600] vs [0.200–0.200]; one seed: no range to compare)"
        in text
    )
    assert "seed ranges apart" not in text


def _curve_run(method: str, seed: int, curve: list[tuple[int, float]]) -> dict:
    points = [{"completions": c, "accuracy": a, "by_level": {"4": a}} for c, a in curve]
    return {"method": method, "seed": seed, "accuracy_curve": points, "accuracy_final": {"4": curve[-1][1]}}


def test_completions_to_a_target_are_read_off_each_run_and_set_against_grpo():
    runs = [
        _curve_run("grpo", 0, [(0, 0.0), (1000, 0.1), (2000, 0.25), (3000, 0.4)]),
        _curve_run("grpo", 1, [(0, 0.0), (1000, 0.1), (2000, 0.2), (3000, 0.3), (4000, 0.4)]),
        _curve_run("ghpo", 0, [(0, 0.0), (1000, 0.3), (2000, 0.4)]),
        _curve_run("ghpo", 1, [(0, 0.0), (1000, 0.1), (2000, 0.15)]),  # never reaches the target
    ]

    speed = speed_to_target(runs, "4")

    assert speed["target"] == pytest.approx(0.2)  # half of GRPO's mean final 0.4
    assert speed["methods"]["grpo"]["by_seed"] == {0: 2000, 1: 2000}
    assert speed["methods"]["ghpo"]["by_seed"] == {0: 1000, 1: None}
    assert speed["methods"]["ghpo"]["mean"] == 1000 and speed["methods"]["ghpo"]["reached"] == 1
    assert speed["methods"]["ghpo"]["ratio_to_grpo"] == pytest.approx(0.5)
    assert speed_to_target([_curve_run("grpo", 0, [(0, 0.0), (10, 0.0)])], "4") is None  # nothing to reach


def test_the_study_readme_reports_sampled_accuracy_and_completions_to_target(tmp_path):
    _study(tmp_path / "runs")
    for run_dir in (tmp_path / "runs").iterdir():
        records = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
        for record in records:
            if record["kind"] == "eval":
                record["sampled_accuracy_by_level"] = {
                    k: v / 2 for k, v in record["accuracy_by_level"].items()
                }
        (run_dir / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "runs" / SETTINGS_FILE).write_text(json.dumps({"levels": [1, 2]}))

    readme = aggregate(tmp_path / "runs", tmp_path / "out").read_text()
    results = json.loads((tmp_path / "out" / "results.json").read_text())

    # sampled = half the greedy figure: ghpo's seeds end at 0.35 / 0.35 on level 1, 0.30 / 0.31 on level 2
    assert "| ghpo | 0.350 ± 0.000 [0.350–0.350] | 0.305 ± 0.007 [0.300–0.310] |" in readme
    assert "## Completions to reach a target on level 2" in readme
    assert results["speed_to_target"]["level"] == "2"
    assert results["speed_to_target"]["target"] == pytest.approx(0.5 * 0.25)
