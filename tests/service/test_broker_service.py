"""The guidance broker over real HTTP against a real Redis server: plans, outcomes, idempotency, 422s,
stats, snapshot/restore."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis

from ghpo.services.broker.app import create_app
from ghpo.services.broker.settings import Settings
from ghpo.shared.algorithm.config import GHPOConfig


def outcome(pid, uid, results, step=1, version=0):
    return {
        "prompt_id": pid,
        "update_id": uid,
        "step": step,
        "policy_version": version,
        "results": [{"level": lv, "correct": c, "G": 8} for lv, c in results],
    }


@pytest.fixture
def broker(serve_app, redis_url):
    def start(**kw):
        kw.setdefault("ghpo", GHPOConfig(cold_start_steps=0))
        return httpx.Client(base_url=serve_app(create_app(Settings(redis_url=redis_url, **kw))), timeout=10)

    return start


def starts(client, step, ids):
    r = client.post("/v1/plan", json={"step": step, "prompt_ids": ids})
    assert r.status_code == 200, r.text
    return {p["prompt_id"]: (p["start_level"], p["max_level"]) for p in r.json()["plans"]}


def test_unknown_prompts_are_planned_as_new_at_level_zero(broker):
    client = broker(policy="ghpo-memory")
    assert starts(client, 3, ["new-1", "new-2"]) == {"new-1": (0, 3), "new-2": (0, 3)}
    assert client.get("/v1/prompts/new-1").status_code == 404


def test_memory_policy_starts_at_the_rescue_level_then_steps_down(broker):
    client = broker(policy="ghpo-memory")
    r = client.post("/v1/outcomes", json={"outcomes": [outcome("p", "s1", [(0, 0), (1, 0), (2, 3)], step=1)]})
    assert r.json()["applied"] == 1
    assert starts(client, 2, ["p"]) == {"p": (2, 3)}
    client.post("/v1/outcomes", json={"outcomes": [outcome("p", "s2", [(2, 7)], step=2)]})
    assert starts(client, 3, ["p"]) == {"p": (1, 3)}
    state = client.get("/v1/prompts/p").json()
    assert state["visits"] == 2 and state["last_informative_level"] == 2 and state["last_step"] == 2
    assert state["levels"][2] == {"level": 2, "groups": 2, "correct": 10, "wrong": 6}


def test_adaptive_policy_plans_from_redis_toward_the_target_accuracy(broker):
    ladder = GHPOConfig(hint_ladder=(0.2, 0.4, 0.6, 0.8), cold_start_steps=0)
    client = broker(policy="ghpo-adaptive", target_accuracy=0.5, ghpo=ladder)
    outcomes = [
        outcome("easy", "s1", [(0, 0), (1, 0), (2, 6)]),  # 6/8 at level 2: above target, one level less
        outcome("hard", "s1", [(0, 0), (1, 0), (2, 3)]),  # 3/8: keep level 2
        outcome("lost", "s1", [(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)]),  # nothing rescued it
    ]
    assert client.post("/v1/outcomes", json={"outcomes": outcomes}).json()["applied"] == 3
    assert starts(client, 2, ["easy", "hard", "lost"]) == {"easy": (1, 4), "hard": (2, 4), "lost": (4, 4)}


def test_ghpo_and_none_policies_ignore_memory(broker):
    for policy, expected in (("ghpo", (0, 3)), ("none", (0, 0))):
        client = broker(policy=policy, key_prefix=f"t-{policy}:")
        client.post("/v1/outcomes", json={"outcomes": [outcome("p", "u", [(0, 0), (1, 0), (2, 3)])]})
        assert starts(client, 2, ["p"]) == {"p": expected}


def test_cold_start_plans_no_hints(broker):
    client = broker(policy="ghpo-memory", ghpo=GHPOConfig(cold_start_steps=20))
    client.post("/v1/outcomes", json={"outcomes": [outcome("p", "u", [(0, 0), (1, 4)])]})
    assert starts(client, 19, ["p"]) == {"p": (0, 0)}
    assert starts(client, 20, ["p"]) == {"p": (1, 3)}


def test_duplicate_outcome_is_applied_once_under_concurrency(broker, redis_url):
    base = str(broker().base_url)
    body = {"outcomes": [outcome("dup", "same-id", [(0, 0), (1, 5)])]}

    async def send_all():
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            return await asyncio.gather(*(client.post("/v1/outcomes", json=body) for _ in range(16)))

    responses = asyncio.run(send_all())
    assert all(r.status_code == 200 for r in responses)
    assert sum(r.json()["applied"] for r in responses) == 1
    assert sum(r.json()["duplicates"] for r in responses) == 15
    fields = redis.Redis.from_url(redis_url, decode_responses=True).hgetall("ghpo:broker:p:dup")
    assert (fields["visits"], fields["n1"], fields["c1"]) == ("1", "1", "5")


@pytest.mark.parametrize(
    "bad",
    [
        outcome("bad", "b", [(0, 9)]),  # correct > G
        outcome("bad", "b", [(5, 1)]),  # unknown level
        outcome("bad", "b", [(1, 0), (0, 2)]),  # out of order
        outcome("bad", "b", [(0, 3), (1, 2)]),  # escalated a group that was not all wrong
        {**outcome("bad", "b", [(0, 1)]), "results": [{"level": 0, "correct": -1, "G": 8}]},  # negative
    ],
)
def test_malformed_outcome_is_422_and_nothing_in_the_batch_is_written(broker, redis_url, bad):
    client = broker()
    r = client.post("/v1/outcomes", json={"outcomes": [outcome("good", "g", [(0, 4)]), bad]})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"].startswith("outcomes.1.")
    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_stats_report_sparsity_totals(broker):
    client = broker()
    batch = [outcome("a", "1", [(0, 0), (1, 2)]), outcome("b", "2", [(0, 8)]), outcome("c", "3", [(0, 3)])]
    client.post("/v1/outcomes", json={"outcomes": batch})
    s = client.get("/v1/stats").json()
    assert (s["groups"], s["prompts"], s["difficult_groups"]) == (3, 3, 1)
    assert s["difficult_fraction"] == pytest.approx(1 / 3)
    assert s["zero_advantage_fraction"] == pytest.approx(1 / 3)  # b is all correct
    assert s["nohint_accuracy"] == pytest.approx(11 / 24)
    assert s["final_level_groups"] == [2, 1, 0, 0] and s["rescue_rate"][1] == 1.0
    assert "ghpo_broker_difficult_ratio" in client.get("/metrics").text


def test_snapshot_restore_round_trip(broker):
    client = broker()
    client.post(
        "/v1/outcomes", json={"outcomes": [outcome(f"q{i}", "u", [(0, 0), (1, i % 8)]) for i in range(50)]}
    )
    snap = client.get("/v1/snapshot")
    assert snap.status_code == 200 and snap.headers["content-type"].startswith("application/x-ndjson")
    before = {pid: client.get(f"/v1/prompts/{pid}").json() for pid in ("q1", "q7")}
    stats = client.get("/v1/stats").json()
    client.post(
        "/v1/outcomes",
        json={"outcomes": [outcome("q1", "later", [(1, 2)], step=2), outcome("z", "u", [(0, 1)])]},
    )
    r = client.put("/v1/snapshot", content=snap.content)
    assert r.status_code == 200 and r.json()["prompts"] == 50
    assert {pid: client.get(f"/v1/prompts/{pid}").json() for pid in ("q1", "q7")} == before
    assert client.get("/v1/prompts/z").status_code == 404
    assert client.get("/v1/stats").json() == stats
    # restore clears applied update ids: a resumed trainer may re-send the steps after its checkpoint
    again = client.post("/v1/outcomes", json={"outcomes": [outcome("q1", "later", [(1, 2)], step=2)]})
    assert again.json()["applied"] == 1


def test_restore_of_a_bad_snapshot_is_422_and_keeps_the_state(broker):
    client = broker()
    client.post("/v1/outcomes", json={"outcomes": [outcome("keep", "u", [(0, 2)])]})
    good = client.get("/v1/snapshot").content
    bad = good + b'{"prompt_id": "x", "fields": {"visits": "many"}}\n'
    r = client.put("/v1/snapshot", content=bad)
    assert r.status_code == 422 and r.json()["error"]["field"] == "snapshot.2.fields.visits"
    assert client.get("/v1/prompts/keep").json()["visits"] == 1


def test_late_outcome_of_an_older_step_counts_but_does_not_move_the_memory(broker):
    client = broker(policy="ghpo-memory")
    client.post("/v1/outcomes", json={"outcomes": [outcome("p", "new", [(0, 0), (1, 0), (2, 3)], step=9)]})
    client.post("/v1/outcomes", json={"outcomes": [outcome("p", "old", [(0, 5)], step=8)]})
    state = client.get("/v1/prompts/p").json()
    assert state["visits"] == 2 and state["levels"][0]["correct"] == 5
    assert (state["last_step"], state["last_final_level"]) == (9, 2)
    assert starts(client, 10, ["p"]) == {"p": (2, 3)}


def test_batch_over_the_limit_is_413_naming_the_field(broker):
    client = broker(max_batch_prompts=4)
    r = client.post("/v1/plan", json={"step": 1, "prompt_ids": [f"p{i}" for i in range(5)]})
    assert r.status_code == 413 and r.json()["error"]["field"] == "prompt_ids"
    r = client.post("/v1/outcomes", json={"outcomes": [outcome(f"p{i}", "u", [(0, 1)]) for i in range(5)]})
    assert r.status_code == 413 and r.json()["error"]["field"] == "outcomes"
