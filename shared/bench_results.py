"""The machine-readable line every bench script prints per figure, and its parser for `ghpo bench`.

A bench script prints its figures for people as it always has, and for each one also a line

    BENCH_RESULT {"figure": "verifier.items_per_s", "value": 812.4, "unit": "items/s",
                  "baseline": "math-verify process pool", "baseline_value": 901.2, "ratio": 0.901,
                  "target": ">= 0.8"}

(one line of JSON after the prefix). `ratio` is value / baseline_value when there is a baseline.
`ghpo bench` collects these lines into BENCHMARKS.md.

A script run directly (`python bench/peer_trl.py`) calls `require_extras(__file__)` before its other
imports: when a module that bench/registry.toml lists under the script's `requires` is not installed it
prints one line naming the extra of pyproject.toml that installs it (the registry's `[extras]`) and exits
with 2, as `ghpo` commands do for bad input, rather than a ModuleNotFoundError traceback (possibly after
minutes of the part that did not need it). `ghpo bench` skips such a script with a note instead.
Not here: running or timing anything.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

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


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None in sys.modules
        return False


def require_extras(script: str) -> None:
    """Exit with one line (stderr, exit code 2) naming the extra to install when a module the registry
    lists for `script` (a bench/*.py path) is missing; return quietly otherwise."""
    path = Path(script).resolve()
    registry = tomllib.loads((path.parent / "registry.toml").read_text())
    entry = next((e for e in registry.get("bench", []) if e["script"] == path.name), {})
    missing = [m for m in entry.get("requires", ()) if not _importable(m)]
    if not missing:
        return
    extras = ",".join(sorted({registry.get("extras", {}).get(m, "all") for m in missing}))
    print(
        f"bench/{path.name} needs {', '.join(missing)} (not installed): pip install -e '.[{extras}]'",
        file=sys.stderr,
    )
    raise SystemExit(2)
