"""Replica discovery by DNS (ghpo.shared.replica_dns), shared by the rollout server and the trainer, and
the trainer config's `services.inference_dns`."""

from __future__ import annotations

import pytest

from ghpo.shared.replica_dns import replica_urls
from ghpo.trainer.train.config import ConfigError, parse_config


def test_a_dns_name_resolves_to_one_url_per_address_with_the_system_resolver():
    assert "http://127.0.0.1:8103/v1" in replica_urls("http://localhost:8103/v1")


def test_each_distinct_address_becomes_one_url_keeping_scheme_port_and_path():
    seen = []

    def lookup(host: str, port: int) -> list[str]:
        seen.append((host, port))
        return ["10.0.0.2", "fd00::7", "10.0.0.1", "10.0.0.2"]  # resolvers repeat addresses per family

    assert replica_urls("https://inference.ghpo.svc/base", lookup) == [
        "https://10.0.0.1:443/base",
        "https://10.0.0.2:443/base",
        "https://[fd00::7]:443/base",
    ]
    assert seen == [("inference.ghpo.svc", 443)]


def test_a_url_without_a_host_name_is_refused():
    with pytest.raises(ValueError, match="has no host name"):
        replica_urls("inference:8103")


def test_trainer_config_takes_an_inference_dns_url_and_refuses_one_without_a_host():
    base = {"model": {"path": "/m"}, "run": {"steps": 1, "checkpoint_dir": "/c"}}
    config = parse_config(base | {"services": {"inference_dns": "http://inference:8103"}})
    assert config.services.inference_dns == "http://inference:8103"
    assert config.services.dns_refresh_s == 0.0
    with pytest.raises(ConfigError, match=r"services\.inference_dns: .*host name"):
        parse_config(base | {"services": {"inference_dns": "inference"}})
