"""ghpo.shared must never import torch, even transitively (services without a GPU stack use it)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import importlib, pkgutil, sys
import ghpo.shared
names = [m.name for m in pkgutil.walk_packages(ghpo.shared.__path__, "ghpo.shared.")]
for name in names:
    importlib.import_module(name)
print(len(names), "torch" in sys.modules)
"""


def test_importing_every_shared_module_does_not_import_torch():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    count, torch_loaded = result.stdout.split()
    assert int(count) >= 10
    assert torch_loaded == "False"
