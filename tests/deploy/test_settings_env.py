"""Every GHPO_<SERVICE>_* variable that docker-compose.yml or the Kubernetes manifests set names a real field
of that service's Settings (pydantic-settings ignores unknown variables, so a misspelt one would silently
leave the default in place), and every GHPO_ALGORITHM_* one a GHPOConfig key; the trainer gets only its
token and the GHPO settings that way; the GHPO settings are one block, set once per deployment form and
given alike to the broker, the rollout server and the trainer; and the trainer configs they mount load
with the trainer's own parser, taking the token and the GHPO settings from the environment."""

from __future__ import annotations

import importlib

import pytest
import yaml

from ghpo.shared.algorithm.config import GHPOConfig
from ghpo.shared.algorithm.environment import ENV_PREFIX, from_environment
from ghpo.trainer.train.config import TOKEN_ENV, load_config
from tests.deploy.render import compose_config, kustomize_build
from tests.deploy.validators import DEPLOY, REPO

SERVICES = ("verifier", "broker", "inference", "rollout")
GHPO_TAKERS = ("broker", "rollout", "trainer")  # the components that take the GHPO settings
TRAINER_ENV = (TOKEN_ENV, "GHPO_TRAINER_ENVIRONMENT")


def settings_fields(service: str) -> set[str]:
    return set(importlib.import_module(f"ghpo.services.{service}.settings").Settings.model_fields)


def assert_known(variables: set[str], where: str) -> int:
    checked = 0
    for var in variables:
        if var.startswith(ENV_PREFIX):
            key = var.removeprefix(ENV_PREFIX).lower()
            assert key in GHPOConfig.model_fields, f"{where}: {var} is not a GHPOConfig key"
            checked += 1
        if var.startswith("GHPO_TRAINER_"):  # configured by its TOML file, but for the token and environment
            assert var.removesuffix("_FILE") in TRAINER_ENV, f"{where}: the trainer does not read {var}"
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
    maps = config_maps(overlay)
    for spec in pod_specs(overlay).values():
        for container in spec["containers"] + spec.get("initContainers", []):
            variables |= {e["name"] for e in container.get("env", [])}
            variables |= {
                var for ref in container.get("envFrom", []) for var in maps[ref["configMapRef"]["name"]]
            }
    assert assert_known(variables, f"deploy/k8s ({overlay})") >= 20


def pod_specs(overlay: str) -> dict[str, dict]:
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in yaml.safe_load_all(kustomize_build(overlay))
        if doc and doc["kind"] in {"Deployment", "StatefulSet"}
    }


def config_maps(overlay: str) -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: doc.get("data", {})
        for doc in yaml.safe_load_all(kustomize_build(overlay))
        if doc and doc["kind"] == "ConfigMap"
    }


@pytest.mark.parametrize("profile", ["gpu", "cpu"], ids=lambda p: f"{p}-profile")
def test_compose_runs_every_api_in_production_mode_the_trainers_too(profile):
    services = compose_config(profile)["services"]
    apis = [name for name in services if name.removesuffix("-cpu") in (*SERVICES, "trainer")]
    assert len(apis) == 5, apis
    for name in apis:
        prefix = (
            "GHPO_TRAINER_" if name.startswith("trainer") else f"GHPO_{name.removesuffix('-cpu').upper()}_"
        )
        assert services[name]["environment"].get(prefix + "ENVIRONMENT") == "production", name


@pytest.mark.parametrize("overlay", ["gpu", "cpu"], ids=lambda o: f"{o}-overlay")
def test_kubernetes_runs_every_api_in_production_mode_the_trainers_too(overlay):
    for name, spec in pod_specs(overlay).items():
        if name == "redis":
            continue
        env = {e["name"]: e.get("value") for e in spec["containers"][0].get("env", [])}
        assert env.get(f"GHPO_{name.upper()}_ENVIRONMENT") == "production", name


def algorithm_block(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}


@pytest.mark.parametrize("profile", ["gpu", "cpu"], ids=lambda p: f"{p}-profile")
def test_compose_gives_broker_rollout_and_trainer_the_one_ghpo_block(profile):
    services = compose_config(profile)["services"]
    takers = [name for name in services if name.removesuffix("-cpu") in GHPO_TAKERS]
    assert len(takers) == 3, takers
    blocks = {name: algorithm_block(services[name]["environment"]) for name in takers}
    block = blocks[takers[0]]
    assert block and all(b == block for b in blocks.values()), blocks
    GHPOConfig(**from_environment(block))  # valid
    for name, service in services.items():  # nobody else is given GHPO settings
        if name not in takers:
            assert not algorithm_block(service.get("environment", {})), name
    text = (REPO / "docker-compose.yml").read_text()
    assert text.count("GHPO_ALGORITHM_HINT_LADDER") == 1  # set once (an anchor), merged into each


@pytest.mark.parametrize("overlay", ["gpu", "cpu"], ids=lambda o: f"{o}-overlay")
def test_kubernetes_gives_broker_rollout_and_trainer_the_one_ghpo_configmap(overlay):
    specs, maps = pod_specs(overlay), config_maps(overlay)
    consumed = {}
    for name, spec in specs.items():
        container = spec["containers"][0]
        assert not algorithm_block({e["name"]: "" for e in container.get("env", [])}), name
        refs = [r["configMapRef"]["name"] for r in container.get("envFrom", [])]
        consumed[name] = [r for r in refs if algorithm_block(maps[r])]
    assert {name for name, refs in consumed.items() if refs} == set(GHPO_TAKERS)
    assert len({ref for refs in consumed.values() for ref in refs}) == 1  # one ConfigMap for all three
    (block,) = {tuple(sorted(maps[refs[0]].items())) for refs in consumed.values() if refs}
    assert dict(block) == algorithm_block(compose_config("gpu")["services"]["broker"]["environment"])


@pytest.mark.parametrize("variant", ["cpu", "gpu"], ids=lambda v: f"{v}-config")
def test_mounted_trainer_configs_load_and_serve_status_on_the_contract_port(variant, monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, "t" * 40)  # what the entrypoint makes of GHPO_TRAINER_TOKEN_FILE
    trainer = compose_config(variant)["services"]["trainer" if variant == "gpu" else "trainer-cpu"]
    block = algorithm_block(trainer["environment"])
    for name, value in block.items():
        monkeypatch.setenv(name, value)
    config = load_config(DEPLOY / "configs" / f"containers-{variant}.toml")
    assert config.ghpo == GHPOConfig(**from_environment(block))
    assert config.services.token == "t" * 40
    assert config.run.host == "0.0.0.0" and config.run.port == 8105
    assert config.services.rollout_url == "http://rollout:8104"
    assert config.services.push_dtype == {"cpu": "float32", "gpu": "bfloat16"}[variant]
    assert config.model.path == "/models/policy"
