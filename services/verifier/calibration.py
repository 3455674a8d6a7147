"""Real-data calibration of the verifier: does it say 1 for right answers and 0 for wrong ones?

On MATH-500 and Minerva (../shared/data/benchmarks) every row has a worked solution that ends in the
right answer, so (a) each row's own solution, scored as a completion against the row's gold, must get
accuracy 1, and (b) row i's solution against row i+1's gold (a derangement) must get 0 — except where the
two golds are genuinely equal, which we detect by verifying gold against gold and count separately.
Minerva has no answer column: its gold is the last \\boxed{} of its solution.

Used by bench/verifier_realdata.py (prints the figures) and tests/unit/test_verifier_realdata.py (CI).
Every row is read straight from the JSONL, not through the training loaders, which drop rows whose gold
does not parse: here those rows must be counted as failures. Runs scoring in a process pool (math-verify
needs a main thread per process). Not here: HTTP (the throughput bench covers the service).
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ghpo.shared.data import default_benchmarks_root
from ghpo.shared.scoring.answers import parse_gold, score
from ghpo.shared.scoring.boxes import last_boxed

SETS = {"math500": "math500.jsonl", "minerva": "minerva_math.jsonl"}


@dataclass(frozen=True, slots=True)
class Row:
    source: str
    index: int
    solution: str
    gold: str


@dataclass
class Report:
    rows: int = 0
    own_correct: int = 0
    own_failures: list[tuple[Row, str]] = field(default_factory=list)  # (row, why)
    pairs: int = 0
    pairs_equal_gold: int = 0  # the two golds verify as equal: a 1 there is right, not a false positive
    equal_gold_pairs: list[tuple[Row, Row]] = field(default_factory=list)
    cross_zero: int = 0  # pairs with different golds scoring 0
    cross_failures: list[tuple[Row, Row, str]] = field(default_factory=list)

    @property
    def own_rate(self) -> float:
        return self.own_correct / self.rows if self.rows else 0.0

    @property
    def cross_zero_rate(self) -> float:
        differing = self.pairs - self.pairs_equal_gold
        return self.cross_zero / differing if differing else 0.0


def load_rows(directory: Path | None = None) -> dict[str, list[Row]]:
    directory = directory if directory is not None else default_benchmarks_root()
    sets: dict[str, list[Row]] = {}
    for name, filename in SETS.items():
        rows = []
        with open(directory / filename, encoding="utf-8") as f:
            for i, line in enumerate(f):
                record = json.loads(line)
                gold = record.get("answer")
                if gold is None:
                    gold = last_boxed(record["solution"]) or ""
                rows.append(Row(source=name, index=i, solution=record["solution"], gold=str(gold)))
        sets[name] = rows
    return sets


def _own(row: Row) -> tuple[float, str]:
    result = score(row.solution, row.gold)
    why = f"{result.status}: extracted {result.extracted!r} vs gold {row.gold!r}"
    return result.accuracy, why if result.detail is None else f"{why} ({result.detail})"


def _cross(pair: tuple[Row, Row]) -> tuple[bool, float, str]:
    row, other = pair
    gold_equal = (
        score("\\boxed{" + row.gold + "}", other.gold).accuracy == 1.0
        # Curated gold, so no timeout: math-verify's is wall-clock, and on a starved CPU it fired here.
        if parse_gold(row.gold, timeout_s=None)
        else False
    )
    result = score(row.solution, other.gold)
    return gold_equal, result.accuracy, f"extracted {result.extracted!r} vs gold {other.gold!r}"


def calibrate(sets: dict[str, list[Row]], *, workers: int = 2) -> Report:
    report = Report()
    rows = [row for rows in sets.values() for row in rows]
    pairs = [(rows_[i], rows_[(i + 1) % len(rows_)]) for rows_ in sets.values() for i in range(len(rows_))]
    with ProcessPoolExecutor(workers) as pool:
        for row, (accuracy, why) in zip(rows, pool.map(_own, rows, chunksize=16), strict=True):
            report.rows += 1
            if accuracy == 1.0:
                report.own_correct += 1
            else:
                report.own_failures.append((row, why))
        for (row, other), (gold_equal, accuracy, why) in zip(
            pairs, pool.map(_cross, pairs, chunksize=16), strict=True
        ):
            report.pairs += 1
            if gold_equal:
                report.pairs_equal_gold += 1
                report.equal_gold_pairs.append((row, other))
            elif accuracy == 0.0:
                report.cross_zero += 1
            else:
                report.cross_failures.append((row, other, why))
    return report
