"""BENCH_RESULT lines round-trip, and `ghpo bench` turns runs into BENCHMARKS.md rows and notes."""

from __future__ import annotations

import pytest

from ghpo.local.bench import BenchScript, Outcome, load_registry, render_markdown, run_one, unregistered
from ghpo.shared.bench_results import figure_line, parse_figures


def test_figure_line_round_trips_and_computes_the_ratio():
    out = "some human line\n" + figure_line(
        "verifier.items_per_s", 80.0, "items/s", baseline="pool", baseline_value=100.0, target="ratio >= 0.8"
    )
    out += "\n" + figure_line("verifier.own_rate", 0.99, "fraction")

    first, second = parse_figures(out)

    assert first.figure == "verifier.items_per_s" and first.value == 80.0 and first.ratio == 0.8
    assert first.baseline == "pool" and first.target == "ratio >= 0.8"
    assert second.ratio is None and second.baseline_value is None


def test_figure_line_refuses_non_finite_values():
    with pytest.raises(ValueError):
        figure_line("x.y", float("nan"), "s")


def test_registered_but_absent_script_is_skipped_and_unlisted_script_is_named(tmp_path):
    (tmp_path / "registry.toml").write_text(
        '[[bench]]\nscript = "later.py"\narea = "rollout"\n\n'
        '[[bench]]\nscript = "here.py"\narea = "x"\nrequires = ["no_such_module_xyz"]\n'
    )
    (tmp_path / "here.py").write_text("")
    (tmp_path / "stray.py").write_text("")
    registry = load_registry(tmp_path)

    later = run_one(registry[0], tmp_path, quick=True, timeout_s=10)
    here = run_one(registry[1], tmp_path, quick=True, timeout_s=10)

    assert later.status == "skipped" and "not in the repository" in later.detail
    assert here.status == "skipped" and "no_such_module_xyz" in here.detail
    assert unregistered(tmp_path, registry) == ["stray.py"]


def test_markdown_has_machine_figure_row_with_command_and_failure_tail():
    bench = BenchScript("verifier_throughput.py", "verifier")
    ok = Outcome(
        bench,
        "python bench/verifier_throughput.py --quick",
        "ok",
        12.0,
        parse_figures(
            figure_line("verifier.items_per_s", 812.0, "items/s", baseline="pool", baseline_value=900.0)
        ),
    )
    failed = Outcome(
        BenchScript("b.py", "broker"), "python bench/b.py --quick", "failed", 1.0, [], "exit code 1\nboom"
    )

    md = render_markdown([ok, failed], {"cpu": "Test CPU", "cores": "2"}, quick=True, extra=["stray.py"])

    assert "- cpu: Test CPU" in md
    assert (
        "| verifier | verifier.items_per_s | 812 | items/s | pool | 900 | 0.9022 |  | "
        "`python bench/verifier_throughput.py --quick` |" in md
    )
    assert "| b.py | failed | 1 |" in md and "boom" in md
    assert "stray.py" in md


def test_script_past_its_time_limit_is_stopped_and_keeps_the_figures_it_printed(tmp_path):
    (tmp_path / "registry.toml").write_text('[[bench]]\nscript = "slow.py"\narea = "x"\n')
    line = figure_line("x.first", 1.0, "s")
    (tmp_path / "slow.py").write_text(f"import time\nprint({line!r}, flush=True)\ntime.sleep(60)\n")
    [bench] = load_registry(tmp_path)

    outcome = run_one(bench, tmp_path, quick=True, timeout_s=2)

    assert outcome.status == "timeout" and outcome.seconds < 30
    assert [f.figure for f in outcome.figures] == ["x.first"]
