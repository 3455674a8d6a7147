"""A real Prometheus server scrapes a real running ghpo service (the guidance broker on a real Redis, under
uvicorn) and the series it stores read back through Prometheus's HTTP API equal what the service itself
exports; the deployment's alert rules load into that server. `tests/support/prometheus.py` does the wiring
and takes any service's base URL (the rollout server's reward-sparsity series go through the same helper)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ghpo.services.broker.app import create_app
from ghpo.services.broker.settings import Settings
from ghpo.shared.algorithm.config import GHPOConfig
from tests.deploy.validators import DEPLOY, INSTALL_HINT
from tests.support.prometheus import prometheus_binary, running_prometheus

pytestmark = [
    pytest.mark.skipif(prometheus_binary() is None, reason=f"no prometheus server; {INSTALL_HINT}"),
    pytest.mark.slow,  # a Prometheus start plus a few 1 s scrapes
]


def outcome(prompt_id: str, results: list[tuple[int, int]]) -> dict:
    return {
        "prompt_id": prompt_id,
        "update_id": f"u-{prompt_id}",
        "step": 1,
        "policy_version": 0,
        "results": [{"level": level, "correct": correct, "G": 8} for level, correct in results],
    }


def exported(base_url: str, series: str) -> float:
    """The value of one unlabelled series on the service's own /metrics page."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == series and not sample.labels:
                return sample.value
    raise AssertionError(f"{series} not on {base_url}/metrics")


def value(result: list[dict]) -> float:
    (sample,) = result
    return float(sample["value"][1])


def test_prometheus_reads_back_the_broker_sparsity_series_it_scraped(serve_app, redis_url, tmp_path):
    base = serve_app(create_app(Settings(redis_url=redis_url, ghpo=GHPOConfig(cold_start_steps=0))))
    # Two prompts all wrong without a hint (one rescued at level 1), one solved at level 0.
    outcomes = [
        outcome("hard-1", [(0, 0), (1, 3)]),
        outcome("hard-2", [(0, 0), (1, 0)]),
        outcome("easy", [(0, 5)]),
    ]
    response = httpx.post(f"{base}/v1/outcomes", json={"outcomes": outcomes}, timeout=10)
    assert response.status_code == 200 and response.json()["applied"] == 3, response.text
    difficult = exported(base, "ghpo_broker_difficult_groups_total")  # counters are per process: >= 2
    ratio = exported(base, "ghpo_broker_difficult_ratio")
    assert difficult >= 2

    rules = sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
    with running_prometheus({"ghpo-broker": [base]}, work_dir=tmp_path / "prom", rule_files=rules) as prom:
        up = prom.wait_for('up{job="ghpo-broker"}', lambda r: len(r) == 1 and value(r) == 1.0)
        assert up[0]["metric"]["instance"] == base.removeprefix("http://")
        scraped = prom.wait_for('ghpo_broker_difficult_groups_total{job="ghpo-broker"}', bool)
        assert value(scraped) == difficult
        # The dashboard's broker panel query, evaluated by the server.
        assert value(prom.wait_for("avg(ghpo_broker_difficult_ratio)", bool)) == pytest.approx(ratio)
        by_level = prom.query('ghpo_broker_groups_total{job="ghpo-broker"}')
        assert {s["metric"]["level"] for s in by_level} == {"0", "1", "2", "3"}
        loaded = {rule["name"] for group in prom.get("/api/v1/rules")["groups"] for rule in group["rules"]}
        assert {"GhpoTargetDown", "GhpoDifficultFractionHigh", "GhpoRewardCollapse"} <= loaded
