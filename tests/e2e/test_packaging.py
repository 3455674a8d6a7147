"""The wheel installs the user's top-level folders under the single `ghpo` import root."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_wheel_installs_ghpo_packages_that_import_from_site_packages_not_checkout(tmp_path):
    # Build from a copy of the tracked sources: an in-tree build would leave build/ behind, and
    # setuptools reuses a stale build/lib on the next build.
    src = tmp_path / "src"
    tracked = subprocess.check_output(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, text=True)
    for rel in tracked.split():
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            dist,
            src,
        ],
        check=True,
    )
    (wheel,) = dist.glob("ghpo-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    # Third-party dependencies come from the test environment; ghpo itself must come from the wheel.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", py, "install", "--quiet", "--no-deps", wheel], check=True
    )

    probe = (
        "import ghpo, ghpo.cli, ghpo.shared, ghpo.services, ghpo.trainer\n"
        "for m in (ghpo, ghpo.shared, ghpo.services, ghpo.trainer): print(m.__file__)\n"
    )
    out = subprocess.check_output(
        [py, "-I", "-c", probe], cwd=tmp_path, text=True, env={**os.environ, "PYTHONPATH": ""}
    )
    files = [Path(line) for line in out.split()]
    assert len(files) == 4
    for f in files:
        assert f.is_relative_to(site / "ghpo"), f
        assert not f.is_relative_to(ROOT)
    assert (
        not (site / "shared").exists()
        and not (site / "trainer").exists()
        and not (site / "services").exists()
    )

    help_text = subprocess.check_output([venv / "bin" / "ghpo", "--help"], cwd=tmp_path, text=True)
    assert "serve" in help_text
