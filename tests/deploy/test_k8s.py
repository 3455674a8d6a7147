"""deploy/k8s: each overlay renders with `kubectl kustomize` (offline) and validates strictly against the
Kubernetes OpenAPI schemas (kubernetes-validate, bundled schemas); then the properties the deployment relies
on: probes, GPU limits only in the gpu overlay, the headless inference Service, persistent volumes, the
token from the Secret, PDBs, and config copies identical to their sources."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.render import K8S, compose_config, kustomize_build
from tests.deploy.validators import DEPLOY, kubernetes_validate_binary, run

OVERLAYS = ["gpu", "cpu"]
IDS = [f"{o}-overlay" for o in OVERLAYS]  # a bare "gpu" id would make tests/conftest.py skip the test
GHPO = {"verifier", "broker", "inference", "rollout", "trainer"}


def objects(overlay: str) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(kustomize_build(overlay)) if d}


def pod_spec(overlay: str, name: str) -> dict:
    objs = objects(overlay)
    workload = objs.get(("Deployment", name)) or objs[("StatefulSet", name)]
    return workload["spec"]["template"]["spec"]


def validate(path: Path):
    return run([kubernetes_validate_binary(), "--strict", "--quiet", str(path)])


@pytest.mark.parametrize("overlay", OVERLAYS, ids=IDS)
def test_overlay_renders_and_validates_strictly_against_kubernetes_schemas(overlay, tmp_path):
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(kustomize_build(overlay))
    result = validate(manifest)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {kind for kind, _ in objects(overlay)}
    assert {"Namespace", "Deployment", "StatefulSet", "Service", "ConfigMap", "Secret"} <= kinds
    assert {"PodDisruptionBudget"} <= kinds
    assert all(
        d["metadata"].get("namespace") == "ghpo" for k, d in objects(overlay).items() if k[0] != "Namespace"
    )


def test_strict_schema_validation_rejects_a_misspelt_field(tmp_path):
    broken = kustomize_build("cpu").replace("containerPort: 8101", "containerPorts: 8101", 1)
    assert broken != kustomize_build("cpu")
    manifest = tmp_path / "broken.yaml"
    manifest.write_text(broken)
    result = validate(manifest)
    assert result.returncode != 0
    assert "deployment/verifier" in result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS, ids=IDS)
def test_every_ghpo_container_has_cheap_liveness_readiness_and_the_secret_token(overlay):
    for name in GHPO:
        (container,) = pod_spec(overlay, name)["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        token = next(e for e in container["env"] if e["name"] == f"GHPO_{name.upper()}_TOKEN")
        assert token["valueFrom"]["secretKeyRef"]["name"].startswith("ghpo-secrets"), name
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod_spec(overlay, "inference")["containers"][0]["startupProbe"]["failureThreshold"] >= 60


def test_gpu_overlay_limits_nvidia_gpus_and_cpu_overlay_requests_none():
    for name in ("inference", "trainer"):
        (gpu,) = pod_spec("gpu", name)["containers"]
        assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1, name
        assert gpu["image"] == "ghpo:gpu"
    assert "nvidia.com/gpu" not in kustomize_build("cpu")
    env = {e["name"]: e.get("value") for e in pod_spec("gpu", "inference")["containers"][0]["env"]}
    assert env["GHPO_INFERENCE_DEVICE"] == "cuda"
    env = {e["name"]: e.get("value") for e in pod_spec("cpu", "inference")["containers"][0]["env"]}
    assert env["GHPO_INFERENCE_DEVICE"] == "cpu" and env["GHPO_INFERENCE_DTYPE"] == "float32"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=IDS)
def test_inference_is_headless_and_redis_and_trainer_keep_state_on_volumes(overlay):
    objs = objects(overlay)
    assert objs[("Service", "inference")]["spec"]["clusterIP"] == "None"
    assert objs[("Deployment", "inference")]
    for name, mount in (("redis", "/data"), ("trainer", "/var/lib/ghpo/checkpoints")):
        sts = objs[("StatefulSet", name)]
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        mounts = {
            m["name"]: m["mountPath"]
            for m in sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        }
        assert mounts[claim["metadata"]["name"]] == mount
    rollout_env = {e["name"]: e.get("value") for e in pod_spec(overlay, "rollout")["containers"][0]["env"]}
    assert rollout_env["GHPO_ROLLOUT_INFERENCE_DNS"] == "http://inference:8103"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=IDS)
def test_pods_carry_prometheus_scrape_annotations_on_their_service_port(overlay):
    ports = {"verifier": "8101", "broker": "8102", "inference": "8103", "rollout": "8104", "trainer": "8105"}
    objs = objects(overlay)
    for name, port in ports.items():
        workload = objs.get(("Deployment", name)) or objs[("StatefulSet", name)]
        annotations = workload["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == port


def test_config_copies_under_k8s_are_identical_to_their_sources():
    assert (K8S / "base" / "redis.conf").read_text() == (DEPLOY / "redis" / "redis.conf").read_text()
    assert (K8S / "base" / "trainer.toml").read_text() == (
        DEPLOY / "configs" / "containers-cpu.toml"
    ).read_text()
    gpu_copy = K8S / "overlays" / "gpu" / "trainer.toml"
    assert gpu_copy.read_text() == (DEPLOY / "configs" / "containers-gpu.toml").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS, ids=IDS)
def test_model_init_containers_run_the_same_command_as_compose(overlay):
    expected = compose_config("cpu")["services"]["model-init"]["command"]
    for name in ("inference", "trainer"):
        (init,) = pod_spec(overlay, name)["initContainers"]
        assert init["command"] == expected, name
