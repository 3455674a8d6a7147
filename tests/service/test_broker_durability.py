"""The broker when Redis dies: 503 + Retry-After and failed readiness while it is down, and every
acknowledged outcome still there after kill -9 and a restart from the AOF. Also the local-server helper."""

from __future__ import annotations

import httpx
import redis

from ghpo.services.broker.app import create_app
from ghpo.services.broker.settings import Settings
from ghpo.shared.algorithm.config import GHPOConfig
from ghpo.shared.redis_local import start_local_redis


def outcome(pid, uid, correct):
    results = [{"level": 0, "correct": 0, "G": 8}, {"level": 1, "correct": correct, "G": 8}]
    return {"prompt_id": pid, "update_id": uid, "step": 5, "policy_version": 2, "results": results}


def test_redis_fixture_gives_an_empty_durable_database(redis_url):
    client = redis.Redis.from_url(redis_url)
    assert client.dbsize() == 0
    assert client.config_get("appendonly")["appendonly"] == "yes"
    assert client.config_get("appendfsync")["appendfsync"] == "everysec"
    assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    client.close()


def test_acknowledged_outcome_survives_kill9_and_restart_from_the_aof(serve_app, fresh_redis):
    base = serve_app(create_app(Settings(redis_url=fresh_redis.url, ghpo=GHPOConfig(cold_start_steps=0))))
    client = httpx.Client(base_url=base, timeout=10)
    acked = [outcome(f"p{i}", f"u{i}", i % 8) for i in range(200)]
    r = client.post("/v1/outcomes", json={"outcomes": acked})
    assert r.status_code == 200 and r.json()["applied"] == 200
    fresh_redis.kill9()  # no SHUTDOWN, no final save: only what the AOF already holds
    fresh_redis.start()
    state = client.get("/v1/prompts/p7").json()
    assert state["visits"] == 1 and state["levels"][1]["correct"] == 7 and state["last_policy_version"] == 2
    assert client.get("/v1/stats").json()["groups"] == 200
    # the applied-update records survived too: a retry after the crash is still recognised
    assert client.post("/v1/outcomes", json={"outcomes": acked[:3]}).json()["duplicates"] == 3


def test_redis_down_gives_503_with_retry_after_and_nothing_half_written(serve_app, fresh_redis):
    base = serve_app(create_app(Settings(redis_url=fresh_redis.url, redis_timeout_s=0.5, retry_after_s=2)))
    client = httpx.Client(base_url=base, timeout=10)
    assert client.get("/readyz").status_code == 200
    fresh_redis.kill9()
    for method, path, body in (
        ("POST", "/v1/outcomes", {"outcomes": [outcome("x", "down", 3)]}),
        ("POST", "/v1/plan", {"step": 30, "prompt_ids": ["x"]}),
        ("GET", "/v1/stats", None),
        ("GET", "/v1/snapshot", None),
    ):
        r = client.request(method, path, json=body)
        assert r.status_code == 503, (path, r.text)
        assert r.headers["retry-after"] == "2" and r.json()["error"]["code"] == "unavailable"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "redis" in ready.json()["error"]["message"]
    fresh_redis.start()
    assert client.get("/readyz").status_code == 200
    assert client.get("/v1/prompts/x").status_code == 404
    assert client.post("/v1/outcomes", json={"outcomes": [outcome("x", "down", 3)]}).json()["applied"] == 1


def test_local_server_is_started_and_announced_when_no_url_is_configured(serve_app, tmp_path, caplog):
    caplog.set_level("WARNING", logger="ghpo.shared.redis_local")
    base = serve_app(create_app(Settings(redis_url=None, redis_data_dir=str(tmp_path / "data"))))
    assert httpx.get(f"{base}/readyz").json()["checks"] == {"redis": True}
    assert "no Redis URL configured: started local Redis server" in caplog.text
    assert str(tmp_path / "data") in caplog.text and (tmp_path / "data" / "redis.conf").exists()


def test_local_server_restarts_from_its_data_dir(tmp_path):
    server = start_local_redis(tmp_path / "d")
    try:
        redis.Redis.from_url(server.url).set("k", "v")
        server.restart()  # graceful SHUTDOWN, then a new process on the same port and dir
        assert redis.Redis.from_url(server.url).get("k") == b"v"
    finally:
        server.stop()
    assert not server.running
