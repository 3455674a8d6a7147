"""deploy/grafana: provisioning points at the compose Prometheus and the dashboard folder; the dashboard's
first row is reward sparsity (difficult fraction, zero-advantage fraction, hint-level distribution, plain
vs hinted rollout accuracy, named `acc` and `hinted acc` as `ghpo run` names them); a reward panel says the
reward holds a format term; every query parses (promtool, as recording rules) and names only series a
ghpo service exports. No Grafana server runs here, so the JSON is checked structurally."""

from __future__ import annotations

import json

import yaml

from tests.deploy.metric_catalog import known_series, metric_names
from tests.deploy.validators import DEPLOY, promtool_binary, run

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "ghpo.json"
DATASOURCE_UID = "ghpo-prometheus"
# Grafana's range macros, replaced by a plain duration for promtool.
MACROS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def queries(panel: dict) -> list[str]:
    return [target["expr"] for target in panel.get("targets", [])]


def test_provisioning_points_at_prometheus_and_the_dashboard_folder():
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["uid"] == DATASOURCE_UID
    assert source["url"] == "http://prometheus:9090"  # the compose service
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ghpo.yml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/etc/grafana/dashboards"


def test_first_row_of_the_dashboard_is_reward_sparsity():
    panels = dashboard()["panels"]
    assert panels[0]["type"] == "row" and panels[0]["title"] == "Reward sparsity"
    next_row = next(i for i, p in enumerate(panels[1:], 1) if p["type"] == "row")
    first_row = panels[1:next_row]
    titles = [p["title"] for p in first_row]
    assert titles[:4] == [
        "Difficult fraction",
        "Zero-advantage fraction",
        "Hint-level distribution",
        "acc vs hinted acc",
    ]
    exprs = {p["title"]: " ".join(queries(p)) for p in first_row}
    assert "ghpo_rollout_difficult_groups_total" in exprs["Difficult fraction"]
    assert "ghpo_rollout_zero_advantage_groups_total" in exprs["Zero-advantage fraction"]
    assert "by (final_level)" in exprs["Hint-level distribution"]
    accuracy = next(p for p in first_row if p["title"] == "acc vs hinted acc")
    legends = {t["legendFormat"]: t["expr"] for t in accuracy["targets"]}
    assert 'hinted="false"' in legends["acc (plain rounds)"]  # the step line's names for the same figures
    assert 'hinted="true"' in legends["hinted acc (hinted rounds)"]
    assert [p["title"] for p in panels if p["type"] == "row"] == [
        "Reward sparsity",
        "Throughput",
        "Latency",
        "Trainer",
    ]


def test_a_reward_panel_names_the_format_term_in_its_title():
    rewards = [p for p in dashboard()["panels"] if "reward_mean" in " ".join(queries(p))]
    assert rewards and all(p["title"] == "Batch reward (accuracy + format)" for p in rewards)


def test_panels_use_the_provisioned_datasource_and_do_not_overlap():
    board = dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel at {(x, y)}"
                cells.add((x, y))
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == DATASOURCE_UID and queries(panel), panel["title"]
            assert all(t["datasource"]["uid"] == DATASOURCE_UID for t in panel["targets"])


def test_every_query_parses_as_promql(tmp_path):
    exprs = [e for panel in dashboard()["panels"] for e in queries(panel)]
    for macro, value in MACROS.items():
        exprs = [e.replace(macro, value) for e in exprs]
    as_rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(as_rules))
    result = run([promtool_binary(), "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_every_query_names_only_series_the_services_export():
    known = known_series()
    for panel in dashboard()["panels"]:
        for expr in queries(panel):
            names = metric_names(expr)
            assert names, f"{panel['title']}: no metric in {expr}"
            assert names <= known, f"{panel['title']}: unknown series {names - known}"
