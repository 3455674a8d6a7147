"""deploy/prometheus: both scrape configs and the alert rules pass `promtool check`, every alert's unit tests
pass under `promtool test rules`, every alert the deployment promises exists and has a test where it fires,
and every series the rules read is one a ghpo service exports."""

from __future__ import annotations

import yaml

from tests.deploy.metric_catalog import known_series, metric_names
from tests.deploy.validators import DEPLOY, promtool_binary, run

PROM = DEPLOY / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
TEST_FILES = sorted((PROM / "tests").glob("*.yml"))
# What issue 9 asks alerts for, by the name of the alert that covers it.
REQUIRED_ALERTS = {
    "GhpoRewardCollapse",
    "GhpoDifficultFractionHigh",
    "GhpoHintSaturation",
    "GhpoZeroAdvantageFractionHigh",
    "GhpoTrainerStalled",
    "GhpoNonFiniteLoss",
    "GhpoWeightSyncFailing",
    "GhpoPolicyLagHigh",
    "GhpoVerifierTimeouts",
    "GhpoTargetDown",
}


def rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def test_scrape_configs_are_valid_and_load_the_rules():
    result = run([promtool_binary(), "check", "config", "prometheus.yml", "prometheus-k8s.yml"], cwd=PROM)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("1 rule files found") == 2  # rules/*.yml resolves next to each config


def test_alert_rules_are_valid():
    result = run([promtool_binary(), "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rule_unit_tests_pass():
    assert TEST_FILES
    result = run([promtool_binary(), "test", "rules", *map(str, TEST_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_required_alert_exists_and_has_a_unit_test_where_it_fires():
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts >= REQUIRED_ALERTS, REQUIRED_ALERTS - alerts
    firing = {
        case["alertname"]
        for path in TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts <= firing, f"alerts never shown to fire: {alerts - firing}"
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_rules_read_only_series_the_services_export():
    known = known_series()
    for rule in rules():
        unknown = metric_names(rule["expr"]) - known
        assert not unknown, f"{rule.get('alert') or rule.get('record')}: unknown series {unknown}"
