"""The five evaluation benchmarks by name: a local folder of the published files, else the Hugging Face hub.

Where a benchmark's rows come from, in order: the folder given explicitly (`--benchmarks-dir`), else
$GHPO_BENCHMARKS_DIR, else a `shared/data/benchmarks` folder next to the checkout (or above the working
directory) — those are the JSON Lines files as published (see that folder's README) — else the benchmark's
Hugging Face dataset through `datasets.load_dataset`, which caches it under HF_HOME (a second load reads
the cache; HF_HUB_OFFLINE=1 then works offline). A folder named explicitly wins over the hub, so an
offline machine points GHPO_BENCHMARKS_DIR at a copy.

Each source has its own field mapping, because the published files and the hub datasets name fields
differently: MATH-500 is already (problem, solution, answer, level); AIME24 and AMC23 carry ids; AMC23 has
no worked solution (its prompts are never hinted); the Minerva file has no answer column (the answer is
the last `\\boxed{}` of its solution) while its hub dataset has an answer and no solution; OlympiadBench
names the problem `question` and stores solutions and final answers as lists.

What it deliberately does not do: ship the data, download anything itself (datasets does, when the hub
is reachable), or evaluate.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ghpo.shared.data.loaders import FieldMapping, LoadResult, load_prompts
from ghpo.shared.data.sources import SourceFormatError

ENV_VAR = "GHPO_BENCHMARKS_DIR"


class BenchmarkUnavailable(FileNotFoundError):
    """Neither a local copy nor the hub gave a benchmark's rows; the message says what to do (one line)."""


@dataclass(frozen=True)
class HubSource:
    """A benchmark's Hugging Face dataset: `load_dataset(repo, config, split=split)`, then `mapping`."""

    repo: str
    split: str
    mapping: FieldMapping
    rows: int  # as the dataset card or viewer reports them
    config: str | None = None


@dataclass(frozen=True)
class Benchmark:
    name: str
    filename: str
    mapping: FieldMapping
    rows: int  # as published; a different count means a different file
    hub: HubSource


_OLYMPIAD = FieldMapping(
    problem="question",
    answer="final_answer",
    id="id",
    level=None,
    meta=("subfield", "answer_type", "unit", "is_multiple_answer"),
)

# Hub sources, each checked against its public dataset card or the code of projects that load it
# (December 2026; the hub itself is not reachable from the development machine):
# - MATH-500: HuggingFaceH4/MATH-500, one file test.jsonl -> split "test"; card eval.yaml: config default,
#   split test, input `problem`, target `answer`; mirrors' dataset_info lists problem, solution, answer,
#   subject, level (int), unique_id; 500 rows.
# - AIME 2024: HuggingFaceH4/aime_2024, card dataset_info: id (int), problem, solution, answer, url, year;
#   split "train", 30 rows (from AI-MO/aimo-validation-aime).
# - AMC 2023: math-ai/amc23, files test-00000-of-00001.parquet -> split "test", 40 rows; loaders in public
#   code read `question` and `answer` (float, as in Qwen2.5-Math's amc23.jsonl); no worked solutions.
# - Minerva Math: math-ai/minervamath, card dataset_info: question, answer; split "test", 272 rows; no
#   worked solutions (the local file has them, not this one).
# - OlympiadBench: Hothan/OlympiadBench (the authors' upload), config "OE_TO_maths_en_COMP" (open-ended,
#   text-only, English maths competition), split "train"; columns id, question, solution (list),
#   final_answer (list), subfield, answer_type, unit, is_multiple_answer, ...; 674 rows in the viewer (the
#   Qwen2.5-Math file has 675).
BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "math500",
            "math500.jsonl",
            FieldMapping(id=None, level="level", meta=("subject",)),
            500,
            HubSource(
                "HuggingFaceH4/MATH-500", "test", FieldMapping(id=None, level="level", meta=("subject",)), 500
            ),
        ),
        Benchmark(
            "aime24",
            "aime24.jsonl",
            FieldMapping(id="id", level=None, meta=("url",)),
            30,
            HubSource(
                "HuggingFaceH4/aime_2024", "train", FieldMapping(id="id", level=None, meta=("url",)), 30
            ),
        ),
        Benchmark(
            "amc23",
            "amc23.jsonl",
            FieldMapping(id="id", solution=None, level=None, meta=("url",)),
            40,
            HubSource(
                "math-ai/amc23",
                "test",
                FieldMapping(problem="question", solution=None, id=None, level=None),
                40,
            ),
        ),
        Benchmark(
            "minerva",
            "minerva_math.jsonl",
            FieldMapping(answer=None, id="idx", level=None, meta=("type",)),
            272,
            HubSource(
                "math-ai/minervamath",
                "test",
                FieldMapping(problem="question", solution=None, id=None, level=None),
                272,
            ),
        ),
        Benchmark(
            "olympiadbench",
            "olympiadbench.jsonl",
            _OLYMPIAD,
            675,
            HubSource("Hothan/OlympiadBench", "train", _OLYMPIAD, 674, config="OE_TO_maths_en_COMP"),
        ),
    )
}


def _search_bases() -> Iterable[Path]:
    """Folders above this checkout and above the working directory, nearest first."""
    here = Path(__file__).resolve()
    cwd = Path.cwd().resolve()
    return (*here.parents, cwd, *cwd.parents)


def local_benchmarks_root(root: Path | None = None) -> Path | None:
    """The folder benchmark files are read from: `root`, else $GHPO_BENCHMARKS_DIR, else the first
    shared/data/benchmarks (holding math500.jsonl) next to the checkout or the working directory; None
    when there is none (the hub is used then)."""
    if root is not None:
        return Path(root)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    for base in _search_bases():
        candidate = base / "shared" / "data" / "benchmarks"
        if (candidate / BENCHMARKS["math500"].filename).is_file():
            return candidate
    return None


def default_benchmarks_root() -> Path:
    """The local benchmarks folder; FileNotFoundError when there is none (callers that need the files)."""
    root = local_benchmarks_root()
    if root is None:
        raise FileNotFoundError(
            f"no benchmarks folder found: set {ENV_VAR} or place shared/data/benchmarks next to the checkout"
        )
    return root


def _benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; built in: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def load_hub_benchmark(
    name: str,
    *,
    repo: str | None = None,
    check_answers: bool = True,
    overrides: str = "",
    require_solution: bool = False,
) -> LoadResult:
    """A benchmark's rows from its Hugging Face dataset (`repo` replaces the hub id: a mirror, or a local
    folder laid out like the hub repository). BenchmarkUnavailable when it cannot be loaded."""
    hub = _benchmark(name).hub
    source = repo or hub.repo
    try:
        return load_prompts(
            source,
            hub.mapping.with_overrides(overrides),
            fmt="hf",
            split=hub.split,
            config=hub.config,
            name=name,
            check_answers=check_answers,
            require_solution=require_solution,
        )
    except SourceFormatError as exc:
        reason = " ".join(str(exc).split())
        raise BenchmarkUnavailable(
            f"benchmark {name}: no local copy, and the hub did not give it ({reason}): set {ENV_VAR} to "
            f"a folder holding {_benchmark(name).filename}, or give this machine access to the hub"
        ) from None


def load_benchmark(
    name: str,
    root: Path | None = None,
    *,
    check_answers: bool = True,
    overrides: str = "",
    require_solution: bool = False,
) -> LoadResult:
    """The records of a built-in benchmark by name (`math500`, `aime24`, `amc23`, `minerva`,
    `olympiadbench`): from the local folder when there is one, else from the hub (module docstring).
    `overrides` changes the source's field mapping (`field=column,...`, as FieldMapping.with_overrides)."""
    benchmark = _benchmark(name)
    local = local_benchmarks_root(root)
    if local is None:
        return load_hub_benchmark(
            name, check_answers=check_answers, overrides=overrides, require_solution=require_solution
        )
    path = local / benchmark.filename
    if not path.is_file():
        raise BenchmarkUnavailable(
            f"benchmark {name}: no {benchmark.filename} in {local} (the folder given, or {ENV_VAR}): "
            f"put the file there, or unset {ENV_VAR} to load {benchmark.hub.repo} from the hub"
        )
    return load_prompts(
        path,
        benchmark.mapping.with_overrides(overrides),
        fmt="jsonl",
        name=name,
        check_answers=check_answers,
        require_solution=require_solution,
    )
