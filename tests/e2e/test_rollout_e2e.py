"""The rollout server end to end on CPU: the tiny model in a real inference service (vLLM CPU build), the
real verifier (math-verify workers) and broker over HTTP, a real Redis server.

One inference service and one verifier per module (vLLM takes tens of seconds to start); each test gets
its own broker app and Redis key prefixes, so tests do not see each other's state. The kill -9 test runs
the rollout server as a subprocess (`python -m ghpo serve rollout`) and kills it mid-run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

pytest.importorskip("vllm")

from ghpo.services.broker.app import create_app as create_broker
from ghpo.services.broker.settings import Settings as BrokerSettings
from ghpo.services.inference.app import create_app as create_inference
from ghpo.services.inference.settings import Settings as InferenceSettings
from ghpo.services.rollout.app import create_app as create_rollout
from ghpo.services.rollout.settings import Settings as RolloutSettings
from ghpo.services.verifier.app import create_app as create_verifier
from ghpo.services.verifier.settings import Settings as VerifierSettings
from ghpo.shared.algorithm.advantages import group_advantages
from ghpo.shared.algorithm.config import GHPOConfig
from ghpo.shared.algorithm.environment import environment_of
from ghpo.shared.algorithm.hints import hinted_problem_at_level
from ghpo.shared.redis_local import free_port
from ghpo.shared.serving import running_app

pytestmark = pytest.mark.slow

G = 4
BATCH = 4
LADDER = (0.25, 0.5, 0.75)
GHPO = GHPOConfig(hint_ladder=LADDER, cold_start_steps=0)  # the broker's and the rollout server's
READY_TIMEOUT_S = 600
ROLLOUT_DEFAULTS = {
    "group_size": G,
    "batch_groups": BATCH,
    "prompts_per_step": BATCH,
    "max_concurrent_steps": 2,
    "max_tokens": 160,
    "arith_levels": [1, 7],  # level 1: the tiny model solves it; level 7: it does not, unhinted
    "arith_per_level": 6,
}


def _wait_ready(url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{url} did not become ready"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def upstream(model_dir):
    """Base URLs of one inference service (tiny model) and one verifier."""
    inference = InferenceSettings(model=str(model_dir), max_model_len=512, kv_cache_gib=1, max_num_seqs=64)
    # A generous math timeout: on a loaded 2-core machine a one-second budget times out now and then,
    # and a group the verifier could not score is dropped as verifier_failed, which these tests do not test.
    verifier = VerifierSettings(workers=1, math_timeout_s=10)
    with (
        running_app(create_inference(inference)) as inf_url,
        running_app(create_verifier(verifier)) as ver_url,
    ):
        _wait_ready(inf_url)
        _wait_ready(ver_url)
        yield {"inference": inf_url, "verifier": ver_url}


def _broker(serve_app, redis_url: str, prefix: str, ghpo: GHPOConfig, policy: str = "ghpo") -> str:
    """A fresh broker with the GHPO settings `ghpo`; its base URL."""
    settings = BrokerSettings(
        redis_url=redis_url, key_prefix=f"{prefix}b:", policy=policy, ghpo=ghpo, group_size=G
    )
    return serve_app(create_broker(settings))


def _rescued_by_the_first_hint(broker: str, prompt_ids: list[str]) -> None:
    """Tell a ghpo-memory broker these prompts were last rescued at level 1: their next plans start there."""
    rounds = [{"level": 0, "correct": 0, "G": G}, {"level": 1, "correct": 1, "G": G}]
    outcomes = [
        {"prompt_id": p, "update_id": f"seed-{p}", "step": 0, "policy_version": 0, "results": rounds}
        for p in prompt_ids
    ]
    response = httpx.post(f"{broker}/v1/outcomes", json={"outcomes": outcomes}, timeout=30)
    assert response.status_code == 200, response.text


@pytest.fixture
def stack(upstream, redis_url, serve_app):
    """A fresh broker (policy ghpo, no cold start) and the settings a rollout server needs to use it all."""
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    values = {
        **ROLLOUT_DEFAULTS,
        "inference_urls": [upstream["inference"]],
        "verifier_url": upstream["verifier"],
        "broker_url": _broker(serve_app, redis_url, prefix, GHPO),
        "redis_url": redis_url,
        "key_prefix": f"{prefix}r:",
        "ghpo": GHPO,
    }
    return values


def _next(client: httpx.Client, wait_s: float = 30.0, attempts: int = 10) -> dict:
    for _ in range(attempts):
        response = client.get("/v1/batches/next", params={"wait_s": wait_s}, timeout=wait_s + 30)
        if response.status_code == 200:
            return response.json()
        assert response.status_code == 204, response.text
    raise AssertionError("no batch became ready")


def _ack(client: httpx.Client, batch: dict) -> None:
    response = client.post(f"/v1/batches/{batch['batch_id']}/ack", json={"policy_version": 0})
    assert response.status_code == 200 and response.json()["acknowledged"], response.text


def _render(tokenizer, content: str) -> list[int]:
    ids = tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def test_a_step_yields_correct_groups_and_escalates_exactly_the_all_wrong_ones(stack, upstream, model_dir):
    from transformers import AutoTokenizer

    from ghpo.shared.tasks.arith import make_split

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    records = {r.id: r for r in make_split("train", 6, [1, 7], seed=0)}
    settings = RolloutSettings(**stack, max_policy_lag=0)
    with running_app(create_rollout(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        groups = []
        for _ in range(2):
            batch = _next(client)
            assert batch["delivery"] == 1 and len(batch["groups"]) == BATCH
            groups += batch["groups"]
            _ack(client, batch)
        broker = httpx.Client(base_url=stack["broker_url"], timeout=30)
        verifier = httpx.Client(base_url=upstream["verifier"], timeout=60)
        escalated = plain = 0
        for group in groups:
            record = records[group["prompt_id"]]
            level = group["hint_level"]
            assert group["hint_ratio"] == (0.0 if level == 0 else LADDER[level - 1])
            problem = hinted_problem_at_level(record.problem, record.solution, level, LADDER)
            assert group["prompt_token_ids"] == _render(tokenizer, problem)
            completions = group["completions"]
            assert len(completions) == G
            scored = verifier.post(
                "/v1/verify",
                json={"items": [{"completion": c["text"], "gold": record.answer} for c in completions]},
            ).json()["results"]
            rewards = [c["reward"] for c in completions]
            assert rewards == [r["total"] for r in scored]
            assert [c["accuracy"] for c in completions] == [r["rewards"]["accuracy"] for r in scored]
            expected = group_advantages(rewards, eps=1e-4, scale=True)
            assert [c["advantage"] for c in completions] == pytest.approx(expected, abs=1e-9)
            for c in completions:
                assert c["policy_version"] == 0
                assert len(c["behaviour_logprobs"]) == len(c["token_ids"]) > 0
                assert all(lp <= 1e-3 for lp in c["behaviour_logprobs"])
            # Every round went to the broker: levels 0..final, all wrong before the final one.
            state = broker.get(f"/v1/prompts/{record.id}").json()
            tried = [lv for lv in state["levels"] if lv["groups"] > 0]
            assert [lv["level"] for lv in tried] == list(range(level + 1))
            assert all(lv["correct"] == 0 for lv in tried[:-1])
            final_correct = sum(1 for c in completions if c["accuracy"] == 1.0)
            assert tried[-1]["correct"] == final_correct
            assert final_correct > 0 or level == len(LADDER)  # stops at the first level with signal
            assert group["generation_rounds"] == level + 1
            assert group["plain_accuracy"] == tried[0]["correct"] / G
            escalated += level > 0
            plain += level == 0
        assert escalated and plain, (escalated, plain)
        status = client.get("/v1/status").json()
        assert status["acked_groups"] == 2 * BATCH


def _assert_logprobs_under(model, prompt: list[int], completion: dict) -> None:
    """The completion's behaviour log-probs are the model's, given `prompt` (the context it was sampled in)."""
    import torch

    ids = torch.tensor([prompt + completion["token_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    logps = torch.log_softmax(logits, -1)
    sampled = logps.gather(-1, torch.tensor(completion["token_ids"]).view(-1, 1)).view(-1)
    assert torch.allclose(sampled, torch.tensor(completion["behaviour_logprobs"]), atol=1e-3)


def test_condition_on_plain_trains_hinted_groups_on_the_plain_prompt_with_the_hinted_logprobs(
    stack, model_dir, serve_app, redis_url
):
    """The Guide-style mode: a rescued group's completions sampled under the hint come with the plain
    prompt to train on, and with the log-probs of the hinted prompt (the behaviour policy of the IS weight).
    The level-7 prompts start hinted (the broker remembers them rescued at level 1), so their plain prompt
    is one the rollout server never generated from: it comes from the inference service's tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ghpo.shared.tasks.arith import make_split

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    records = {r.id: r for r in make_split("train", 6, [1, 7], seed=0)}
    plain = GHPO.model_copy(update={"condition_on": "plain"})
    prefix = stack["key_prefix"] + "plain:"
    # The rollout server's GHPO settings; a policy that starts a prompt where it was last rescued.
    broker = _broker(serve_app, redis_url, prefix, plain, policy="ghpo-memory")
    _rescued_by_the_first_hint(broker, [r.id for r in records.values() if r.level == 7])
    settings = RolloutSettings(
        **{**stack, "ghpo": plain, "broker_url": broker, "key_prefix": prefix}, max_policy_lag=0
    )
    hinted_groups = started_hinted = 0
    with running_app(create_rollout(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(2):
            batch = _next(client)
            _ack(client, batch)
            for group in batch["groups"]:
                record = records[group["prompt_id"]]
                assert group["condition_on"] == "plain"
                assert group["prompt_token_ids"] == _render(tokenizer, record.problem)
                if group["hint_level"] == 0:
                    continue
                hinted_groups += 1
                started_hinted += group["generation_rounds"] <= group["hint_level"]  # no unhinted round
                hinted = hinted_problem_at_level(record.problem, record.solution, group["hint_level"], LADDER)
                _assert_logprobs_under(model, _render(tokenizer, hinted), group["completions"][0])
    assert hinted_groups > 0  # level 7 is beyond the tiny model without a hint
    assert started_hinted > 0  # 8 of the 12 prompts are drawn: at least 2 of level 7


def test_keep_unhinted_puts_a_failed_plain_rollout_into_each_rescued_group(
    stack, model_dir, serve_app, redis_url
):
    """NuRL's group: a group that ended hinted holds one completion of its all-wrong unhinted round (reward
    0, flagged, with the plain prompt and the plain prompt's log-probs) and G - 1 hinted ones; advantages
    are over all G."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ghpo.shared.tasks.arith import make_split

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    records = {r.id: r for r in make_split("train", 6, [1, 7], seed=0)}
    keep = GHPO.model_copy(update={"keep_unhinted": 1})
    prefix = stack["key_prefix"] + "keep:"
    broker = _broker(serve_app, redis_url, prefix, keep)
    settings = RolloutSettings(
        **{**stack, "ghpo": keep, "broker_url": broker, "key_prefix": prefix}, max_policy_lag=0
    )
    hinted_groups = plain_groups = 0
    with running_app(create_rollout(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(2):
            batch = _next(client)
            _ack(client, batch)
            for group in batch["groups"]:
                completions = group["completions"]
                assert len(completions) == G
                expected = group_advantages([c["reward"] for c in completions], eps=1e-4, scale=True)
                assert [c["advantage"] for c in completions] == pytest.approx(expected, abs=1e-9)
                if group["hint_level"] == 0:
                    plain_groups += 1
                    assert not any(c["unhinted"] for c in completions)
                    assert group["plain_prompt_token_ids"] is None
                    continue
                hinted_groups += 1
                record = records[group["prompt_id"]]
                assert [c["unhinted"] for c in completions] == [True] + [False] * (G - 1)
                kept = completions[0]
                assert kept["accuracy"] == 0.0  # from the round that was all wrong
                plain = _render(tokenizer, record.problem)
                assert group["plain_prompt_token_ids"] == plain
                hinted = hinted_problem_at_level(record.problem, record.solution, group["hint_level"], LADDER)
                assert group["prompt_token_ids"] == _render(tokenizer, hinted)
                _assert_logprobs_under(model, plain, kept)
    assert hinted_groups > 0 and plain_groups > 0, (hinted_groups, plain_groups)


def _metric(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.split()[-1])
    return 0.0


def test_the_lag_bound_holds_admission_and_drops_stale_groups_with_a_count(stack):
    settings = RolloutSettings(**{**stack, "batch_groups": 2, "prompts_per_step": 2}, max_policy_lag=0)
    stale_label = '{reason="stale_policy"}'
    with running_app(create_rollout(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        before = _metric(client.get("/metrics").text, "ghpo_rollout_groups_dropped_total", stale_label)
        deadline = time.monotonic() + 300
        while (status := client.get("/v1/status").json())["queued_groups"] < 2:
            assert status["queued_groups"] + status["in_flight_groups"] <= 2  # (lag + 1) x batch
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(1.0)  # admission is full: nothing more is drawn
        status = client.get("/v1/status").json()
        assert status["queued_groups"] == 2 and status["in_flight_groups"] == 0
        assert client.post("/v1/policy-version", json={"policy_version": 2}).status_code == 200
        assert client.get("/v1/batches/next").status_code == 204  # both groups are version 0 < 2 - 0
        status = client.get("/v1/status").json()
        assert status["dropped"] == {"stale_policy": 2} and status["queued_groups"] == 0
        after = _metric(client.get("/metrics").text, "ghpo_rollout_groups_dropped_total", stale_label)
        assert after - before == 2
        assert status["trained_cursor"]["position"] == 2  # dropped groups are settled, not lost


def _spawn(stack: dict, port: int, log_path) -> subprocess.Popen:
    env = {**os.environ, "GHPO_ROLLOUT_PORT": str(port), "GHPO_ROLLOUT_ACK_TIMEOUT_S": "3"}
    env |= {"GHPO_ROLLOUT_CLAIM_TTL_S": "2", "GHPO_ROLLOUT_MAX_POLICY_LAG": "2"}
    for key, value in stack.items():
        if key == "ghpo":  # the GHPO settings have their own variables, shared with the broker
            env |= environment_of(value)
        else:
            env[f"GHPO_ROLLOUT_{key.upper()}"] = json.dumps(value) if isinstance(value, list) else str(value)
    return subprocess.Popen(
        [sys.executable, "-m", "ghpo", "serve", "rollout"],
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
    )


def test_kill_9_and_restart_lose_no_queued_or_unacked_group_and_duplicate_none(stack, tmp_path):
    from redis import Redis

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "rollout.log"
    proc = _spawn(stack, port, log_path)
    delivered: dict[str, list[str]] = {}  # batch id -> group ids
    acked: list[str] = []
    try:
        _wait_ready(url, 120)
        client = httpx.Client(base_url=url, timeout=60)
        first = _next(client)
        _ack(client, first)
        acked += [g["group_id"] for g in first["groups"]]
        unacked = _next(client)
        delivered[first["batch_id"]] = [g["group_id"] for g in first["groups"]]
        delivered[unacked["batch_id"]] = [g["group_id"] for g in unacked["groups"]]
        deadline = time.monotonic() + 300
        while client.get("/v1/status").json()["queued_groups"] < BATCH:
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.2)
        redis = Redis.from_url(stack["redis_url"], decode_responses=True)
        prefix = stack["key_prefix"]
        queued = {
            json.loads(b)["group_id"]
            for b in redis.hmget(f"{prefix}groups", redis.lrange(f"{prefix}ready", 0, -1))
        }
        assert len(queued) >= BATCH
        proc.send_signal(signal.SIGKILL)  # mid-run: steps are generating, groups queued, one batch unacked
        proc.wait(30)

        proc = _spawn(stack, port, log_path)
        _wait_ready(url, 120)
        seen_again = False
        while not (queued <= set(acked) and seen_again):
            batch = _next(client)
            ids = [g["group_id"] for g in batch["groups"]]
            if batch["batch_id"] == unacked["batch_id"]:
                assert batch["delivery"] >= 2 and ids == delivered[unacked["batch_id"]]
                seen_again = True
            else:
                assert batch["batch_id"] not in delivered and batch["delivery"] == 1
                delivered[batch["batch_id"]] = ids
            _ack(client, batch)
            acked += ids
            assert len(acked) <= 12 * BATCH, "the queued groups never came back"
        assert len(acked) == len(set(acked))  # no group trained twice
        all_ids = [i for ids in delivered.values() for i in ids]
        assert len(all_ids) == len(set(all_ids))  # no group in two batches
        assert client.get("/v1/status").json()["acked_groups"] == len(acked)
    finally:
        proc.kill()
        proc.wait(30)


def test_a_dead_replica_is_ejected_and_a_dead_verifier_drops_groups_with_their_reason(stack):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = RolloutSettings(
        **{**stack, "inference_urls": [dead, *stack["inference_urls"]]}, max_policy_lag=0, eject_s=60
    )
    with running_app(create_rollout(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        batch = _next(client)  # served by the live replica after the dead one failed and was ejected
        assert len(batch["groups"]) == BATCH
        errors = _metric(
            client.get("/metrics").text,
            "ghpo_rollout_upstream_errors_total",
            '{kind="unreachable",service="inference"}',
        )
        assert errors >= 1
    settings = RolloutSettings(
        **{**stack, "verifier_url": dead, "key_prefix": stack["key_prefix"] + "v:"}, upstream_budget_s=1.0
    )
    with running_app(create_rollout(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        deadline = time.monotonic() + 300
        while client.get("/v1/status").json()["dropped"].get("verifier_failed", 0) < 2 * BATCH:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert client.get("/readyz").status_code == 200  # still serving, still producing
        assert client.get("/v1/batches/next").status_code == 204


def _quiescent(client: httpx.Client, queued: int, timeout_s: float = 300) -> dict:
    """The status once `queued` groups wait and nothing is in flight (admission full: drawing stopped)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get("/v1/status").json()
        if status["queued_groups"] == queued and status["in_flight_groups"] == 0:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.3)


def test_dynamic_sampling_delivers_only_groups_with_signal_and_counts_every_group_it_drew(stack):
    # Lag 0: a step that loses a group to no_signal leaves less than a batch queued and room for less
    # than a step; the producer must still top the batch up.
    settings = RolloutSettings(**stack, dynamic_sampling=True, max_policy_lag=0)
    label = '{reason="no_signal"}'
    with running_app(create_rollout(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        before = _metric(client.get("/metrics").text, "ghpo_rollout_groups_dropped_total", label)
        rounds = 0
        for _ in range(2):
            batch = _next(client)
            assert len(batch["groups"]) == BATCH
            for group in batch["groups"]:
                assert len({c["reward"] for c in group["completions"]}) > 1, group["prompt_id"]
                rounds += group["generation_rounds"]
            _ack(client, batch)
        status = _quiescent(client, queued=BATCH)
        dropped = status["dropped"].get("no_signal", 0)
        assert set(status["dropped"]) <= {"no_signal"}
        # every sampled group was trained, is queued, or was dropped for having no signal; none is lost
        assert status["groups_sampled"] == status["acked_groups"] + status["queued_groups"] + dropped
        assert status["no_signal_groups"] == dropped  # none without signal got into the queue
        assert status["completions_generated"] >= G * (rounds + dropped + status["queued_groups"])
        after = _metric(client.get("/metrics").text, "ghpo_rollout_groups_dropped_total", label)
        assert after - before == dropped


def test_dynamic_sampling_keeps_drawing_past_the_admission_bound_while_no_group_has_signal(stack):
    # A nucleus of one token: the G completions of a group are identical, so no group ever has signal
    # (temperature 0 would do the same, but vLLM refuses n > 1 with greedy sampling).
    settings = RolloutSettings(**stack, dynamic_sampling=True, top_p=1e-6)
    with running_app(create_rollout(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        deadline = time.monotonic() + 300
        while (status := client.get("/v1/status").json())["dropped"].get("no_signal", 0) <= 3 * BATCH:
            assert status["queued_groups"] == 0 and status["acked_groups"] == 0, status
            assert time.monotonic() < deadline, status
            time.sleep(0.3)
        assert client.get("/v1/batches/next").status_code == 204
        status = client.get("/v1/status").json()
        # more groups were drawn than (lag + 1) x batch admission would allow if drops held their place
        # (12 prompts: drawing went on into later epochs)
        assert status["groups_sampled"] > 3 * BATCH and status["draw_cursor"]["epoch"] >= 1
        assert status["no_signal_groups"] == status["groups_sampled"] >= status["dropped"]["no_signal"]
        assert status["completions_generated"] >= G * status["groups_sampled"]
        assert status["completions_generated"] % G == 0
