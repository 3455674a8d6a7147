"""Which problems `ghpo eval` asks: the built-in benchmarks and the synthetic task's held-out split.

Benchmarks come from `ghpo.shared.data.load_benchmark` (their first `limit` rows, in file order, so a
small limit is the same subset every time; a local copy, else the Hugging Face hub); the synthetic task is
`arith.make_split("heldout", ...)`, `per_level` problems of each chosen level. The prompt comes from a
`PromptTemplate` (ghpo.shared.data.template), the one the rollout server trains with: by default the
problem alone in one user turn (the tiny model's chat format); for pretrained models a system turn and/or
an instruction such as "put your final answer within \\boxed{}". Never hinted: evaluation measures the
policy on its own. Not here: generation, scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ghpo.shared.data.benchmarks import BENCHMARKS, load_benchmark
from ghpo.shared.data.records import PromptRecord
from ghpo.shared.data.template import PromptTemplate
from ghpo.shared.tasks import arith

ARITH = "arith"
NAMES: tuple[str, ...] = (ARITH, *BENCHMARKS)


@dataclass(frozen=True, slots=True)
class EvalProblem:
    id: str
    benchmark: str
    level: int | None
    messages: tuple[tuple[str, str], ...]  # (role, content) turns
    answer: str

    def chat(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]


def to_problem(record: PromptRecord, benchmark: str, template: PromptTemplate) -> EvalProblem:
    """An evaluation problem from a record: the template's unhinted chat turns, the record's gold."""
    turns = template.messages(record.problem)
    return EvalProblem(
        id=record.id,
        benchmark=benchmark,
        level=record.level,
        messages=tuple((turn["role"], turn["content"]) for turn in turns),
        answer=record.answer,
    )


def build_problems(
    benchmarks: Sequence[str],
    *,
    limit: int | None,
    arith_per_level: int,
    arith_levels: Sequence[int],
    template: PromptTemplate | None = None,
    benchmarks_dir: Path | None = None,
) -> list[EvalProblem]:
    """The problems of each named benchmark, in the order named."""
    template = template or PromptTemplate()
    problems: list[EvalProblem] = []
    for name in benchmarks:
        if name == ARITH:
            records = arith.make_split("heldout", arith_per_level, list(arith_levels), seed=0)
        elif name in BENCHMARKS:
            records = load_benchmark(name, benchmarks_dir, check_answers=False).records[:limit]
        else:
            raise KeyError(f"unknown benchmark {name!r}; known: {', '.join(NAMES)}")
        problems.extend(to_problem(r, name, template) for r in records)
    return problems
