"""The verifier on real benchmark data: own worked solution scores 1, another row's scores 0."""

from __future__ import annotations

import pytest

from ghpo.services.verifier.calibration import calibrate, load_rows
from tests.support.benchmarks import needs_benchmarks


@pytest.mark.slow
@needs_benchmarks
def test_real_solutions_score_1_and_mismatched_pairs_score_0():
    sets = load_rows()
    assert len(sets["math500"]) == 500 and len(sets["minerva"]) == 272
    report = calibrate(sets, workers=2)
    failures = [f"{row.source}[{row.index}]: {why}" for row, why in report.own_failures]
    assert report.own_rate >= 0.98, failures
    false_ones = [
        f"{row.source}[{row.index}] vs [{other.index}]: {why}" for row, other, why in report.cross_failures
    ]
    assert report.cross_zero_rate >= 0.99, false_ones
    assert report.pairs == report.rows
