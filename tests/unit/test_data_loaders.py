"""Prompt loaders against the real benchmark files, corrupted copies, and Parquet / Hugging Face round trips.

The benchmark files live outside the project, in ../shared/data/benchmarks next to the checkout; tests
that need them skip with that reason where the folder is absent, and fail in CI (tests/support/benchmarks). Nothing here copies them into the repo:
corrupted copies and round trips are written under tmp_path.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from ghpo.shared.data import (
    BENCHMARKS,
    FieldMapping,
    MappingError,
    SourceFormatError,
    content_id,
    load_benchmark,
    load_prompts,
)
from ghpo.shared.scoring.boxes import last_boxed
from tests.support.benchmarks import BENCH_DIR, needs_benchmarks


def read_rows(filename: str) -> list[dict]:
    with (BENCH_DIR / filename).open() as handle:
        return [json.loads(line) for line in handle]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@needs_benchmarks
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_loads_every_published_row_with_unique_ids(name):
    result = load_benchmark(name, BENCH_DIR, check_answers=False)

    assert result.report.rows == BENCHMARKS[name].rows
    assert len(result.records) == BENCHMARKS[name].rows
    assert result.report.n_skipped == 0
    assert len({r.id for r in result.records}) == len(result.records)
    assert all(r.id.startswith(f"{name}-") and r.source == name for r in result.records)
    assert all(r.problem and r.answer for r in result.records)


@needs_benchmarks
def test_math500_maps_problem_solution_answer_level_and_subject():
    raw = read_rows("math500.jsonl")
    records = load_benchmark("math500", BENCH_DIR, check_answers=False).records

    first = records[0]
    assert (first.problem, first.solution, first.answer) == (
        raw[0]["problem"],
        raw[0]["solution"],
        raw[0]["answer"],
    )
    assert first.level == raw[0]["level"] == 2
    assert first.meta == {"subject": "Precalculus"}
    assert first.id == f"math500-{content_id(raw[0]['problem'], raw[0]['answer'])}"
    assert sorted({r.level for r in records}) == [1, 2, 3, 4, 5]
    assert all(r.hintable for r in records)


@needs_benchmarks
def test_aime24_and_amc23_keep_source_ids_and_amc23_has_no_solution():
    aime = load_benchmark("aime24", BENCH_DIR, check_answers=False).records
    amc = load_benchmark("amc23", BENCH_DIR, check_answers=False).records

    assert (aime[0].id, aime[0].answer, aime[0].level) == ("aime24-60", "204", None)
    assert aime[0].solution == read_rows("aime24.jsonl")[0]["solution"]
    # AMC23 stores answers as floats (27.0): the gold answer is the integer text.
    assert (amc[0].id, amc[0].answer) == ("amc23-0", "27")
    assert not any(r.hintable for r in amc)


@needs_benchmarks
def test_minerva_answer_is_the_last_boxed_of_its_solution():
    raw = read_rows("minerva_math.jsonl")
    records = load_benchmark("minerva", BENCH_DIR, check_answers=False).records

    assert records[0].id == "minerva-0"
    assert records[0].answer == "1.6"
    assert all(r.answer == last_boxed(row["solution"]).strip() for r, row in zip(records, raw, strict=True))
    assert records[0].meta["type"].startswith("Introduction to Astronomy")


@needs_benchmarks
def test_olympiadbench_takes_question_first_solution_and_final_answer_without_dollars():
    raw = read_rows("olympiadbench.jsonl")
    records = load_benchmark("olympiadbench", BENCH_DIR, check_answers=False).records

    first = records[0]
    assert first.id == "olympiadbench-1606"
    assert first.problem == raw[0]["question"]
    assert first.solution == raw[0]["solution"][0]
    assert raw[0]["final_answer"] == ["2"] and first.answer == "2"
    dollared = next(i for i, row in enumerate(raw) if row["final_answer"] == ["$\\frac{41}{12}$"])
    assert records[dollared].answer == "\\frac{41}{12}"
    assert first.meta["answer_type"] == "Numerical"


@needs_benchmarks
def test_ids_are_stable_across_reloads_and_row_order(tmp_path):
    rows = read_rows("math500.jsonl")[:60]
    first = load_benchmark("math500", BENCH_DIR, check_answers=False).records[:60]
    random.Random(0).shuffle(rows)
    shuffled = load_prompts(
        write_jsonl(tmp_path / "shuffled.jsonl", rows),
        BENCHMARKS["math500"].mapping,
        name="math500",
        check_answers=False,
    ).records

    assert {r.id: r for r in shuffled} == {r.id: r for r in first}
    assert [r.id for r in load_benchmark("math500", BENCH_DIR, check_answers=False).records[:60]] == [
        r.id for r in first
    ]


@needs_benchmarks
@pytest.mark.slow
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_every_benchmark_gold_answer_parses_with_math_verify(name):
    result = load_benchmark(name, BENCH_DIR)

    assert result.report.skipped == {}, result.report.summary()
    assert len(result.records) == BENCHMARKS[name].rows


@needs_benchmarks
def test_corrupted_copy_skips_bad_rows_and_reports_them_by_reason(tmp_path):
    good = read_rows("aime24.jsonl")[:5]
    bad = [
        {**good[0], "id": 1001, "problem": "", "question": ""},  # line 6
        {k: v for k, v in good[1].items() if k != "answer"} | {"id": 1002},  # line 7
        {**good[2], "id": 1003, "answer": "}{"},  # line 8
        {**good[3], "id": 1004, "answer": "\\boxed{}"},  # line 9
        {**good[4]},  # line 10: same id as line 5
        {**good[0], "id": "has space"},  # line 11
    ]
    path = write_jsonl(tmp_path / "aime24_corrupt.jsonl", good + bad)

    result = load_prompts(path, BENCHMARKS["aime24"].mapping, name="aime24")
    report = result.report

    assert [r.id for r in result.records] == [f"aime24-{row['id']}" for row in good]
    assert (report.rows, report.loaded, report.n_skipped) == (11, 5, 6)
    assert dict(report.skipped) == {
        "missing_problem": 1,
        "missing_answer": 1,
        "unparsable_answer": 2,
        "duplicate_id": 1,
        "bad_id": 1,
    }
    where = {(e.reason, e.location) for e in report.examples}
    assert ("missing_problem", "line 6") in where
    assert ("unparsable_answer", "line 8") in where and ("unparsable_answer", "line 9") in where
    assert ("duplicate_id", "line 10") in where
    summary = report.summary()
    assert "6 skipped" in summary and "unparsable_answer: 2" in summary and "line 8" in summary


def test_skip_examples_are_capped_per_reason(tmp_path):
    rows = [{"problem": f"p{i}", "answer": "}{"} for i in range(10)]
    report = load_prompts(write_jsonl(tmp_path / "bad.jsonl", rows)).report

    assert report.skipped["unparsable_answer"] == 10
    assert [e.location for e in report.examples] == ["line 1", "line 2", "line 3"]


def test_required_solution_skips_rows_without_one(tmp_path):
    rows = [
        {"problem": "1+1?", "answer": "2", "solution": "1+1=\\boxed{2}"},
        {"problem": "2+2?", "answer": "4"},
    ]
    result = load_prompts(write_jsonl(tmp_path / "s.jsonl", rows), require_solution=True)

    assert [r.answer for r in result.records] == ["2"]
    assert result.report.skipped == {"missing_solution": 1}


def test_jsonl_that_is_not_json_lines_names_the_file_and_line(tmp_path):
    path = tmp_path / "broken.jsonl"
    path.write_text('{"problem": "a", "answer": "1"}\n\n{"problem": "b", "answer": "2"}\n{"problem": "c", \n')

    with pytest.raises(SourceFormatError, match=r"broken\.jsonl, line 4: not a JSON value"):
        load_prompts(path)


def test_jsonl_line_that_is_not_an_object_is_an_error(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text("[1, 2]\n")

    with pytest.raises(
        SourceFormatError, match=r"list\.jsonl, line 1: expected a JSON object per line, got list"
    ):
        load_prompts(path)


def test_binary_file_named_jsonl_is_an_error_naming_line_one(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "really_parquet.jsonl"
    pq.write_table(pa.table({"problem": ["1+1"], "answer": ["2"]}), path)

    with pytest.raises(SourceFormatError, match=r"really_parquet\.jsonl, line 1"):
        load_prompts(path)


def test_parquet_that_is_not_parquet_is_one_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "fake.parquet", [{"problem": "1+1", "answer": "2"}])

    with pytest.raises(SourceFormatError, match=r"fake\.parquet: not a Parquet file"):
        load_prompts(path)


def test_mapping_to_a_column_no_row_has_names_the_field(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "1+1", "answer": "2"}])

    with pytest.raises(MappingError, match="no column 'problem'") as info:
        load_prompts(path)
    assert info.value.field == "problem"
    assert len(load_prompts(path, FieldMapping().with_overrides("problem=question")).records) == 1


def test_field_mapping_overrides_parse_and_reject_unknown_fields():
    mapping = FieldMapping().with_overrides("problem=question, answer=final_answer,solution=,meta=a+b")

    assert (mapping.problem, mapping.answer, mapping.solution, mapping.meta) == (
        "question",
        "final_answer",
        None,
        ("a", "b"),
    )
    with pytest.raises(MappingError) as info:
        FieldMapping().with_overrides("anwser=x")
    assert info.value.field == "anwser"


def test_last_boxed_takes_the_last_box_with_nested_braces():
    assert last_boxed("so \\boxed{1} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"
    assert last_boxed("\\fbox{x^{2}}") == "x^{2}"
    assert last_boxed("no box here") is None
    assert last_boxed("\\boxed{unbalanced") is None


@needs_benchmarks
def test_default_benchmarks_root_is_next_to_the_checkout_unless_the_env_var_says(tmp_path, monkeypatch):
    from ghpo.shared.data import default_benchmarks_root

    monkeypatch.delenv("GHPO_BENCHMARKS_DIR", raising=False)
    assert default_benchmarks_root().resolve() == BENCH_DIR.resolve()
    monkeypatch.setenv("GHPO_BENCHMARKS_DIR", str(tmp_path))
    assert default_benchmarks_root() == tmp_path
    with pytest.raises(FileNotFoundError, match=r"amc23\.jsonl"):
        load_benchmark("amc23")


def test_unknown_benchmark_name_lists_the_built_in_ones():
    with pytest.raises(KeyError, match="math500, aime24, amc23, minerva, olympiadbench"):
        load_benchmark("gsm8k")
