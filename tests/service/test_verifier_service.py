"""The verifier service over real HTTP (uvicorn on a loopback port), real math-verify worker processes."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx

from ghpo.services.verifier.app import create_app
from ghpo.services.verifier.settings import Settings

TOKEN = "verifier-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WELL_FORMED = "<think>\nhalf\n</think>\n<answer>\n\\boxed{\\frac{1}{2}}\n</answer>"
SLOW = "\\boxed{9^{9^{9^9}}}"  # math-verify grinds on it until a timeout stops it


def settings(**overrides) -> Settings:
    values = {"token": TOKEN, "workers": 2, "item_deadline_s": 10.0, "math_timeout_s": 1}
    return Settings(**{**values, **overrides})


def verify(url: str, items: list[dict], **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/verify", json={"items": items, **body}, headers=AUTH, timeout=120)


def statuses(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["status"] for r in response.json()["results"]]


def test_every_status_in_one_batch_comes_back_in_order(serve_app):
    url = serve_app(create_app(settings()))
    items = [
        {"completion": WELL_FORMED, "gold": "0.5", "id": "right"},
        {"completion": "\\boxed{4}", "gold": "5", "id": "wrong"},
        {"completion": "I give up", "gold": "5", "id": "none"},
        {"completion": "\\boxed{3}", "gold": "", "id": "badgold"},
        {"completion": SLOW, "gold": "3", "id": "slow"},
    ] * 3
    response = verify(url, items)
    results = response.json()["results"]
    assert [r["id"] for r in results] == [item["id"] for item in items]
    assert statuses(response) == ["ok", "ok", "no_answer", "unparsable_gold", "timeout"] * 3
    right, wrong = results[0], results[1]
    assert right["rewards"] == {"accuracy": 1.0, "format": 1.0} and right["total"] == 1.5
    assert right["extracted"] == "\\frac{1}{2}"
    assert wrong["rewards"] == {"accuracy": 0.0, "format": 0.0} and wrong["extracted"] == "4"
    assert "no \\boxed{}" in results[2]["detail"]


def test_weights_per_request_and_per_item_pick_rewards_by_name(serve_app):
    url = serve_app(create_app(settings()))
    items = [
        {"completion": WELL_FORMED, "gold": "1/2"},
        {"completion": WELL_FORMED, "gold": "1/2", "weights": {"tag_count": 2.0}},
    ]
    results = verify(url, items, weights={"accuracy": 3.0}).json()["results"]
    assert (results[0]["rewards"], results[0]["total"]) == ({"accuracy": 1.0}, 3.0)
    assert (results[1]["rewards"], results[1]["total"]) == ({"tag_count": 1.0}, 2.0)


def test_negative_or_all_zero_weights_are_refused_naming_the_field(serve_app):
    url = serve_app(create_app(settings()))
    item = {"completion": WELL_FORMED, "gold": "1/2"}
    for body, field in (
        ({"items": [item], "weights": {"accuracy": 1.0, "format": -0.5}}, "weights.format"),
        ({"items": [item, {**item, "weights": {"accuracy": -1.0}}]}, "items.1.weights.accuracy"),
        ({"items": [item], "weights": {"accuracy": 0.0, "format": 0.0}}, "weights"),
    ):
        response = httpx.post(f"{url}/v1/verify", json=body, headers=AUTH, timeout=120)
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["field"] == field
        assert "greater than or equal to 0" in error["message"] or "positive weight" in error["message"]


def test_requests_without_the_token_are_refused_and_probes_stay_open(serve_app):
    url = serve_app(create_app(settings()))
    body = {"items": [{"completion": "\\boxed{1}", "gold": "1"}]}
    assert httpx.post(f"{url}/v1/verify", json=body).status_code == 401
    bad = {"Authorization": "Bearer wrong"}
    assert httpx.post(f"{url}/v1/verify", json=body, headers=bad).status_code == 401
    assert httpx.get(f"{url}/healthz").status_code == 200
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"workers": True}


def test_limits_are_enforced_with_errors_naming_them(serve_app):
    url = serve_app(
        create_app(
            settings(max_batch_items=4, max_completion_chars=100, max_gold_chars=10, max_body_bytes=4096)
        )
    )
    item = {"completion": "\\boxed{1}", "gold": "1"}
    too_many = verify(url, [item] * 5)
    assert too_many.status_code == 413
    assert "max_batch_items" in too_many.json()["error"]["message"]
    assert too_many.json()["error"]["field"] == "items"
    long_completion = verify(url, [item, {"completion": "x" * 101, "gold": "1"}])
    assert long_completion.status_code == 422
    assert "max_completion_chars" in long_completion.json()["error"]["message"]
    assert long_completion.json()["error"]["field"] == "items.1.completion"
    long_gold = verify(url, [{"completion": "1", "gold": "1" * 11}])
    assert long_gold.status_code == 422 and long_gold.json()["error"]["field"] == "items.0.gold"
    unknown_reward = verify(url, [item], weights={"acuracy": 1.0})
    assert unknown_reward.status_code == 422 and unknown_reward.json()["error"]["field"] == "weights"
    assert "acuracy" in unknown_reward.json()["error"]["message"]
    unknown_field = verify(url, [{**item, "answer": "1"}])
    assert unknown_field.status_code == 422 and "answer" in unknown_field.json()["error"]["field"]
    assert verify(url, []).status_code == 422
    huge_body = verify(url, [{"completion": "x" * 5000, "gold": "1"}])
    assert huge_body.status_code == 413
    assert statuses(verify(url, [item])) == ["ok"]  # nothing above broke the service


def test_item_past_the_deadline_times_out_its_worker_is_replaced_and_the_rest_returns(serve_app):
    # math-verify's own timeout (30 s) is longer than the deadline, so only the pool can stop the item.
    app = create_app(settings(item_deadline_s=1.0, math_timeout_s=30))
    url = serve_app(app)
    pool = app.state.pool
    before = set(pool.worker_pids())
    items = [{"completion": f"\\boxed{{{i}}}", "gold": str(i)} for i in range(6)]
    items.insert(2, {"completion": SLOW, "gold": "3"})
    response = verify(url, items)
    assert statuses(response) == ["ok", "ok", "timeout", "ok", "ok", "ok", "ok"]
    assert "deadline" in response.json()["results"][2]["detail"]
    assert [r["rewards"]["accuracy"] for r in response.json()["results"]] == [1, 1, 0, 1, 1, 1, 1]
    assert pool.restarts == 1 and len(set(pool.worker_pids()) - before) == 1
    assert statuses(verify(url, items[:2])) == ["ok", "ok"]


def test_killed_workers_fail_only_their_current_item_and_the_pool_recovers(serve_app):
    app = create_app(settings(item_deadline_s=60.0, math_timeout_s=20))
    url = serve_app(app)
    pool = app.state.pool
    before = pool.worker_pids()
    normal = [{"completion": f"\\boxed{{{i}}}", "gold": str(i)} for i in range(5)]
    # 12 items over 2 workers: each worker's chunk starts with a slow item, so both are busy on it.
    items = [{"completion": SLOW, "gold": "3"}, *normal, {"completion": SLOW, "gold": "3"}, *normal]
    result: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", verify(url, items)))
    thread.start()
    deadline = time.monotonic() + 30
    while len(pool.busy_worker_pids()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(pool.busy_worker_pids()) == sorted(before)
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    thread.join(120)
    got = statuses(result["r"])
    assert got == ["error"] + ["ok"] * 5 + ["error"] + ["ok"] * 5
    assert "died" in result["r"].json()["results"][0]["detail"]
    assert pool.restarts == 2 and not set(pool.worker_pids()) & set(before)
    assert statuses(verify(url, normal)) == ["ok"] * 5
    # One replacement may answer the batch above while the other is still importing math-verify (seconds
    # on a loaded machine): recovered means ready again soon, not at once.
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/readyz").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(f"{url}/readyz").status_code == 200


def test_pathological_latex_times_out_or_errors_and_the_service_keeps_serving(serve_app):
    # The completion limit is raised above 1 MB so the megabyte of braces reaches the workers.
    url = serve_app(create_app(settings(item_deadline_s=5.0, max_completion_chars=2_000_000)))
    items = [
        {"completion": "\\boxed{9^{9^{9^9}}}", "gold": "3"},
        {"completion": "\\boxed{" + "{" * 1_000_000 + "}", "gold": "3"},
        {"completion": "\\boxed{" + "\\frac{" * 400 + "1}{2}" * 400 + "}", "gold": "3"},
        {"completion": "\\boxed{" + "\\sqrt{" * 2000 + "2" + "}" * 2000 + "}", "gold": "3"},
        {"completion": "\\boxed{3}", "gold": "3"},
    ]
    got = statuses(verify(url, items))
    # The megabyte of braces never closes its box: no answer, found before math-verify runs (the final
    # answer rule); the other three reach math-verify and must not hang or crash the worker.
    assert got[1] == "no_answer", got
    assert all(status in ("timeout", "error") for status in (got[0], got[2], got[3])), got
    assert got[4] == "ok"
    assert statuses(verify(url, [{"completion": "\\boxed{2}", "gold": "2"}])) == ["ok"]


def test_full_queue_answers_503_with_retry_after_and_accepts_again_later(serve_app):
    app = create_app(settings(workers=1, max_chunk_items=1, max_batch_items=4, max_queued_items=4))
    url = serve_app(app)
    slow = [{"completion": SLOW, "gold": "3"}] * 4
    result: dict[str, httpx.Response] = {}
    thread = threading.Thread(target=lambda: result.setdefault("r", verify(url, slow)))
    thread.start()
    deadline = time.monotonic() + 30
    while app.state.pool.queued < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = verify(url, slow)  # 4 more items fit only once nothing waits: about 3 s from now
    assert refused.status_code == 503
    assert "max_queued_items" in refused.json()["error"]["message"]
    assert "retry-after" in refused.headers
    thread.join(120)
    assert statuses(result["r"]) == ["timeout"] * 4
    assert statuses(verify(url, [{"completion": "\\boxed{1}", "gold": "1"}])) == ["ok"]


def test_megabyte_of_braces_is_refused_by_the_default_size_limit(serve_app):
    url = serve_app(create_app(settings()))
    response = verify(url, [{"completion": "\\boxed{" + "{" * 1_000_000 + "}", "gold": "3"}])
    assert response.status_code == 422
    assert "max_completion_chars" in response.json()["error"]["message"]


def test_metrics_count_items_by_status_and_worker_restarts(serve_app):
    url = serve_app(create_app(settings()))
    verify(url, [{"completion": "\\boxed{1}", "gold": "1"}, {"completion": "none", "gold": "1"}])
    text = httpx.get(f"{url}/metrics").text
    assert 'ghpo_verifier_items_total{status="ok"}' in text
    assert 'ghpo_verifier_items_total{status="no_answer"}' in text
    assert "ghpo_verifier_batch_duration_seconds_count" in text
    assert 'ghpo_verifier_worker_restarts_total{reason="deadline"}' in text
    assert "ghpo_verifier_deadline_timeouts_total" in text
