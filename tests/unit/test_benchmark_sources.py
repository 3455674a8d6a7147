"""Benchmarks by name: the Hugging Face path read from local folders laid out like the hub repositories
(same files, configs and column names as the public datasets; the hub is not reachable here), a local
folder that wins, and missing data as one line naming what to do, never a traceback.

The fixtures write a few rows per benchmark under the hub's own column names and layout (a file name
that sets the split, or a README whose YAML `configs:` block does, as on the hub), so
`datasets.load_dataset(folder, config, split=...)` takes the same path a hub name does once downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ghpo.cli import main
from ghpo.shared.data import BENCHMARKS, BenchmarkUnavailable, load_benchmark, load_hub_benchmark
from ghpo.shared.data import benchmarks as benchmarks_module

MATH500_ROWS = [
    {
        "problem": "What is $1+1$?",
        "solution": "We add: $1+1=\\boxed{2}$.",
        "answer": "2",
        "subject": "Prealgebra",
        "level": 1,
        "unique_id": "test/prealgebra/1.json",
    },
    {
        "problem": "Compute $\\frac{1}{2}+\\frac{1}{2}$.",
        "solution": "It is $\\boxed{1}$.",
        "answer": "1",
        "subject": "Algebra",
        "level": 2,
        "unique_id": "test/algebra/2.json",
    },
]
AIME_ROWS = [
    {
        "id": 60,
        "problem": "Find $2+2$.",
        "solution": "So $\\boxed{4}$.",
        "answer": "4",
        "url": "u",
        "year": "2024",
    }
]
AMC_ROWS = [{"question": "How many miles? $45-18$", "answer": 27.0}]
MINERVA_ROWS = [{"question": "Compute $3 \\times 3$.", "answer": "9"}]
OLYMPIAD_ROWS = [
    {
        "id": 1606,
        "question": "Find all $x$ with $x^2=4$.",
        "solution": ["Hence $x=\\pm 2$.", "Another way."],
        "final_answer": ["$2$", "$-2$"],
        "context": None,
        "subfield": "Algebra",
        "answer_type": "Numerical",
        "unit": None,
        "is_multiple_answer": True,
    }
]


def _parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


def _card(folder: Path, config: str, split: str, pattern: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text(
        f"---\nconfigs:\n- config_name: {config}\n  data_files:\n  - split: {split}\n    path: {pattern}\n---\n"
    )


def hub_mirror(root: Path, name: str) -> Path:
    """A folder laid out like the benchmark's hub repository (see the comment above BENCHMARKS)."""
    folder = root / BENCHMARKS[name].hub.repo.replace("/", "__")
    folder.mkdir(parents=True)
    if name == "math500":  # HuggingFaceH4/MATH-500: one test.jsonl at the top
        (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MATH500_ROWS))
    elif name == "aime24":  # HuggingFaceH4/aime_2024: data/train-*.parquet
        _card(folder, "default", "train", "data/train-*")
        _parquet(folder / "data" / "train-00000-of-00001.parquet", AIME_ROWS)
    elif name == "amc23":  # math-ai/amc23: test-00000-of-00001.parquet at the top
        _parquet(folder / "test-00000-of-00001.parquet", AMC_ROWS)
    elif name == "minerva":  # math-ai/minervamath: the card maps split test to test*
        _card(folder, "default", "test", "test*")
        _parquet(folder / "test-00000-of-00001.parquet", MINERVA_ROWS)
    else:  # Hothan/OlympiadBench: one folder per configuration
        _card(folder, "OE_TO_maths_en_COMP", "train", "OE_TO_maths_en_COMP/train/*")
        _parquet(folder / "OE_TO_maths_en_COMP" / "train" / "0000.parquet", OLYMPIAD_ROWS)
    return folder


@pytest.fixture
def no_local_benchmarks(monkeypatch, tmp_path):
    """No GHPO_BENCHMARKS_DIR and no shared/data/benchmarks found above the checkout or the cwd; the hub
    offline, as on a machine without network (so a load fails at once instead of retrying)."""
    import datasets
    import huggingface_hub.constants

    monkeypatch.delenv(benchmarks_module.ENV_VAR, raising=False)
    monkeypatch.setattr(benchmarks_module, "_search_bases", lambda: [tmp_path])
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_math500_from_its_hub_layout_keeps_problem_solution_answer_level_and_subject(tmp_path):
    records = load_hub_benchmark("math500", repo=str(hub_mirror(tmp_path, "math500"))).records

    assert [r.problem for r in records] == [row["problem"] for row in MATH500_ROWS]
    assert [(r.answer, r.level, r.meta["subject"]) for r in records] == [
        ("2", 1, "Prealgebra"),
        ("1", 2, "Algebra"),
    ]
    assert all(r.hintable and r.id.startswith("math500-") for r in records)


def test_aime24_from_its_hub_layout_keeps_the_source_ids(tmp_path):
    [record] = load_hub_benchmark("aime24", repo=str(hub_mirror(tmp_path, "aime24"))).records

    assert (record.id, record.answer, record.solution) == ("aime24-60", "4", "So $\\boxed{4}$.")


def test_amc23_from_its_hub_layout_reads_question_and_a_float_answer_and_is_never_hinted(tmp_path):
    [record] = load_hub_benchmark("amc23", repo=str(hub_mirror(tmp_path, "amc23"))).records

    assert (record.problem, record.answer, record.hintable) == ("How many miles? $45-18$", "27", False)


def test_minerva_from_its_hub_layout_reads_question_and_answer(tmp_path):
    [record] = load_hub_benchmark("minerva", repo=str(hub_mirror(tmp_path, "minerva"))).records

    assert (record.problem, record.answer, record.hintable) == ("Compute $3 \\times 3$.", "9", False)


def test_olympiadbench_from_its_hub_config_joins_final_answers_and_takes_the_first_solution(tmp_path):
    [record] = load_hub_benchmark("olympiadbench", repo=str(hub_mirror(tmp_path, "olympiadbench"))).records

    assert (record.id, record.answer, record.solution) == ("olympiadbench-1606", "2, -2", "Hence $x=\\pm 2$.")
    assert record.meta["answer_type"] == "Numerical"


def test_a_hub_dataset_whose_columns_changed_names_the_missing_column(tmp_path):
    from ghpo.shared.data import MappingError

    folder = tmp_path / "renamed"
    _parquet(folder / "test-00000-of-00001.parquet", [{"prompt": "1+1", "answer": 2.0}])

    with pytest.raises(
        MappingError, match="no column 'question' \\(mapped to problem\\); columns: answer, prompt"
    ):
        load_hub_benchmark("amc23", repo=str(folder))


def test_without_a_local_folder_a_benchmark_comes_from_the_hub_and_offline_says_what_to_do(
    no_local_benchmarks,
):
    with pytest.raises(BenchmarkUnavailable) as info:
        load_benchmark("math500")

    message = str(info.value)
    assert "\n" not in message
    assert "HuggingFaceH4/MATH-500" in message  # it went to the hub, for the right dataset
    assert "set GHPO_BENCHMARKS_DIR" in message and "access to the hub" in message


def test_the_benchmarks_folder_from_the_environment_wins_over_the_hub(
    no_local_benchmarks, monkeypatch, tmp_path
):
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "amc23.jsonl").write_text(
        json.dumps({"id": 7, "problem": "1+2", "answer": 3.0, "url": "u"}) + "\n"
    )
    monkeypatch.setenv("GHPO_BENCHMARKS_DIR", str(folder))

    [record] = load_benchmark("amc23").records
    assert (record.id, record.answer) == ("amc23-7", "3")
    with pytest.raises(BenchmarkUnavailable, match=r"no math500\.jsonl in .*unset GHPO_BENCHMARKS_DIR"):
        load_benchmark("math500")


def test_eval_without_benchmark_data_is_one_error_line_before_any_engine(no_local_benchmarks, capsys):
    # An unreachable inference URL: had the problems not failed first, generation would have.
    code = main(["eval", "--benchmarks", "math500", "--inference-url", "http://127.0.0.1:9"])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("ghpo eval: error: benchmark math500:") and "\n" not in err
    assert "GHPO_BENCHMARKS_DIR" in err and "Traceback" not in err


def test_data_inspect_without_benchmark_data_is_one_error_line(no_local_benchmarks, capsys):
    code = main(["data", "inspect", "olympiadbench"])

    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("ghpo data: error: benchmark olympiadbench:") and "\n" not in err


def test_missing_benchmark_files_skip_on_a_workstation_and_fail_in_ci(monkeypatch, tmp_path):
    from tests.support.benchmarks import require_benchmark_files

    def outcome() -> BaseException:
        try:
            require_benchmark_files(tmp_path)
        except BaseException as exc:  # pytest's skip and fail are BaseExceptions: caught to be compared
            return exc
        raise AssertionError("missing benchmark files were neither a skip nor a failure")

    monkeypatch.delenv("CI", raising=False)
    assert isinstance(outcome(), pytest.skip.Exception)
    monkeypatch.setenv("CI", "true")
    failed = outcome()
    assert isinstance(failed, pytest.fail.Exception), f"in CI it was {type(failed).__name__}, not a failure"
    assert "in CI the benchmark tests need their data" in str(failed)
