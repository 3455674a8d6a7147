"""deploy/docker: both Dockerfiles parse with BuildKit's own parser and build a non-root, health-checked,
multi-stage image from files that exist; the entrypoint turns secret files into settings variables; the
health probe script answers for a real running service. No image is built (no Docker engine here)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ghpo.services.broker.app import create_app
from ghpo.services.broker.settings import Settings
from tests.deploy.validators import REPO, run, shellcheck_binary

DOCKER = REPO / "deploy" / "docker"
ENTRYPOINT = DOCKER / "entrypoint.sh"
HEALTHCHECK = DOCKER / "healthcheck.py"


def parse(name: str):
    dockerfile = pytest.importorskip(
        "dockerfile", reason="PyPI dockerfile; deploy/tools/install-validators.sh"
    )
    return dockerfile.parse_file(str(DOCKER / name))


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfile_is_multi_stage_non_root_and_health_checked(name):
    commands = parse(name)
    stages = [i for i, c in enumerate(commands) if c.cmd == "FROM"]
    assert len(stages) >= 2, "build stage + runtime stage"
    final = commands[stages[-1] :]
    users = [c.value[0] for c in final if c.cmd == "USER"]
    assert users and not users[-1].startswith(("0", "root")), users
    assert any(c.cmd == "HEALTHCHECK" for c in final)
    entrypoint = next(c for c in final if c.cmd == "ENTRYPOINT")
    assert entrypoint.value == ("tini", "--", "/opt/ghpo/entrypoint.sh")
    assert any(c.cmd == "COPY" and "--from=build" in c.flags for c in final), "runtime copies the built venv"


@pytest.mark.parametrize("name", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_dockerfile_copies_only_files_that_exist_and_its_dockerignore_keeps(name):
    ignore = (DOCKER / f"{name}.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for command in parse(name):
        if command.cmd != "COPY" or any(f.startswith("--from") for f in command.flags):
            continue
        for source in command.value[:-1]:
            assert (REPO / source).exists(), f"{name}: COPY {source}: no such path"
            assert source.rstrip("/") in kept, f"{name}: COPY {source} is excluded by the .dockerignore"


def test_gpu_image_installs_the_gpu_extra_and_cpu_image_pins_cpu_torch():
    gpu = (DOCKER / "Dockerfile.gpu").read_text()
    cpu = (DOCKER / "Dockerfile.cpu").read_text()
    assert 'pip install ".[gpu,all]"' in gpu and "nvidia/cuda:" in gpu
    assert "ARG TORCH_VERSION=2.13.0" in cpu and '".[all,inference-cpu]"' in cpu
    assert "pip uninstall -y torchvision torchaudio torchcodec" in cpu


def test_entrypoint_passes_shellcheck():
    result = run(
        [shellcheck_binary(), str(ENTRYPOINT), str(REPO / "deploy" / "tools" / "install-validators.sh")]
    )
    assert result.returncode == 0, result.stdout


def entrypoint(env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    return run([str(ENTRYPOINT), *command], env={"PATH": os.environ["PATH"], **env})


def test_entrypoint_turns_secret_files_into_settings_variables(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret-value\n")  # the trailing newline `echo > file` leaves must not end up in it
    result = entrypoint({"GHPO_BROKER_TOKEN_FILE": str(secret), "OTHER_FILE": "/nope"}, "env")
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["GHPO_BROKER_TOKEN"] == "s3cret-value"
    assert "GHPO_BROKER_TOKEN_FILE" not in env
    assert env["OTHER_FILE"] == "/nope"  # only GHPO_* variables are read from files


def test_entrypoint_refuses_a_variable_set_both_ways_or_an_unreadable_file(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("x")
    both = entrypoint({"GHPO_BROKER_TOKEN": "a", "GHPO_BROKER_TOKEN_FILE": str(secret)}, "true")
    assert both.returncode == 64 and "GHPO_BROKER_TOKEN" in both.stderr
    missing = entrypoint({"GHPO_BROKER_TOKEN_FILE": str(tmp_path / "absent")}, "true")
    assert missing.returncode == 66 and "GHPO_BROKER_TOKEN_FILE" in missing.stderr


def test_healthcheck_script_passes_for_a_ready_service_and_fails_for_a_dead_port(serve_app, redis_url):
    base = serve_app(create_app(Settings(redis_url=redis_url)))
    ok = run([sys.executable, str(HEALTHCHECK), f"{base}/readyz"])
    assert ok.returncode == 0, ok.stderr
    not_found = run([sys.executable, str(HEALTHCHECK), f"{base}/no-such-route"])
    assert not_found.returncode == 1
    dead = run([sys.executable, str(HEALTHCHECK), "http://127.0.0.1:9/readyz"])
    assert dead.returncode == 1 and "unhealthy" in dead.stderr
