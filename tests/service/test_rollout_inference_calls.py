"""The rollout server's inference calls over real HTTP: fail-over to another replica, admission (a prompt
refused as too long is dropped, the rest sent again) and freshness (stale weights are waited out until the
call's deadline). The replicas are small real apps answering from a script, so each refusal can be made."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from ghpo.services.rollout.inference_calls import InferenceCalls
from ghpo.services.rollout.replicas import ReplicaPool
from ghpo.services.rollout.settings import Settings
from ghpo.services.rollout.slot import Slot, StepClock
from ghpo.shared.data.records import PromptRecord
from ghpo.shared.schemas.inference import Prompt, SamplingParams
from ghpo.shared.schemas.rollout import DropReason

ERRORS = {409: "conflict", 422: "unprocessable", 500: "internal"}


def replica_app(script: list[dict | int], calls: list[list[str]]) -> FastAPI:
    """Answers each call with the script's next entry: a status (an error envelope; a 422 names the prompt
    `"refuse"` says) or, when the script is empty, a good answer. Records the prompt ids of each call."""
    app = FastAPI()

    @app.get("/readyz")
    def readyz() -> dict:
        return {}

    async def answer(request: Request, result) -> JSONResponse:
        ids = [prompt["id"] for prompt in (await request.json())["prompts"]]
        calls.append(ids)
        step = script.pop(0) if script else None
        if isinstance(step, int):
            error = {"code": ERRORS[step], "message": "scripted"}
            return JSONResponse({"error": error}, status_code=step)
        if isinstance(step, dict):
            field = f"prompts.{ids.index(step['refuse'])}"
            error = {"code": "unprocessable", "message": "too long", "field": field}
            return JSONResponse({"error": error}, status_code=422)
        return JSONResponse(result(ids))

    @app.post("/v1/generate")
    async def generate(request: Request) -> JSONResponse:
        sample = {"token_ids": [5], "logprobs": [-0.1], "finish_reason": "stop", "policy_version": 0}
        return await answer(
            request,
            lambda ids: {
                "results": [{"prompt_id": i, "prompt_token_ids": [1, 2], "samples": [sample]} for i in ids],
                "model": "scripted",
            },
        )

    @app.post("/v1/tokenize")
    async def tokenize(request: Request) -> JSONResponse:
        return await answer(
            request, lambda ids: {"results": [{"prompt_id": i, "prompt_token_ids": [7, 8]} for i in ids]}
        )

    return app


RECORD = PromptRecord(id="p", problem="1+1", answer="2", solution="1+1=2")


def slots(n: int) -> list[Slot]:
    return [Slot(g=g, epoch=0, position=g, record=RECORD) for g in range(n)]


def prompts(of: list[Slot]) -> list[Prompt]:
    return [Prompt(id=s.group_id, messages=[{"role": "user", "content": "1+1"}]) for s in of]


def run_call(urls: list[str], call, **settings) -> tuple[object, ReplicaPool]:
    """Run `call(calls, clock)` against a pool of `urls`; its answer and the pool."""
    config = Settings(inference_urls=urls, **settings)

    async def scenario():
        pool = ReplicaPool(urls, dns=None, dns_refresh_s=30, eject_s=60, token=None, timeout_s=10)
        try:
            return await call(InferenceCalls(config, pool), StepClock()), pool
        finally:
            await pool.close()

    return asyncio.run(scenario())


def generate(of: list[Slot]):
    return lambda calls, clock: calls.generate(of, prompts(of), SamplingParams(), 0, clock)


def test_a_prompt_refused_as_too_long_is_dropped_and_the_rest_sent_again(serve_app):
    calls: list[list[str]] = []
    url = serve_app(replica_app([{"refuse": "e0-p1"}], calls))
    group = slots(3)
    results, _ = run_call([url], generate(group))
    assert calls == [["e0-p0", "e0-p1", "e0-p2"], ["e0-p0", "e0-p2"]]
    assert [s.drop for s in group] == [None, DropReason.prompt_too_long, None]
    assert [(s.group_id, r.prompt_id) for s, r in results] == [("e0-p0", "e0-p0"), ("e0-p2", "e0-p2")]


def test_tokenizing_drops_a_prompt_too_long_the_same_way(serve_app):
    calls: list[list[str]] = []
    url = serve_app(replica_app([{"refuse": "e0-p0"}], calls))
    group = slots(2)
    results, _ = run_call([url], lambda c, clock: c.tokenize(group, prompts(group), clock))
    assert [s.drop for s in group] == [DropReason.prompt_too_long, None]
    assert [(s.group_id, r.prompt_token_ids) for s, r in results] == [("e0-p1", [7, 8])]


def test_a_failing_replica_is_ejected_and_another_answers_until_the_attempts_run_out(serve_app):
    bad_calls: list[list[str]] = []
    good_calls: list[list[str]] = []
    bad = serve_app(replica_app([500] * 10, bad_calls))
    good = serve_app(replica_app([], good_calls))
    group = slots(2)
    # Least outstanding, ties to the replica used longest ago: the first call goes to the first URL.
    results, pool = run_call([bad, good], generate(group), replica_attempts=2)
    assert bad_calls and len(good_calls) == 1
    assert pool.replicas[bad].ejected_until > 0 and pool.replicas[good].ejected_until == 0
    assert [s.group_id for s, _ in results] == ["e0-p0", "e0-p1"]

    group = slots(2)
    results, pool = run_call([bad], generate(group), replica_attempts=1)
    assert results is None and all(s.drop is None for s in group)  # the caller names the reason


def test_stale_weights_are_waited_out_and_given_up_at_the_calls_deadline(serve_app):
    calls: list[list[str]] = []
    url = serve_app(replica_app([409, 409], calls))
    results, pool = run_call([url], generate(slots(1)))
    assert len(calls) == 3 and len(results) == 1
    assert pool.replicas[url].ejected_until == 0  # a replica behind on weights is not a failing one

    calls.clear()
    url = serve_app(replica_app([409] * 100, calls))
    results, _ = run_call([url], generate(slots(1)), generate_timeout_s=1.0)
    assert results is None and 2 <= len(calls) < 100
