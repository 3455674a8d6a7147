"""`ghpo data inspect` on real files: counts and skip reasons printed, bad mappings name the field."""

from __future__ import annotations

import json

from ghpo.cli import main
from tests.support.benchmarks import BENCH_DIR, needs_benchmarks


@needs_benchmarks
def test_inspect_builtin_benchmark_prints_counts_and_a_sample(capsys):
    code = main(["data", "inspect", "amc23", "--benchmarks-dir", str(BENCH_DIR), "--sample", "1"])

    out = capsys.readouterr().out
    assert code == 0
    assert "40 rows, 40 loaded, 0 skipped" in out
    assert "hintable): 0/40" in out
    assert "[amc23-0]" in out and "answer='27'" in out


def test_inspect_prints_skipped_rows_by_reason_with_examples(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    rows = [{"q": "1+1", "a": "2"}, {"q": "2+2", "a": "}{"}, {"q": "", "a": "3"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    code = main(["data", "inspect", str(path), "--map", "problem=q,answer=a"])

    out = capsys.readouterr().out
    assert code == 0
    assert "3 rows, 1 loaded, 2 skipped" in out
    assert "unparsable_answer: 1" in out and "line 2:" in out
    assert "missing_problem: 1" in out and "line 3:" in out


def test_inspect_with_a_mapping_to_a_missing_column_names_the_field(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"q": "1+1", "a": "2"}) + "\n")

    code = main(["data", "inspect", str(path), "--map", "problem=q,answer=answr"])

    err = capsys.readouterr().err
    assert code == 2
    assert "--map: field 'answer'" in err and "'answr'" in err


def test_inspect_unknown_mapping_field_and_corrupt_file_are_one_line_errors(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text("not json\n")

    assert main(["data", "inspect", str(path), "--map", "prob=q"]) == 2
    assert "field 'prob'" in capsys.readouterr().err
    assert main(["data", "inspect", str(path)]) == 2
    assert "p.jsonl, line 1: not a JSON value" in capsys.readouterr().err
