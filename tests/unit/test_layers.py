"""Imports run one way: ghpo.shared <- ghpo.services <- ghpo.trainer <- ghpo (cli, commands, local).

Every module of the four packages is parsed (not imported) and every import in it, at module level or
inside a function, is checked: a module may import its own layer or a lower one, never a higher one, and
never the repository's `tests` or `bench` folders. `importlib.import_module("ghpo....")` with a literal
(or f-string) prefix counts as an import too. A failure names file:line and both layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# folder -> (import root, layer); `ghpo/` holds the CLI layer (cli, commands, local, errors).
FOLDERS = {"shared": ("ghpo.shared", 0), "services": ("ghpo.services", 1), "trainer": ("ghpo.trainer", 2)}
CLI = ("ghpo", 3)
NAMES = {0: "shared", 1: "services", 2: "trainer", 3: "ghpo CLI"}
OUTSIDE = ("tests", "bench")  # repository folders no package module may import


def layer_of(module: str) -> int | None:
    """The layer an absolute module name belongs to; None for anything outside ghpo, and for the root
    package `ghpo` itself (its __init__ holds only `__version__`, and every `ghpo.*` import loads it)."""
    for root, layer in FOLDERS.values():
        if module == root or module.startswith(root + "."):
            return layer
    if module == "ghpo" or module.startswith("ghpo.__"):
        return None
    if module.startswith("ghpo."):
        return CLI[1]
    return None


def modules() -> list[tuple[Path, str, int]]:
    """(file, dotted module name, layer) for every module of the four packages."""
    found = []
    for folder, (root, layer) in [*FOLDERS.items(), ("ghpo", CLI)]:
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found.append((path, ".".join((root, *parts)), layer))
    return found


def _literal_prefix(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return str(node.values[0].value).rstrip(".")
    return None


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, wherever it stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names if base == "ghpo"]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and (name := _literal_prefix(node.args[0])) is not None
        ):
            found.append((node.lineno, name))
    return found


def violations() -> list[str]:
    problems = []
    for path, module, layer in modules():
        where = path.relative_to(REPO)
        for line, name in imports(path, module):
            top = name.split(".")[0]
            if top in OUTSIDE:
                problems.append(f"{where}:{line}: imports {name} (the repository's {top}/ folder)")
                continue
            target = layer_of(name)
            if target is not None and target > layer:
                problems.append(
                    f"{where}:{line}: {NAMES[layer]} module {module} imports {name} ({NAMES[target]})"
                )
    return problems


def test_every_package_is_found_and_parsed():
    found = modules()
    assert {layer for _, _, layer in found} == {0, 1, 2, 3}
    assert len(found) > 100
    assert any(name == "ghpo.shared.algorithm.config" for _, name, _ in found)


def test_imports_only_go_down_the_layers():
    problems = violations()
    assert not problems, "imports against the layers shared <- services <- trainer <- ghpo:\n" + "\n".join(
        problems
    )


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        ("ghpo.shared.algorithm.config", 0),
        ("ghpo.services.rollout.sampler", 1),
        ("ghpo.trainer.train.loop", 2),
        ("ghpo.cli", 3),
        ("ghpo.local.stack", 3),
        ("ghpo", None),
        ("ghpo.__version__", None),
        ("ghpo.errors", 3),
        ("torch", None),
        ("ghpo_other", None),
    ],
)
def test_module_names_map_to_their_layer(module, layer):
    assert layer_of(module) == layer


def test_a_function_local_and_a_relative_import_are_seen(tmp_path):
    path = tmp_path / "sampler.py"
    path.write_text(
        "def f():\n    from ghpo.trainer.core import loss\n\n"
        "from ..broker import policies\n"
        "import importlib\nimportlib.import_module(f'ghpo.trainer.train.{name}')\n"
    )
    found = imports(path, "ghpo.services.rollout.sampler")
    assert (2, "ghpo.trainer.core") in found
    assert (4, "ghpo.services.broker") in found
    assert (6, "ghpo.trainer.train") in found
