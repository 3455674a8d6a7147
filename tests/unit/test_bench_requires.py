"""A bench script run directly without its optional dependency says in one line which extra installs it
and exits non-zero, instead of a ModuleNotFoundError traceback. The dependency is made unimportable in a
real subprocess (a sitecustomize on PYTHONPATH puts None in sys.modules for it, as if not installed)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
REGISTRY = tomllib.loads((BENCH / "registry.toml").read_text())


def run_without(tmp_path: Path, script: str, modules: list[str], *args: str) -> subprocess.CompletedProcess:
    shim = tmp_path / "shim"
    shim.mkdir(exist_ok=True)
    (shim / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({modules!r}))\n")
    path = os.pathsep.join(p for p in (str(shim), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        cwd=BENCH.parent,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_peer_trl_without_trl_names_the_dev_extra_and_exits_non_zero(tmp_path):
    proc = run_without(tmp_path, "peer_trl.py", ["trl"], "--quick")
    assert proc.returncode == 2
    assert proc.stderr == "bench/peer_trl.py needs trl (not installed): pip install -e '.[dev]'\n"
    assert proc.stdout == ""


@pytest.mark.parametrize("script", [b["script"] for b in REGISTRY["bench"]])
def test_every_bench_script_checks_its_extras_before_importing_them(tmp_path, script):
    proc = run_without(tmp_path, script, sorted(REGISTRY["extras"]), "--quick")
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"bench/{script} needs ") and " (not installed): pip install -e '.[" in line
