"""docker-compose.yml validated by a real Compose v2 binary (`config`, offline) for both profiles, plus the
start-order and health-check properties the deployment relies on. No Docker engine is needed or used."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from ghpo.services.verifier.settings import Settings
from ghpo.shared.settings import SettingsError, build_settings
from tests.deploy.render import compose, compose_config
from tests.deploy.validators import REPO, run

COMMON = {"redis", "model-init", "verifier", "broker", "rollout", "prometheus", "grafana"}
PROFILES = {"gpu": COMMON | {"inference", "trainer"}, "cpu": COMMON | {"inference-cpu", "trainer-cpu"}}
# Test ids are "gpu-profile"/"cpu-profile": a bare "gpu" keyword would make tests/conftest.py skip them.
PORTS = {"verifier": 8101, "broker": 8102, "inference": 8103, "inference-cpu": 8103, "rollout": 8104}


@pytest.mark.parametrize("profile", sorted(PROFILES), ids=lambda p: f"{p}-profile")
def test_compose_file_validates_and_enables_the_profile_services(profile):
    result = compose("config", "--quiet", profile=profile)
    assert result.returncode == 0, result.stderr
    assert set(compose_config(profile)["services"]) == PROFILES[profile]


def test_compose_validation_rejects_a_dependency_on_an_undefined_service(tmp_path):
    broken = (
        (REPO / "docker-compose.yml")
        .read_text()
        .replace(
            "      redis: {condition: service_healthy}\n", "      redsi: {condition: service_healthy}\n", 1
        )
    )
    assert "redsi" in broken
    path = tmp_path / "docker-compose.yml"
    path.write_text(broken)
    shutil.copytree(REPO / "deploy", tmp_path / "deploy")  # relative paths (configs, volumes) still resolve
    result = compose("config", "--quiet", profile="gpu", compose_file=path)
    assert result.returncode != 0
    assert "redsi" in result.stderr


@pytest.mark.parametrize("profile", sorted(PROFILES), ids=lambda p: f"{p}-profile")
def test_ghpo_services_probe_their_own_port_and_start_after_healthy_dependencies(profile):
    services = compose_config(profile)["services"]
    for name, service in services.items():
        assert "healthcheck" in service or name == "model-init", f"{name} has no healthcheck"
        for dep, spec in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dep == "model-init" else "service_healthy"
            assert spec["condition"] == expected, f"{name} -> {dep}: {spec}"
        if name in PORTS:
            probe = " ".join(service["healthcheck"]["test"])
            assert f"127.0.0.1:{PORTS[name]}/readyz" in probe, f"{name}: {probe}"
            assert service["command"][:2] == ["ghpo", "serve"]
    assert set(services["rollout"]["depends_on"]) >= {"redis", "verifier", "broker"}
    trainer = services["trainer" if profile == "gpu" else "trainer-cpu"]
    assert trainer["command"] == ["ghpo", "train", "--config", "/etc/ghpo/trainer.toml"]
    assert "rollout" in trainer["depends_on"]


def test_gpu_profile_reserves_nvidia_gpus_and_cpu_profile_reserves_none():
    gpu, cpu = compose_config("gpu")["services"], compose_config("cpu")["services"]
    for name in ("inference", "trainer"):
        devices = gpu[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    for name, service in cpu.items():
        assert "devices" not in json.dumps(service.get("deploy", {})), name
    assert gpu["inference"]["environment"]["GHPO_INFERENCE_DEVICE"] == "cuda"
    assert cpu["inference-cpu"]["environment"]["GHPO_INFERENCE_DEVICE"] == "cpu"
    # Clients and Prometheus reach either variant by the same names.
    assert "inference" in cpu["inference-cpu"]["networks"]["default"]["aliases"]
    assert "trainer" in cpu["trainer-cpu"]["networks"]["default"]["aliases"]


def test_service_token_and_redis_url_come_from_secrets_not_plain_environment():
    services = compose_config("gpu")["services"]
    for name in ("verifier", "broker", "inference", "rollout", "trainer"):
        env = services[name]["environment"]
        secrets = {s["source"] for s in services[name]["secrets"]}
        assert "ghpo_token" in secrets
        token_vars = [k for k in env if k.endswith("TOKEN_FILE")]
        assert token_vars and all(env[k] == "/run/secrets/ghpo_token" for k in token_vars), name
        assert not any(k.endswith("_TOKEN") or k.endswith("_REDIS_URL") for k in env), name
    assert services["broker"]["environment"]["GHPO_BROKER_REDIS_URL_FILE"] == "/run/secrets/redis_url"
    assert "redis_password" in {s["source"] for s in services["redis"]["secrets"]}


def test_prometheus_and_grafana_mount_the_repository_config():
    services = compose_config("gpu")["services"]
    sources = {
        name: {
            Path(v["source"]).relative_to(REPO).as_posix()
            for v in services[name]["volumes"]
            if v["type"] == "bind"
        }
        for name in ("prometheus", "grafana", "redis")
    }
    assert sources["prometheus"] == {"deploy/prometheus/prometheus.yml", "deploy/prometheus/rules"}
    assert sources["grafana"] == {"deploy/grafana/provisioning", "deploy/grafana/dashboards"}
    assert sources["redis"] == {"deploy/redis/redis.conf"}
    for source in set().union(*sources.values()):
        assert (REPO / source).exists(), source


def test_model_init_puts_the_tiny_model_where_inference_reads_it_and_keeps_an_existing_one(tmp_path):
    services = compose_config("cpu")["services"]
    command = services["model-init"]["command"]
    assert command[:2] == ["python", "-c"]
    assert services["inference-cpu"]["environment"]["GHPO_INFERENCE_MODEL"] == "/models/policy"
    target = tmp_path / "policy"
    code = command[2].replace("/models/policy", str(target))  # the tiny model is cached by `make tiny-model`
    first = run([sys.executable, "-c", code])
    assert first.returncode == 0, first.stderr
    assert (target / "config.json").is_file() and (target / "model.safetensors").is_file()
    (target / "model.safetensors").unlink()  # a folder with a config.json is a model someone put there
    second = run([sys.executable, "-c", code])
    assert second.returncode == 0, second.stderr
    assert not (target / "model.safetensors").exists()


def test_example_environment_wires_the_redis_password_into_the_url_and_keeps_a_refused_placeholder_token():
    result = compose("config", "--environment", profile="gpu")
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["GHPO_REDIS_URL"] == f"redis://:{env['REDIS_PASSWORD']}@redis:6379/0"
    with pytest.raises(SettingsError, match="too weak"):
        build_settings(Settings, environment="production", token=env["GHPO_TOKEN"])
