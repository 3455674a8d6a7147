"""`create_service_app()`: the FastAPI app every ghpo service is built on.

It gives each service the same outer shell: /healthz (liveness), /readyz (the service's own dependency
checks; 503 naming what failed), /metrics (Prometheus text), bearer auth on every other route, request
metrics labelled by route *template* (never the raw path, which would explode label cardinality), an
X-Request-ID accepted or generated, echoed and put in logs, a request-body size limit (413), and the
error envelope for every error. The middlewares are plain ASGI callables, not `BaseHTTPMiddleware`,
whose per-request task and stream wrapping costs a large share of a small endpoint's throughput.

Deliberately absent: rate limiting, CORS, TLS (terminated in front of the service), and any service
logic; routes come from the service's routers, which carry their own "/v1" prefix.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import ghpo
from ghpo.shared.auth import OPEN_PATHS, BearerAuthMiddleware
from ghpo.shared.errors import (
    BadRequest,
    GhpoError,
    Internal,
    PayloadTooLarge,
    Unavailable,
    error_response,
    install_error_handlers,
)
from ghpo.shared.logs import configure_logging, get_logger, request_id_var
from ghpo.shared.schemas.common import HealthStatus, ReadyStatus
from ghpo.shared.settings import ServiceSettings

log = get_logger(__name__)

READINESS_TIMEOUT_S = 5.0
REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"

HTTP_REQUESTS = Counter(
    "ghpo_http_requests",
    "HTTP requests served, by service, route template, method and status code.",
    ["service", "route", "method", "status"],
    registry=REGISTRY,
)
HTTP_REQUEST_DURATION = Histogram(
    "ghpo_http_request_duration_seconds",
    "Time from request start to the end of the handler, by service, route template and method.",
    ["service", "route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
    registry=REGISTRY,
)


class RequestContextMiddleware:
    """Request id, request metrics and the last-resort 500 envelope (outermost of ours)."""

    def __init__(self, app: ASGIApp, *, service: str, route_templates: list[tuple[re.Pattern[str], str]]):
        self.app = app
        self.service = service
        self.route_templates = route_templates
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _VALID_REQUEST_ID.match(candidate) else None
                break
        request_id = request_id or os.urandom(16).hex()
        echo = (b"x-request-id", request_id.encode())
        token = request_id_var.set(request_id)
        start = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echo]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            status = 500
            if started:  # too late for an envelope: the status line is already out
                log.exception("unhandled error after the response started")
                raise
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            message = f"internal error ({type(exc).__name__}); see logs for request {request_id}"
            await error_response(Internal(message), request_id)(scope, receive, send_with_id)
        finally:
            self._observe(scope, status, time.perf_counter() - start)
            request_id_var.reset(token)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = self._route_label(scope)
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                HTTP_REQUESTS.labels(self.service, route, method, str(status)),
                HTTP_REQUEST_DURATION.labels(self.service, route, method),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def _route_label(self, scope: Scope) -> str:
        route = scope.get("route")
        path = getattr(route, "path", None)
        if path is not None:
            return path
        # Answered before routing (401, early 413) or unmatched: find the template ourselves.
        path = scope["path"]
        for regex, template in self.route_templates:
            if regex.match(path):
                return template
        return UNMATCHED_ROUTE


class BodyLimitMiddleware:
    """413 for bodies over `max_body_bytes`: by Content-Length up front, else by counting streamed bytes."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body exceeds the limit of {self.max_body_bytes} bytes (max_body_bytes)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope["headers"]:
            if key == b"content-length":
                # The server enforces Content-Length, so a body within it needs no counting.
                if not value.isdigit():
                    bad = BadRequest(f"invalid Content-Length header {value[:40]!r}", field="content-length")
                    await error_response(bad, request_id_var.get())(scope, receive, send)
                elif int(value) > self.max_body_bytes:
                    await error_response(self._too_large(), request_id_var.get())(scope, receive, send)
                else:
                    await self.app(scope, receive, send)
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # starlette's HTTPException: FastAPI re-raises it from body parsing (anything else
                    # becomes a 400) and our HTTPException handler renders the 413 envelope.
                    raise HTTPException(413, detail=self._too_large().message)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except HTTPException as exc:
            if exc.status_code != 413 or started:
                raise
            await error_response(self._too_large(), request_id_var.get())(scope, receive, send)


def _add_probe_routes(
    app: FastAPI, name: str, version: str, readiness: Callable[[], Awaitable[dict[str, bool]]] | None
) -> None:
    # Registered on the app itself, not through include_router: every included router costs each
    # request an extra match pass in FastAPI's router.

    async def healthz() -> HealthStatus:
        return HealthStatus(service=name, version=version)

    async def readyz() -> ReadyStatus:
        checks: dict[str, bool] = {}
        if readiness is not None:
            try:
                checks = await asyncio.wait_for(readiness(), READINESS_TIMEOUT_S)
            except TimeoutError:
                raise Unavailable(
                    f"readiness check timed out after {READINESS_TIMEOUT_S} s", retry_after=1
                ) from None
            except GhpoError:
                raise
            except Exception as exc:
                log.warning("readiness check raised", exc_info=True)
                raise Unavailable(
                    f"readiness check failed: {type(exc).__name__}: {exc}", retry_after=1
                ) from exc
        failed = sorted(dep for dep, ok in checks.items() if not ok)
        if failed:
            raise Unavailable(f"not ready; failed dependencies: {', '.join(failed)}", retry_after=1)
        return ReadyStatus(service=name, checks=checks)

    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app.add_api_route("/healthz", healthz, methods=["GET"], response_model=HealthStatus)
    app.add_api_route("/readyz", readyz, methods=["GET"], response_model=ReadyStatus)
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)


def create_service_app(
    *,
    name: str,
    settings: ServiceSettings,
    routers: list[APIRouter],
    readiness: Callable[[], Awaitable[dict[str, bool]]] | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
    version: str = ghpo.__version__,
) -> FastAPI:
    """A FastAPI app with ghpo's probes, metrics, auth, request ids, body limit and error envelopes.

    `readiness` returns {dependency name: ok}; any False (or an exception, or taking over 5 s) makes
    /readyz answer 503 naming it. `lifespan` is where the service creates heavy resources.
    """
    configure_logging(name, settings.log_level, settings.log_json)
    app = FastAPI(title=f"ghpo {name}", version=version, lifespan=lifespan)
    app.state.settings = settings
    app.state.service_name = name
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    _add_probe_routes(app, name, version, readiness)
    # add_middleware puts each new one outside the previous: body limit is innermost, request context
    # outermost (so 401s and 413s carry the request id and are counted).
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    token = settings.token_value
    if token:
        app.add_middleware(BearerAuthMiddleware, token=token, open_paths=OPEN_PATHS)
    else:
        log.warning("no token configured: %s accepts unauthenticated requests (dev only)", name)
    templates = [
        (route.path_regex, route.path)
        for route in [*app.router.routes, *(r for router in routers for r in router.routes)]
        if isinstance(route, APIRoute)
    ]
    app.add_middleware(RequestContextMiddleware, service=name, route_templates=templates)
    return app
