"""The inference replica pool over real HTTP: least outstanding requests, ejection of a failing replica
and its return once its readiness probe passes. The replicas are small real apps with a /readyz."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Response

from ghpo.services.rollout.replicas import ReplicaPool


def replica_app(state: dict) -> FastAPI:
    app = FastAPI()

    @app.get("/readyz")
    def readyz() -> Response:
        return Response(status_code=200 if state["ready"] else 503)

    return app


def test_work_goes_to_the_least_busy_replica_and_a_failing_one_is_ejected_then_probed_back(serve_app):
    states = [{"ready": True}, {"ready": True}]
    urls = [serve_app(replica_app(s)) for s in states]

    async def scenario():
        pool = ReplicaPool(urls, dns=None, dns_refresh_s=30, eject_s=0.3, token=None, timeout_s=5)
        async with pool.acquire() as a, pool.acquire() as b:
            assert {a.url, b.url} == set(urls)  # the second call avoids the busy replica
            async with pool.acquire() as c:
                assert c.url in urls
        bad = pool.replicas[urls[0]]
        states[0]["ready"] = False
        pool.eject(bad, "test")
        for _ in range(3):
            async with pool.acquire() as r:
                assert r.url == urls[1]
        await asyncio.sleep(0.4)  # ejection over: the probe fails, it stays out
        async with pool.acquire() as r:
            assert r.url == urls[1]
        assert bad.ejected_until > 0
        states[0]["ready"] = True
        await asyncio.sleep(0.4)
        async with pool.acquire() as r, pool.acquire() as s:
            assert {r.url, s.url} == set(urls)  # probed back in
        assert 0.0 < pool.busy_fraction() <= 1.0
        await pool.close()

    asyncio.run(scenario())
