"""Parquet and Hugging Face dataset sources give the same records as the JSON Lines they were made from.

The Hugging Face paths run for real through `datasets`: a folder written by `Dataset.save_to_disk`, and
`datasets.load_dataset(<folder of data files>)` — the same call that takes a hub name on a machine that
can reach the hub. Rows are small hand-written problems, so these tests need no benchmark files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ghpo.shared.data import FieldMapping, SourceFormatError, load_prompts

ROWS = [
    {
        "uid": "a1",
        "question": "What is 1 + 1?",
        "sol": ["1 + 1 = \\boxed{2}", "alt"],
        "final": ["$2$"],
        "lvl": "Level 1",
    },
    {
        "uid": "a2",
        "question": "Half of 1?",
        "sol": ["It is \\boxed{\\frac{1}{2}}"],
        "final": ["\\frac{1}{2}"],
        "lvl": "3",
    },
    {"uid": "a3", "question": "Roots of x^2=4?", "sol": ["x = \\pm 2"], "final": ["-2", "2"], "lvl": None},
    {"uid": "a4", "question": "", "sol": ["none"], "final": ["1"], "lvl": "1"},
]
MAPPING = FieldMapping(problem="question", answer="final", solution="sol", id="uid", level="lvl")


def jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "toy.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_list_cells_levels_and_ids_map_as_documented(tmp_path):
    result = load_prompts(jsonl(tmp_path), MAPPING)

    assert [r.id for r in result.records] == ["toy-a1", "toy-a2", "toy-a3"]
    assert [r.answer for r in result.records] == ["2", "\\frac{1}{2}", "-2, 2"]
    assert [r.level for r in result.records] == [1, 3, None]
    assert result.records[0].solution == "1 + 1 = \\boxed{2}"
    assert result.report.skipped == {"missing_problem": 1}


def test_parquet_round_trip_gives_the_same_records(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "toy.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)

    from_parquet = load_prompts(path, MAPPING)
    from_jsonl = load_prompts(jsonl(tmp_path), MAPPING)
    assert from_parquet.records == from_jsonl.records
    assert from_parquet.report.skipped == from_jsonl.report.skipped
    assert from_parquet.report.examples[0].location == "row 4"


def test_parquet_mapping_to_a_missing_column_fails_before_reading_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "toy.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)

    with pytest.raises(ValueError, match="no column 'problem'"):
        load_prompts(path)


def test_saved_hugging_face_dataset_round_trip(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "toy_saved"
    datasets.Dataset.from_list(ROWS).save_to_disk(str(folder))

    result = load_prompts(folder, MAPPING, name="toy")

    assert result.records == load_prompts(jsonl(tmp_path), MAPPING).records


def test_saved_dataset_dict_needs_a_split_when_it_has_several(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "toy_dict"
    datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS[:2]), "test": datasets.Dataset.from_list(ROWS[2:])}
    ).save_to_disk(str(folder))

    with pytest.raises(SourceFormatError, match="choose a split with --split; it has test, train"):
        load_prompts(folder, MAPPING, name="toy")
    assert [r.id for r in load_prompts(folder, MAPPING, name="toy", split="train").records] == [
        "toy-a1",
        "toy-a2",
    ]


def test_load_dataset_path_reads_a_folder_of_data_files(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    folder = tmp_path / "toy_repo"
    folder.mkdir()
    (folder / "train.jsonl").write_text(jsonl(tmp_path).read_text())

    result = load_prompts(str(folder), MAPPING, fmt="hf", split="train", name="toy")

    assert [r.id for r in result.records] == ["toy-a1", "toy-a2", "toy-a3"]


def test_unknown_suffix_asks_for_a_format(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("hello\n")

    with pytest.raises(SourceFormatError, match=r"prompts\.txt: cannot tell the format"):
        load_prompts(path)


def test_loading_never_imports_torch(tmp_path):
    path = jsonl(tmp_path)
    code = (
        "import sys; from ghpo.shared.data import load_prompts, FieldMapping; "
        f"m = FieldMapping(problem='question', answer='final', solution='sol', id='uid', level='lvl'); "
        f"assert len(load_prompts({str(path)!r}, m).records) == 3; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
