"""The five evaluation benchmarks in ../shared/data/benchmarks, each with its field mapping built in.

Field names differ between the published files (see that folder's README): MATH-500 is already
(problem, solution, answer, level); AIME24 and AMC23 carry Qwen2.5-Math ids, and AMC23 has no worked
solution (so its prompts are never hinted); Minerva has no answer column, so the answer is the last
`\\boxed{}` of its solution; OlympiadBench names the problem `question` and stores solutions and final
answers as lists. The folder is found through $GHPO_BENCHMARKS_DIR, else ../shared/data/benchmarks next
to the checkout. Not here: the files themselves (they are not part of the project) or evaluation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ghpo.shared.data.loaders import FieldMapping, LoadResult, load_prompts

ENV_VAR = "GHPO_BENCHMARKS_DIR"


@dataclass(frozen=True)
class Benchmark:
    name: str
    filename: str
    mapping: FieldMapping
    rows: int  # as published; a different count means a different file


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "math500",
            "math500.jsonl",
            FieldMapping(id=None, level="level", meta=("subject",)),
            500,
        ),
        Benchmark("aime24", "aime24.jsonl", FieldMapping(id="id", level=None, meta=("url",)), 30),
        Benchmark(
            "amc23", "amc23.jsonl", FieldMapping(id="id", solution=None, level=None, meta=("url",)), 40
        ),
        Benchmark(
            "minerva",
            "minerva_math.jsonl",
            FieldMapping(answer=None, id="idx", level=None, meta=("type",)),
            272,
        ),
        Benchmark(
            "olympiadbench",
            "olympiadbench.jsonl",
            FieldMapping(
                problem="question",
                answer="final_answer",
                id="id",
                level=None,
                meta=("subfield", "answer_type", "unit", "is_multiple_answer"),
            ),
            675,
        ),
    )
}


def default_benchmarks_root() -> Path:
    """$GHPO_BENCHMARKS_DIR, else the first ../shared/data/benchmarks above this checkout or the cwd."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for base in (*here.parents, Path.cwd().resolve(), *Path.cwd().resolve().parents):
        candidate = base / "shared" / "data" / "benchmarks"
        if (candidate / BENCHMARKS["math500"].filename).is_file():
            return candidate
    raise FileNotFoundError(
        f"no benchmarks folder found: set {ENV_VAR} or place shared/data/benchmarks next to the checkout"
    )


def benchmark_path(name: str, root: Path | None = None) -> Path:
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; built in: {', '.join(BENCHMARKS)}")
    return Path(root or default_benchmarks_root()) / BENCHMARKS[name].filename


def load_benchmark(name: str, root: Path | None = None, *, check_answers: bool = True) -> LoadResult:
    """The records of a built-in benchmark by name (`math500`, `aime24`, `amc23`, `minerva`, `olympiadbench`)."""
    path = benchmark_path(name, root)
    return load_prompts(path, BENCHMARKS[name].mapping, fmt="jsonl", name=name, check_answers=check_answers)
