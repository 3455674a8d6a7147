"""Multi-step integer arithmetic: a seeded task family with worked solutions and graded difficulty.

A problem is an expression such as `3 + 4 * 5 - 2`. Its worked solution rewrites the expression one
operation at a time (every multiplication first, left to right, then additions and subtractions left to
right), one line per step, and ends in `\\boxed{answer}`:

    3 + 4 * 5 - 2
    = 3 + 20 - 2
    = 23 - 2
    = 21
    \\boxed{21}

Level 1 is one addition of small numbers; each level adds operations, widens the operand range or admits
multiplication, so difficulty grows by construction (see `LEVELS`). Train and held-out splits are
separated by a hash of the canonical problem text, so they can never share a problem whatever the seeds.

Deliberately not here: parentheses, division (non-integer answers), and any scoring — answers are checked
by the same math-verify path as real math.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Literal

from ghpo.shared.data.records import PromptRecord

SOURCE = "arith"
HELDOUT_PERCENT = 20  # share of the problem space reserved for the held-out split (by hash)

Split = Literal["train", "heldout"]


@dataclass(frozen=True)
class LevelSpec:
    """How problems of one level are drawn."""

    n_ops: int  # binary operations in the expression (= steps in the solution)
    max_operand: int  # operands are drawn from 1..max_operand
    ops: str  # allowed operators, a subset of "+-*"
    max_factor: int  # the right operand of a multiplication is drawn from 1..max_factor


# Each level is at least as hard as the one before in every dimension, and strictly harder in one. Levels
# 2-5 are chains of additions and subtractions, so a worked solution has one line per operation and a hint
# cut at 75% of it leaves the last line(s) to compute: from three operations on, the hint never holds the
# answer (with two, a 75% cut almost always reaches the final line, and a hint is an answer to copy).
LEVELS: dict[int, LevelSpec] = {
    1: LevelSpec(n_ops=1, max_operand=9, ops="+", max_factor=1),
    2: LevelSpec(n_ops=2, max_operand=9, ops="+-", max_factor=1),
    3: LevelSpec(n_ops=3, max_operand=9, ops="+-", max_factor=1),
    4: LevelSpec(n_ops=4, max_operand=9, ops="+-", max_factor=1),
    5: LevelSpec(n_ops=4, max_operand=20, ops="+-", max_factor=1),
    6: LevelSpec(n_ops=4, max_operand=50, ops="+-*", max_factor=9),
    7: LevelSpec(n_ops=5, max_operand=99, ops="+-*", max_factor=20),
    8: LevelSpec(n_ops=6, max_operand=999, ops="+-*", max_factor=99),
}
MAX_LEVEL = max(LEVELS)


@dataclass(frozen=True)
class Problem:
    numbers: tuple[int, ...]
    ops: tuple[str, ...]
    level: int

    @property
    def expression(self) -> str:
        return render(self.numbers, self.ops)

    @property
    def text(self) -> str:
        return f"Compute {self.expression}."


def render(numbers: tuple[int, ...] | list[int], ops: tuple[str, ...] | list[str]) -> str:
    parts = [str(numbers[0])]
    for op, n in zip(ops, numbers[1:], strict=True):
        parts.append(f" {op} {n}")
    return "".join(parts)


def reduce_once(numbers: list[int], ops: list[str]) -> tuple[list[int], list[str]]:
    """Apply the next operation: the leftmost `*` if any, else the leftmost `+`/`-`."""
    i = ops.index("*") if "*" in ops else 0
    a, b, op = numbers[i], numbers[i + 1], ops[i]
    value = a * b if op == "*" else a + b if op == "+" else a - b
    return [*numbers[:i], value, *numbers[i + 2 :]], ops[:i] + ops[i + 1 :]


def steps(problem: Problem) -> list[str]:
    """The worked steps: the expression, then one `= ...` line per operation."""
    numbers, ops = list(problem.numbers), list(problem.ops)
    lines = [render(numbers, ops)]
    while ops:
        numbers, ops = reduce_once(numbers, ops)
        lines.append("= " + render(numbers, ops))
    return lines


def evaluate(problem: Problem) -> int:
    numbers, ops = list(problem.numbers), list(problem.ops)
    while ops:
        numbers, ops = reduce_once(numbers, ops)
    return numbers[0]


def solution_text(problem: Problem) -> str:
    return "\n".join(steps(problem)) + f"\n\\boxed{{{evaluate(problem)}}}"


def generate(level: int, rng: random.Random) -> Problem:
    """Draw one problem of `level` from `rng` (all randomness comes from `rng`)."""
    if level not in LEVELS:
        raise ValueError(f"level must be in 1..{MAX_LEVEL}, got {level}")
    return generate_spec(LEVELS[level], rng, level=level)


def generate_spec(spec: LevelSpec, rng: random.Random, level: int = 0) -> Problem:
    """Draw one problem shaped by `spec` (a ladder level's, or one off the ladder, as the tiny model's
    warm start uses), labelled `level`."""
    ops = [rng.choice(spec.ops) for _ in range(spec.n_ops)]
    if spec.ops != "+" and spec.n_ops > 1 and not any(op == "*" for op in ops) and "*" in spec.ops:
        # Levels that admit multiplication always use it at least once, so they are not easier than
        # the level below by chance.
        ops[rng.randrange(len(ops))] = "*"
    numbers = [rng.randint(1, spec.max_operand)]
    for op in ops:
        numbers.append(rng.randint(1, spec.max_factor if op == "*" else spec.max_operand))
    return Problem(numbers=tuple(numbers), ops=tuple(ops), level=level)


def split_of(problem_text: str) -> Split:
    """Which split a problem belongs to: fixed by its text alone, so splits never overlap."""
    bucket = int(hashlib.sha256(problem_text.encode()).hexdigest()[:8], 16) % 100
    return "heldout" if bucket < HELDOUT_PERCENT else "train"


def to_record(problem: Problem) -> PromptRecord:
    text = problem.text
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    return PromptRecord(
        id=f"{SOURCE}-L{problem.level}-{digest}",
        problem=text,
        answer=str(evaluate(problem)),
        solution=solution_text(problem),
        source=SOURCE,
        level=problem.level,
        meta={"expression": problem.expression, "steps": str(len(problem.ops))},
    )


def make_split(
    split: Split, n_per_level: int, levels: list[int] | range | None = None, seed: int = 0
) -> list[PromptRecord]:
    """`n_per_level` distinct problems of each level that belong to `split`, deterministic from `seed`.

    Small levels may not hold `n_per_level` distinct problems in one split; then all that were found
    within a bounded number of draws are returned (fewer, never duplicates).
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    if n_per_level < 0:
        raise ValueError(f"n_per_level must be >= 0, got {n_per_level}")
    records: list[PromptRecord] = []
    for level in levels if levels is not None else range(1, MAX_LEVEL + 1):
        rng = random.Random(f"{SOURCE}:{seed}:{split}:{level}")
        seen: set[str] = set()
        attempts = 0
        while len(seen) < n_per_level and attempts < 50 * n_per_level + 1000:
            attempts += 1
            problem = generate(level, rng)
            text = problem.text
            if text in seen or split_of(text) != split:
                continue
            seen.add(text)
            records.append(to_record(problem))
    return records
