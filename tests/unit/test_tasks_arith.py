"""The arithmetic task family: determinism, split disjointness, verifiable worked solutions, graded levels."""

import itertools
import random

import pytest
from math_verify import parse, verify

from ghpo.shared.tasks import arith


def test_same_seed_gives_identical_records():
    assert arith.make_split("train", 20, seed=7) == arith.make_split("train", 20, seed=7)


def test_different_seeds_give_different_problems():
    a = {r.problem for r in arith.make_split("train", 20, levels=[5], seed=1)}
    b = {r.problem for r in arith.make_split("train", 20, levels=[5], seed=2)}
    assert a != b


def test_train_and_heldout_never_share_a_problem_across_seeds():
    train = {r.problem for seed in (0, 1, 2) for r in arith.make_split("train", 150, seed=seed)}
    heldout = {r.problem for seed in (0, 1, 2) for r in arith.make_split("heldout", 150, seed=seed)}
    assert train and heldout
    assert not train & heldout


def test_every_record_belongs_to_the_split_it_was_drawn_for():
    for split in ("train", "heldout"):
        assert all(arith.split_of(r.problem) == split for r in arith.make_split(split, 30, seed=3))


def test_a_split_has_no_duplicate_problems_even_when_a_level_is_small():
    records = arith.make_split("heldout", 1000, levels=[1], seed=0)
    assert 0 < len(records) < 1000  # level 1 holds fewer distinct held-out problems than asked
    assert len({r.problem for r in records}) == len(records)


def test_solution_ends_in_boxed_gold_answer_that_math_verify_accepts():
    for record in arith.make_split("heldout", 10, seed=0):
        assert record.solution.endswith(f"\\boxed{{{record.answer}}}")
        assert verify(parse(f"${record.answer}$"), parse(record.solution)), record.id


def test_solution_shows_one_line_per_operation_and_matches_python_arithmetic():
    rng = random.Random(0)
    for level in arith.LEVELS:
        problem = arith.generate(level, rng)
        lines = arith.steps(problem)
        assert len(lines) == len(problem.ops) + 1
        assert lines[0] == problem.expression
        assert int(lines[-1].removeprefix("= ")) == eval(problem.expression)  # trusted generated text


def test_levels_grow_in_difficulty_by_construction():
    specs = [arith.LEVELS[level] for level in sorted(arith.LEVELS)]
    for easier, harder in itertools.pairwise(specs):
        assert harder.n_ops >= easier.n_ops
        assert harder.max_operand >= easier.max_operand
        assert set(easier.ops) <= set(harder.ops)
        assert (harder.n_ops, harder.max_operand, len(harder.ops), harder.max_factor) != (
            easier.n_ops,
            easier.max_operand,
            len(easier.ops),
            easier.max_factor,
        )
    assert specs[0].n_ops == 1 and specs[0].ops == "+"


def test_mean_solution_length_grows_with_level():
    lengths = []
    for level in sorted(arith.LEVELS):
        records = arith.make_split("train", 50, levels=[level], seed=0)
        lengths.append(sum(len(r.solution) for r in records) / len(records))
    assert lengths == sorted(lengths)


def test_records_carry_level_source_and_stable_ids():
    records = arith.make_split("train", 5, levels=[3], seed=0)
    assert {r.level for r in records} == {3}
    assert {r.source for r in records} == {"arith"}
    assert [r.id for r in records] == [r.id for r in arith.make_split("train", 5, levels=[3], seed=0)]


def test_unknown_level_and_split_are_refused_naming_the_field():
    with pytest.raises(ValueError, match="level"):
        arith.generate(0, random.Random(0))
    with pytest.raises(ValueError, match="split"):
        arith.make_split("test", 1)  # type: ignore[arg-type]


def test_task_module_does_not_import_torch():
    import subprocess
    import sys

    probe = "import sys, ghpo.shared.tasks.arith; print('torch' in sys.modules)"
    assert subprocess.check_output([sys.executable, "-c", probe], text=True).strip() == "False"
