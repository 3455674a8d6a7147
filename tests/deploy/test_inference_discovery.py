"""Inference replicas are discovered, not listed: in every Kubernetes overlay the trainer's mounted config
and the rollout server resolve the same headless Service, so scaling inference needs no config change."""

from __future__ import annotations

import tomllib
from urllib.parse import urlsplit

import pytest

from ghpo.trainer.train.config import parse_config
from tests.deploy.test_k8s import IDS, OVERLAYS, objects, pod_spec


@pytest.mark.parametrize("overlay", OVERLAYS, ids=IDS)
def test_trainer_and_rollout_find_inference_replicas_through_the_headless_service(overlay):
    objs = objects(overlay)
    (config_map,) = [
        o for (kind, name), o in objs.items() if kind == "ConfigMap" and "trainer-config" in name
    ]
    services = parse_config(tomllib.loads(config_map["data"]["trainer.toml"])).services
    rollout_env = {e["name"]: e.get("value") for e in pod_spec(overlay, "rollout")["containers"][0]["env"]}
    assert services.inference_urls == []  # nothing per replica to keep in step with the Deployment
    assert services.inference_dns == rollout_env["GHPO_ROLLOUT_INFERENCE_DNS"]
    name = urlsplit(services.inference_dns).hostname
    service = objs[("Service", name)]
    assert service["spec"]["clusterIP"] == "None"  # headless: one A record per ready pod, not one VIP
    selector = service["spec"]["selector"]
    labels = objs[("Deployment", "inference")]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    port = urlsplit(services.inference_dns).port
    assert port in [p["port"] for p in service["spec"]["ports"]]
