"""Verifier calibration on real data (MATH-500 + Minerva): own solution scores 1, another row's 0.

Prints: rows scoring 1 (target >= 98%), each exception with why, the cross-pair zero rate over pairs
with different golds (target >= 99%), and how many derangement pairs have genuinely equal golds.
Run: python bench/verifier_realdata.py [--workers 2]
`--quick` is a smoke run (first 40 rows of each set); each figure is also printed as a BENCH_RESULT line.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import time

from ghpo.services.verifier.calibration import calibrate, load_rows
from ghpo.shared.bench_results import emit

QUICK_ROWS = 40


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: first {QUICK_ROWS} rows of each set"
    )
    args = parser.parse_args()
    sets = load_rows()
    if args.quick:
        sets = {name: rows[:QUICK_ROWS] for name, rows in sets.items()}
    started = time.perf_counter()
    report = calibrate(sets, workers=args.workers)
    elapsed = time.perf_counter() - started
    print(f"data sets: {', '.join(f'{name} ({len(rows)} rows)' for name, rows in sets.items())}")
    print(
        f"own solution scores 1: {report.own_correct}/{report.rows} = {report.own_rate:.4f} (target >= 0.98)"
    )
    for row, why in report.own_failures:
        print(f"  exception {row.source}[{row.index}]: {why}")
    differing = report.pairs - report.pairs_equal_gold
    print(
        f"cross pairs (row i vs gold of row i+1): {report.pairs}; genuinely equal golds: "
        f"{report.pairs_equal_gold}; scoring 0 among the rest: {report.cross_zero}/{differing} = "
        f"{report.cross_zero_rate:.4f} (target >= 0.99)"
    )
    for row, other in report.equal_gold_pairs:
        print(f"  equal golds: {row.source}[{row.index}] {row.gold!r} and [{other.index}] {other.gold!r}")
    for row, other, why in report.cross_failures:
        print(f"  false 1: {row.source}[{row.index}] vs gold of [{other.index}]: {why}")
    print(f"elapsed {elapsed:.1f}s with {args.workers} worker processes")
    emit("verifier.own_solution_scores_1", report.own_rate, "fraction", target=">= 0.98")
    emit("verifier.cross_pairs_score_0", report.cross_zero_rate, "fraction", target=">= 0.99")


if __name__ == "__main__":
    main()
