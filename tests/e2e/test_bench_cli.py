"""`ghpo bench --quick --only <script>` runs a real bench script and writes its figure into BENCHMARKS.md."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ghpo.cli import main
from ghpo.local.bench import default_bench_dir, load_registry, unregistered


@pytest.mark.slow
def test_quick_bench_of_one_script_writes_its_figure_and_lists_the_others_as_not_run(tmp_path):
    out = tmp_path / "BENCHMARKS.md"

    proc = subprocess.run(
        [sys.executable, "-m", "ghpo", "bench", "--quick", "--only", "verifier_realdata", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert proc.returncode == 0, proc.stderr[-3000:]
    md = out.read_text()
    assert "## Machine" in md and "- cpu: " in md and "- torch: " in md
    figure_rows = [line for line in md.splitlines() if "verifier.own_solution_scores_1" in line]
    assert len(figure_rows) == 1
    assert "`python bench/verifier_realdata.py --quick`" in figure_rows[0]
    assert "| verifier_realdata.py | ok |" in md
    # The registered scripts --only left out are listed as not run, so a partial file says it is partial.
    assert "| verifier_throughput.py | not run | 0 | `python bench/verifier_throughput.py --quick` |" in md
    assert "- load average (1/5/15 min), start → end: " in md


def test_bench_only_with_an_unregistered_name_is_refused_naming_the_flag(tmp_path, capsys):
    code = main(["bench", "--only", "no_such_bench", "--out", str(tmp_path / "B.md")])

    assert code == 2
    assert "--only" in capsys.readouterr().err
    assert not (tmp_path / "B.md").exists()


def test_every_bench_script_is_registered_or_says_why_not_and_every_registered_script_exists():
    bench_dir = default_bench_dir()
    registry = load_registry(bench_dir)

    # `ghpo bench` (and CI's smoke run) skip an unlisted script: that must be a stated choice in it.
    silent = [
        s for s in unregistered(bench_dir, registry) if "registry.toml" not in (bench_dir / s).read_text()
    ]
    assert silent == []
    assert [b.script for b in registry if not (bench_dir / b.script).is_file()] == []
    assert all("--quick" in (bench_dir / b.script).read_text() for b in registry)


def test_failing_script_has_its_output_tail_on_stderr_and_the_run_exits_nonzero(tmp_path, capsys):
    # CI keeps only the console, not BENCHMARKS.md: the reason a script failed must reach stderr.
    (tmp_path / "registry.toml").write_text('[[bench]]\nscript = "broken.py"\narea = "x"\n')
    (tmp_path / "broken.py").write_text("raise RuntimeError('no rollout step finished in the window')\n")
    out = tmp_path / "B.md"

    code = main(["bench", "--quick", "--bench-dir", str(tmp_path), "--out", str(out), "--timeout", "60"])

    assert code == 1
    err = capsys.readouterr().err
    assert "broken.py: failed" in err
    assert "RuntimeError: no rollout step finished in the window" in err
    assert "no rollout step finished" in out.read_text()
