"""create_service_app and the service clients over real HTTP (uvicorn on a loopback port)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request, Response

from ghpo.shared.app import create_service_app
from ghpo.shared.errors import Conflict, TooManyRequests, Unavailable, Unprocessable, Unreachable
from ghpo.shared.http import ServiceClient, SyncServiceClient
from ghpo.shared.logs import ContextFilter, get_request_id, reset_request_id, set_request_id
from ghpo.shared.schemas.common import WireModel
from ghpo.shared.settings import ServiceSettings

TOKEN = "s3cret-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT = 4096


class Item(WireModel):
    name: str
    count: int


class Echo(WireModel):
    item_id: str
    count: int


def build_app(*, readiness=None, lifespan=None, token: str | None = TOKEN) -> tuple[FastAPI, Counter]:
    hits: Counter = Counter()
    router = APIRouter(prefix="/v1")

    @router.post("/items/{item_id}", response_model=Echo)
    async def put_item(item_id: str, item: Item) -> Echo:
        return Echo(item_id=item_id, count=item.count)

    @router.api_route("/flaky/{key}", methods=["GET", "POST"])
    async def flaky(key: str, request: Request, fails: int = 0, status: int = 503, retry_after: str = "0"):
        hits[key] += 1
        hits[f"{key}:idem:{request.headers.get('idempotency-key')}"] += 1
        if hits[key] <= fails:
            headers = {"Retry-After": retry_after} if retry_after else {}
            return Response(
                content=b'{"error":{"code":"x","message":"try later","field":null,"request_id":""}}',
                status_code=status,
                headers=headers,
                media_type="application/json",
            )
        return {"hits": hits[key]}

    @router.get("/slow/{key}")
    async def slow(key: str):
        hits[key] += 1
        await asyncio.sleep(0.3)
        raise Unavailable("still warming up")

    @router.post("/conflict/{key}")
    async def conflict(key: str):
        hits[key] += 1
        raise Conflict("version 3 is not newer than served version 5", field="version")

    @router.get("/whoami")
    async def whoami() -> dict:
        return {"request_id": get_request_id()}

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    settings = ServiceSettings(token=token, max_body_bytes=LIMIT)
    app = create_service_app(
        name="demo", settings=settings, routers=[router], readiness=readiness, lifespan=lifespan
    )
    return app, hits


@pytest.fixture
def served(serve_app) -> tuple[str, Counter]:
    app, hits = build_app()
    return serve_app(app), hits


def test_health_probes_and_metrics_need_no_token(served):
    url, _ = served
    assert httpx.get(f"{url}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{url}/readyz").status_code == 200
    assert httpx.get(f"{url}/metrics").status_code == 200


def test_missing_token_is_401_naming_the_missing_header(served):
    url, _ = served
    resp = httpx.post(f"{url}/v1/items/a", json={"name": "x", "count": 1})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert "missing Authorization header" in resp.json()["error"]["message"]


def test_wrong_token_is_401_saying_wrong_token(served):
    url, _ = served
    resp = httpx.post(
        f"{url}/v1/items/a", json={"name": "x", "count": 1}, headers={"Authorization": "Bearer nope"}
    )
    assert resp.status_code == 401
    assert resp.json()["error"] == {
        "code": "unauthorized",
        "message": "wrong bearer token",
        "field": "authorization",
        "request_id": resp.headers["x-request-id"],
    }
    resp = httpx.get(f"{url}/v1/whoami", headers={"Authorization": f"Basic {TOKEN}"})
    assert "not of the form" in resp.json()["error"]["message"]


def test_right_token_is_served(served):
    url, _ = served
    resp = httpx.post(f"{url}/v1/items/a", json={"name": "x", "count": 2}, headers=AUTH)
    assert resp.status_code == 200
    assert resp.json() == {"item_id": "a", "count": 2}


def test_no_token_configured_disables_auth(serve_app):
    app, _ = build_app(token=None)
    url = serve_app(app)
    assert httpx.post(f"{url}/v1/items/a", json={"name": "x", "count": 2}).status_code == 200


def test_oversized_body_with_content_length_is_413_naming_the_limit(served):
    url, _ = served
    resp = httpx.post(f"{url}/v1/items/a", content=b"x" * (LIMIT + 1), headers=AUTH)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"
    assert str(LIMIT) in resp.json()["error"]["message"]


def test_oversized_chunked_body_is_413_naming_the_limit(served):
    url, _ = served
    chunks = iter([b"x" * 1000] * 10)  # a generator body is sent chunked, without Content-Length
    resp = httpx.post(f"{url}/v1/items/a", content=chunks, headers=AUTH)
    assert resp.status_code == 413
    assert str(LIMIT) in resp.json()["error"]["message"]


def test_chunked_body_under_the_limit_is_accepted(served):
    url, _ = served
    body = b'{"name": "x", "count": 7}'
    resp = httpx.post(
        f"{url}/v1/items/a",
        content=iter([body[:10], body[10:]]),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert resp.status_code == 200
    assert resp.json()["count"] == 7


def test_wrong_type_is_422_naming_the_field(served):
    url, _ = served
    resp = httpx.post(f"{url}/v1/items/a", json={"name": "x", "count": "many"}, headers=AUTH)
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["code"] == "unprocessable"
    assert error["field"] == "count"
    assert "count" in error["message"]


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"name": "x", "count": 7', "line 1 column 25 (char 24)"),  # truncated
        (b'{"name": "x",\n "count": }', "line 2 column 11 (char 24)"),
        (b"nope", "line 1 column 1 (char 0)"),
    ],
    ids=["truncated", "second-line", "not-json"],
)
def test_malformed_json_is_422_naming_the_body_with_the_decoders_position(served, body, where):
    url, _ = served
    resp = httpx.post(f"{url}/v1/items/a", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["field"] == "body"
    assert error["message"].startswith("request body is not valid JSON: Expecting")
    assert where in error["message"]


def test_unknown_field_is_422_naming_it(served):
    url, _ = served
    resp = httpx.post(f"{url}/v1/items/a", json={"name": "x", "count": 1, "colour": "red"}, headers=AUTH)
    assert resp.status_code == 422
    assert resp.json()["error"]["field"] == "colour"
    assert "colour: Extra inputs are not permitted" in resp.json()["error"]["message"]


def test_unknown_route_and_wrong_method_get_envelopes(served):
    url, _ = served
    resp = httpx.get(f"{url}/v1/nowhere", headers=AUTH)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
    resp = httpx.get(f"{url}/v1/items/a", headers=AUTH)
    assert resp.status_code == 405
    assert resp.json()["error"]["code"] == "method_not_allowed"


def test_request_id_is_echoed_when_given_and_generated_when_not(served):
    url, _ = served
    resp = httpx.get(f"{url}/v1/whoami", headers={**AUTH, "X-Request-ID": "req-42"})
    assert resp.headers["x-request-id"] == "req-42"
    assert resp.json()["request_id"] == "req-42"
    resp = httpx.get(f"{url}/v1/whoami", headers=AUTH)
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])
    assert resp.json()["request_id"] == resp.headers["x-request-id"]
    resp = httpx.get(f"{url}/v1/whoami", headers={**AUTH, "X-Request-ID": "bad id with spaces"})
    assert resp.headers["x-request-id"] != "bad id with spaces"


def test_unexpected_exception_is_500_envelope_logged_with_request_id(served):
    url, _ = served
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.addFilter(ContextFilter())
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("ghpo.shared.app")
    logger.addHandler(handler)
    try:
        resp = httpx.get(f"{url}/v1/boom", headers={**AUTH, "X-Request-ID": "boom-1"})
    finally:
        logger.removeHandler(handler)
    assert resp.status_code == 500
    assert resp.json()["error"]["code"] == "internal"
    assert resp.json()["error"]["request_id"] == "boom-1"
    assert "kaboom" not in resp.json()["error"]["message"]  # internals stay in the logs
    assert [r.request_id for r in records if r.exc_info] == ["boom-1"]


def test_metrics_count_requests_by_route_template(served):
    url, _ = served
    httpx.post(f"{url}/v1/items/abc123", json={"name": "x", "count": 1}, headers=AUTH)
    httpx.post(f"{url}/v1/items/abc123", json={"name": "x"})
    text = httpx.get(f"{url}/metrics").text
    ok = re.search(
        r'ghpo_http_requests_total\{method="POST",route="/v1/items/\{item_id\}",service="demo",status="200"\} (\S+)',
        text,
    )
    denied = re.search(r'route="/v1/items/\{item_id\}",service="demo",status="401"\} (\S+)', text)
    assert ok is not None and float(ok.group(1)) >= 1
    assert denied is not None and float(denied.group(1)) >= 1
    assert "abc123" not in text
    assert "ghpo_http_request_duration_seconds_bucket" in text


def test_readyz_is_503_naming_the_failed_dependency(serve_app):
    async def readiness() -> dict[str, bool]:
        return {"redis": False, "inference": True}

    app, _ = build_app(readiness=readiness)
    resp = httpx.get(f"{serve_app(app)}/readyz")
    assert resp.status_code == 503
    assert "retry-after" in resp.headers
    assert resp.json()["error"]["code"] == "unavailable"
    assert "redis" in resp.json()["error"]["message"]
    assert "inference" not in resp.json()["error"]["message"]


def test_readyz_is_503_when_the_check_itself_fails(serve_app):
    async def readiness() -> dict[str, bool]:
        raise ConnectionError("redis at 127.0.0.1:1 refused")

    app, _ = build_app(readiness=readiness)
    resp = httpx.get(f"{serve_app(app)}/readyz")
    assert resp.status_code == 503
    assert "ConnectionError: redis at 127.0.0.1:1 refused" in resp.json()["error"]["message"]


def test_readyz_reports_checks_when_all_pass(serve_app):
    async def readiness() -> dict[str, bool]:
        return {"redis": True}

    app, _ = build_app(readiness=readiness)
    resp = httpx.get(f"{serve_app(app)}/readyz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ready", "service": "demo", "checks": {"redis": True}}


def test_lifespan_runs_before_serving_and_after_stopping(serve_app):
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("start")
        yield
        events.append("stop")

    from ghpo.shared.serving import running_app

    app, _ = build_app(lifespan=lifespan)
    with running_app(app) as url:
        assert events == ["start"]
        assert httpx.get(f"{url}/healthz").status_code == 200
    assert events == ["start", "stop"]


# ---- clients ---------------------------------------------------------------------------------------


def test_client_retries_503_until_success(served):
    url, hits = served

    async def call():
        async with ServiceClient(url, token=TOKEN, backoff_initial=0.01) as client:
            return await client.request_json("GET", "/v1/flaky/a", params={"fails": 2})

    assert asyncio.run(call()) == {"hits": 3}
    assert hits["a"] == 3


def test_client_retries_429_honouring_retry_after(served):
    url, hits = served
    with SyncServiceClient(url, token=TOKEN, backoff_initial=0.01) as client:
        body = client.request_json(
            "GET", "/v1/flaky/b", params={"fails": 1, "status": 429, "retry_after": "0"}
        )
    assert body == {"hits": 2}
    assert hits["b"] == 2


def test_client_does_not_wait_past_budget_when_retry_after_is_longer(served):
    url, hits = served
    with SyncServiceClient(url, token=TOKEN, total_budget=0.5) as client, pytest.raises(TooManyRequests):
        client.request_json("GET", "/v1/flaky/c", params={"fails": 5, "status": 429, "retry_after": "30"})
    assert hits["c"] == 1


def test_client_does_not_retry_4xx_and_keeps_code_message_field(served):
    url, hits = served
    with SyncServiceClient(url, token=TOKEN) as client, pytest.raises(Conflict) as info:
        client.request_json("POST", "/v1/conflict/d", idempotency_key="k1")
    assert hits["d"] == 1
    assert info.value.field == "version"
    assert "not newer" in info.value.message
    assert info.value.request_id


def test_client_maps_validation_error_to_unprocessable_with_field(served):
    url, _ = served
    with SyncServiceClient(url, token=TOKEN) as client, pytest.raises(Unprocessable) as info:
        client.request_json("POST", "/v1/items/a", json={"name": "x", "count": "lots"})
    assert info.value.field == "count"


def test_post_without_idempotency_key_is_not_retried(served):
    url, hits = served
    with SyncServiceClient(url, token=TOKEN, backoff_initial=0.01) as client, pytest.raises(Unavailable):
        client.request_json("POST", "/v1/flaky/e", params={"fails": 1})
    assert hits["e"] == 1


def test_post_with_idempotency_key_is_retried_with_the_same_key(served):
    url, hits = served

    async def call():
        async with ServiceClient(url, token=TOKEN, backoff_initial=0.01) as client:
            return await client.request_json(
                "POST", "/v1/flaky/f", params={"fails": 2}, idempotency_key="op-9"
            )

    assert asyncio.run(call()) == {"hits": 3}
    assert hits["f:idem:op-9"] == 3


def test_client_gives_up_within_total_budget(served):
    url, hits = served
    client = SyncServiceClient(url, token=TOKEN, total_budget=1.0, max_attempts=100, backoff_initial=0.05)
    with client, pytest.raises(Unavailable):
        client.request_json("GET", "/v1/slow/g")  # every attempt takes 0.3 s then fails
    assert 1 <= hits["g"] <= 4


def test_client_retries_transport_errors_then_raises_unreachable():
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = SyncServiceClient(f"http://127.0.0.1:{port}", max_attempts=3, backoff_initial=0.01)
    with client, pytest.raises(Unreachable) as info:
        client.request_json("GET", "/v1/anything")
    assert "3 attempt(s)" in info.value.message
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_client_forwards_request_id_and_parses_response_model(served):
    url, _ = served

    async def call():
        token = set_request_id("trace-7")
        try:
            async with ServiceClient(url, token=TOKEN) as client:
                whoami = await client.request_json("GET", "/v1/whoami")
                echo = await client.request_json(
                    "POST", "/v1/items/z", json=Item(name="n", count=4), response_model=Echo
                )
                return whoami, echo
        finally:
            reset_request_id(token)

    whoami, echo = asyncio.run(call())
    assert whoami == {"request_id": "trace-7"}
    assert echo == Echo(item_id="z", count=4)
