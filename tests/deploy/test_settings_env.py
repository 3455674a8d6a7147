"""Every GHPO_<SERVICE>_* variable that docker-compose.yml or the Kubernetes manifests set names a real field
of that service's Settings (pydantic-settings ignores unknown variables, so a misspelt one would silently
leave the default in place); the trainer gets only its token that way; and the trainer configs they mount
load with the trainer's own parser, taking the token from the environment."""

from __future__ import annotations

import importlib

import pytest
import yaml

from ghpo.trainer.train.config import TOKEN_ENV, load_config
from tests.deploy.render import compose_config, kustomize_build
from tests.deploy.validators import DEPLOY

SERVICES = ("verifier", "broker", "inference", "rollout")


def settings_fields(service: str) -> set[str]:
    return set(importlib.import_module(f"ghpo.services.{service}.settings").Settings.model_fields)


def assert_known(variables: set[str], where: str) -> int:
    checked = 0
    for var in variables:
        if var.startswith("GHPO_TRAINER_"):  # the trainer is configured by its TOML file, but for the token
            assert var.removesuffix("_FILE") == TOKEN_ENV, f"{where}: the trainer does not read {var}"
            checked += 1
    for service in SERVICES:
        prefix = f"GHPO_{service.upper()}_"
        fields = settings_fields(service)
        for var in variables:
            if var.startswith(prefix):
                field = var[len(prefix) :].removesuffix("_FILE").lower()  # *_FILE: read by the entrypoint
                assert field in fields, f"{where}: {var} is not a field of {service} Settings"
                checked += 1
    return checked


@pytest.mark.parametrize("profile", ["gpu", "cpu"], ids=lambda p: f"{p}-profile")
def test_compose_environment_names_real_settings_fields(profile):
    services = compose_config(profile)["services"]
    variables = {var for service in services.values() for var in service.get("environment", {})}
    assert assert_known(variables, f"docker-compose.yml ({profile})") >= 20


@pytest.mark.parametrize("overlay", ["gpu", "cpu"], ids=lambda o: f"{o}-overlay")
def test_kubernetes_environment_names_real_settings_fields(overlay):
    variables = set()
    for doc in yaml.safe_load_all(kustomize_build(overlay)):
        if doc and doc["kind"] in {"Deployment", "StatefulSet"}:
            spec = doc["spec"]["template"]["spec"]
            for container in spec["containers"] + spec.get("initContainers", []):
                variables |= {e["name"] for e in container.get("env", [])}
    assert assert_known(variables, f"deploy/k8s ({overlay})") >= 20


@pytest.mark.parametrize("variant", ["cpu", "gpu"], ids=lambda v: f"{v}-config")
def test_mounted_trainer_configs_load_and_serve_status_on_the_contract_port(variant, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "t" * 40)  # what the entrypoint makes of GHPO_TRAINER_TOKEN_FILE
    config = load_config(DEPLOY / "configs" / f"containers-{variant}.toml")
    assert config.services.token == "t" * 40
    assert config.run.host == "0.0.0.0" and config.run.port == 8105
    assert config.services.rollout_url == "http://rollout:8104"
    assert config.services.push_dtype == {"cpu": "float32", "gpu": "bfloat16"}[variant]
    assert config.model.path == "/models/policy"
