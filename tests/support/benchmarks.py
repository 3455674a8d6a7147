"""The benchmark files for tests, and what happens where they are missing: a skip on a developer's
machine, a failure in CI (`CI=true`), where missing data means a broken setup, not a partial checkout.

Fixture (loaded as a pytest plugin by tests/conftest.py): `benchmark_files` -- session-scoped path of the
folder of published benchmark files (../shared/data/benchmarks next to the checkout). Mark a test that
needs them with `needs_benchmarks`. Deliberately no copy of the files here: they are not the project's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "benchmarks"
needs_benchmarks = pytest.mark.usefixtures("benchmark_files")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_benchmark_files(folder: Path = BENCH_DIR) -> Path:
    """`folder` when it holds the benchmark files; else skip the test, or fail it in CI."""
    if not (folder / "math500.jsonl").is_file():
        reason = f"benchmark files not found at {folder} (../shared/data/benchmarks from the repo root)"
        if in_ci():
            pytest.fail(f"{reason}; in CI the benchmark tests need their data")
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="session")
def benchmark_files() -> Path:
    return require_benchmark_files()
