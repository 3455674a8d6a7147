"""pass@k's unbiased estimator and the per-benchmark/per-level aggregation behind `ghpo eval`."""

from __future__ import annotations

import itertools
from math import comb

import pytest

from ghpo.trainer.eval.metrics import ScoredSample, aggregate, pass_at_k, summarize


def sample(pid: str, index: int, correct: bool, *, benchmark: str = "b", level: int | None = None, **kw):
    fields = {"formatted": True, "answered": True, "length": 10, "truncated": False, "status": "ok"} | kw
    return ScoredSample(pid, benchmark, level, index, correct, **fields)


def test_pass_at_k_equals_the_binomial_formula_on_a_grid():
    for n in range(1, 13):
        for c, k in itertools.product(range(n + 1), range(1, n + 1)):
            expected = 1.0 - comb(n - c, k) / comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_pass_at_k_edge_cases_are_exact():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 10, 1) == 1.0
    assert pass_at_k(10, 3, 8) == 1.0  # fewer than k wrong samples: a draw of k always holds a right one
    assert pass_at_k(200, 1, 1) == pytest.approx(1 / 200)
    assert pass_at_k(1000, 500, 100) == pytest.approx(1.0)  # stays finite where binomials would not


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_refuses_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_summary_separates_first_sample_average_and_pass_at_k():
    # Problem a: first sample right, 1 of 4 right. Problem b: first wrong, 2 of 4 right.
    samples = [sample("a", i, i == 0) for i in range(4)] + [sample("b", i, i in (2, 3)) for i in range(4)]

    m = summarize(samples, pass_k=2)

    assert m["n"] == 2 and m["k"] == 4 and m["pass_k"] == 2
    assert m["pass@1"] == pytest.approx(0.5)  # first samples: a right, b wrong
    assert m["avg@k"] == pytest.approx((1 / 4 + 2 / 4) / 2)
    assert m["pass@k"] == pytest.approx((pass_at_k(4, 1, 2) + pass_at_k(4, 2, 2)) / 2)


def test_summary_reports_format_answer_truncation_length_and_too_long_prompts():
    samples = [
        sample("a", 0, True, length=10),
        sample("a", 1, False, formatted=False, answered=False, length=30, truncated=True),
        sample("b", 0, False, formatted=False, answered=False, length=0, status="prompt_too_long"),
        sample("b", 1, False, formatted=False, answered=False, length=0, status="prompt_too_long"),
    ]

    m = summarize(samples, pass_k=2)

    assert m["format_rate"] == 0.25 and m["answered_rate"] == 0.25 and m["truncated_rate"] == 0.25
    assert m["mean_length"] == 10.0
    assert m["prompt_too_long"] == 1
    assert m["pass@k"] == 0.5


def test_summary_refuses_problems_with_different_sample_counts_and_k_above_samples():
    with pytest.raises(ValueError, match="same number of samples"):
        summarize([sample("a", 0, True), sample("a", 1, True), sample("b", 0, True)], pass_k=1)
    with pytest.raises(ValueError, match="pass@3"):
        summarize([sample("a", 0, True), sample("a", 1, True)], pass_k=3)


def test_aggregate_groups_by_benchmark_and_level_in_level_order():
    samples = [
        sample("x1", 0, True, benchmark="arith", level=2),
        sample("x2", 0, False, benchmark="arith", level=1),
        sample("x3", 0, True, benchmark="arith", level=1),
        sample("y1", 0, False, benchmark="amc23"),
    ]

    results = aggregate(samples, pass_k=1)

    assert list(results) == ["arith", "amc23"]
    assert results["arith"]["all"]["n"] == 3
    assert results["arith"]["all"]["pass@1"] == pytest.approx(2 / 3)
    assert list(results["arith"]["levels"]) == ["1", "2"]
    assert results["arith"]["levels"]["1"]["pass@1"] == 0.5
    assert results["arith"]["levels"]["2"]["pass@1"] == 1.0
    assert results["amc23"]["levels"] == {} and results["amc23"]["all"]["pass@1"] == 0.0
