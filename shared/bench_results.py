"""The machine-readable line every bench script prints per figure, and its parser for `ghpo bench`.

A bench script prints its figures for people as it always has, and for each one also a line

    BENCH_RESULT {"figure": "verifier.items_per_s", "value": 812.4, "unit": "items/s",
                  "baseline": "math-verify process pool", "baseline_value": 901.2, "ratio": 0.901,
                  "target": ">= 0.8"}

(one line of JSON after the prefix). `ratio` is value / baseline_value when there is a baseline.
`ghpo bench` collects these lines into BENCHMARKS.md. Not here: running or timing anything.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

PREFIX = "BENCH_RESULT "


@dataclass(frozen=True, slots=True)
class Figure:
    figure: str  # dotted name, area first: "broker.plans_per_s"
    value: float
    unit: str
    baseline: str | None = None  # what the baseline is, in words
    baseline_value: float | None = None
    ratio: float | None = None
    target: str | None = None  # e.g. ">= 0.8" (on the ratio) or ">= 0.98" (on the value)
    note: str | None = None


def figure_line(
    figure: str,
    value: float,
    unit: str,
    *,
    baseline: str | None = None,
    baseline_value: float | None = None,
    target: str | None = None,
    note: str | None = None,
) -> str:
    """The BENCH_RESULT line for one figure; the ratio is computed here so every script computes it alike."""
    ratio = None
    if baseline_value is not None and baseline_value != 0 and math.isfinite(baseline_value):
        ratio = round(value / baseline_value, 4)
    fig = Figure(figure, float(value), unit, baseline, baseline_value, ratio, target, note)
    return PREFIX + json.dumps(asdict(fig), allow_nan=False)


def emit(figure: str, value: float, unit: str, **kwargs: object) -> None:
    print(figure_line(figure, value, unit, **kwargs), flush=True)  # type: ignore[arg-type]


def parse_figures(output: str) -> list[Figure]:
    """Every BENCH_RESULT line of a script's output, in order; other lines are ignored."""
    figures = []
    for line in output.splitlines():
        if line.startswith(PREFIX):
            figures.append(Figure(**json.loads(line[len(PREFIX) :])))
    return figures
