"""The rollout server's HTTP API over real HTTP and Redis, without a producer (delivery-only server):
bad input gets a 4xx naming the field, an empty queue answers 204, cursor and version round-trip."""

from __future__ import annotations

import httpx
import pytest

from ghpo.services.rollout.app import create_app
from ghpo.services.rollout.settings import Settings
from ghpo.shared.settings import SettingsError, build_settings

TOKEN = "rollout-test-token"


@pytest.fixture
def client(serve_app, redis_url):
    settings = Settings(
        redis_url=redis_url, producer_enabled=False, token=TOKEN, arith_per_level=5, arith_levels=[1, 2]
    )
    url = serve_app(create_app(settings))
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) as c:
        yield c


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_an_empty_queue_answers_204_and_status_reports_it(client):
    assert client.get("/v1/batches/next", params={"wait_s": 0.2}).status_code == 204
    status = client.get("/v1/status").json()
    assert status["queued_groups"] == 0 and status["unacked_batches"] == 0
    assert status["trained_cursor"] == {"epoch": 0, "position": 0, "acked_groups": None}


def test_bad_input_gets_a_4xx_naming_the_field(client):
    assert "wait_s" in _error(client.get("/v1/batches/next", params={"wait_s": 99}), 422)["field"]
    assert _error(client.put("/v1/cursor", json={"epoch": 0, "position": 10}), 422)["field"] == "position"
    assert "epoch" in _error(client.put("/v1/cursor", json={"epoch": -1, "position": 0}), 422)["field"]
    assert "policy_version" in _error(client.post("/v1/batches/b1/ack", json={}), 422)["field"]
    bad_version = client.post("/v1/policy-version", json={"policy_version": -1})
    assert "policy_version" in _error(bad_version, 422)["field"]
    unknown = client.post("/v1/policy-version", json={"policy_version": 1, "extra": 2})
    assert "extra" in _error(unknown, 422)["field"]
    assert _error(client.get("/v1/status", headers={"Authorization": "Bearer wrong"}), 401)


def test_an_unknown_batch_ack_is_answered_not_acknowledged(client):
    response = client.post("/v1/batches/b404/ack", json={"policy_version": 0})
    assert response.status_code == 200
    cursor = {"epoch": 0, "position": 0, "acked_groups": 0}
    assert response.json() == {"batch_id": "b404", "acknowledged": False, "cursor": cursor}


def test_cursor_and_policy_version_round_trip_and_versions_never_go_back(client):
    assert client.put("/v1/cursor", json={"epoch": 2, "position": 3}).status_code == 200
    assert client.get("/v1/cursor").json() == {"epoch": 2, "position": 3, "acked_groups": 0}
    assert client.post("/v1/policy-version", json={"policy_version": 5}).json()["policy_version"] == 5
    assert client.post("/v1/policy-version", json={"policy_version": 4}).json()["policy_version"] == 5
    assert client.get("/v1/status").json()["policy_version"] == 5


def test_a_rewind_that_gives_acked_groups_sets_the_count_back_and_one_without_leaves_it(client):
    # A trainer resuming from a checkpoint takes back what its lost steps acknowledged.
    put = client.put("/v1/cursor", json={"epoch": 0, "position": 1, "acked_groups": 12})
    assert put.status_code == 200
    assert client.get("/v1/cursor").json() == {"epoch": 0, "position": 1, "acked_groups": 12}
    assert client.get("/v1/status").json()["acked_groups"] == 12
    client.put("/v1/cursor", json={"epoch": 0, "position": 2})
    assert client.get("/v1/cursor").json()["acked_groups"] == 12
    client.put("/v1/cursor", json={"epoch": 0, "position": 0, "acked_groups": 0})
    assert client.get("/v1/status").json()["acked_groups"] == 0


def test_settings_without_inference_replicas_name_what_is_missing():
    with pytest.raises(SettingsError, match="inference_urls or inference_dns"):
        build_settings(Settings)
    with pytest.raises(SettingsError, match="GHPO_ALGORITHM_HINT_LADDER"):
        build_settings(Settings, inference_urls=["http://x"], ghpo={"hint_ladder": (0.5, 0.25)})
