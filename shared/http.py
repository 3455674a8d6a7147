"""HTTP clients for calls between ghpo services: `ServiceClient` (async) and `SyncServiceClient`.

Each client owns one pooled httpx client for one base URL. Every call has a timeout (per call, clipped
to what is left of the total budget), sends the bearer token and the current X-Request-ID (from the log
contextvar, or one fresh id shared by all attempts of the call), and is retried with tenacity only when
retrying is safe and useful:
  * retried: transport errors, 5xx and 429 (waiting what Retry-After says, else jittered exponential
    backoff), until `max_attempts` or the `total_budget` in seconds would be exceeded;
  * a POST/PATCH is retried only with an idempotency key (sent as `Idempotency-Key`) -- except when the
    connection could not even be opened, which proves nothing was sent;
  * never retried: other 4xx. Error envelopes become `ghpo.shared.errors` exceptions with the remote
    code, message, field and request id; a service that stays unreachable raises `Unreachable`.
Deliberately no circuit breaking or load balancing: the rollout server's replica pool does that.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import logging
import time
import uuid
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from ghpo.shared.auth import bearer_headers
from ghpo.shared.errors import GhpoError, Unreachable, error_from_response_body
from ghpo.shared.logs import get_request_id

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# Failures where the request provably never left this process: safe to retry for any method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    if value.replace(".", "", 1).isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(response: httpx.Response) -> GhpoError:
    """The ghpo exception an error response stands for."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return error_from_response_body(
        response.status_code, body, retry_after=parse_retry_after(response.headers.get("retry-after"))
    )


class _ClientCore:
    """What the async and sync clients share: headers, retry policy, error and response mapping."""

    _http_client_cls: type[httpx.AsyncClient] | type[httpx.Client]

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        total_budget: float = 60.0,
        max_attempts: int = 5,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | httpx.BaseTransport | None = None,
    ):
        if timeout <= 0 or total_budget <= 0 or max_attempts < 1:
            raise ValueError("timeout and total_budget must be > 0 and max_attempts >= 1")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.total_budget = total_budget
        self.max_attempts = max_attempts
        self._headers = {"Accept": "application/json", **bearer_headers(token)}
        self._backoff = wait_random_exponential(multiplier=backoff_initial, max=backoff_max)
        self._client = self._http_client_cls(
            base_url=self.base_url,
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    def _prepare(
        self,
        method: str,
        json: Any,
        content: bytes | None,
        headers: dict[str, str] | None,
        idempotency_key: str | None,
    ) -> tuple[dict[str, str], bytes | None]:
        all_headers = {**self._headers, **(headers or {})}
        all_headers["X-Request-ID"] = get_request_id() or uuid.uuid4().hex
        if idempotency_key is not None:
            all_headers["Idempotency-Key"] = idempotency_key
        if json is not None:
            if content is not None:
                raise ValueError("pass json or content, not both")
            content = (json.model_dump_json() if isinstance(json, BaseModel) else _dumps(json)).encode()
            all_headers["Content-Type"] = "application/json"
        return all_headers, content

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, GhpoError) and exc.retry_after is not None:
            return exc.retry_after
        return self._backoff(state)

    def _retry_policy(self, method: str, idempotency_key: str | None) -> dict[str, Any]:
        retry_any = method.upper() in IDEMPOTENT_METHODS or idempotency_key is not None

        def should_retry(state: RetryCallState) -> bool:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _NOT_SENT):
                return True
            if not retry_any:
                return False
            if isinstance(exc, httpx.TransportError):
                return True
            return isinstance(exc, GhpoError) and (exc.status_code >= 500 or exc.status_code == 429)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            sleep = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s attempt %d failed (%s); retrying in %.2f s",
                method,
                state.attempt_number,
                _describe(exc),
                sleep,
            )

        return {
            "stop": stop_after_attempt(self.max_attempts) | stop_before_delay(self.total_budget),
            "wait": self._wait,
            "retry": should_retry,
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def _attempt_timeout(self, started: float, timeout: float | None) -> httpx.Timeout:
        remaining = self.total_budget - (time.monotonic() - started)
        return httpx.Timeout(max(0.001, min(timeout or self.timeout, remaining)))

    @staticmethod
    def _unreachable(method: str, url: str, exc: httpx.TransportError, attempts: int) -> Unreachable:
        return Unreachable(f"{method} {url} failed after {attempts} attempt(s): {_describe(exc)}")

    @staticmethod
    def _decode(response: httpx.Response, response_model: type[M] | None) -> Any:
        if response_model is not None:
            return response_model.model_validate_json(response.content)
        if not response.content:
            return None
        return response.json()


def _dumps(value: Any) -> str:
    return jsonlib.dumps(value, separators=(",", ":"))


def _describe(exc: BaseException | None) -> str:
    if isinstance(exc, GhpoError):
        return f"HTTP {exc.status_code} {exc}"
    return f"{type(exc).__name__}: {exc}" if exc is not None else "unknown"


class ServiceClient(_ClientCore):
    """Async client for one service. Use `async with ServiceClient(...) as c:` or call `aclose()`."""

    _http_client_cls = httpx.AsyncClient

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send with retries; returns the 2xx/3xx response or raises the mapped `GhpoError`."""
        method = method.upper()
        all_headers, body = self._prepare(method, json, content, headers, idempotency_key)
        started = time.monotonic()
        attempts = 0
        try:
            async for attempt in AsyncRetrying(**self._retry_policy(method, idempotency_key)):
                with attempt:
                    attempts += 1
                    response = await self._client.request(
                        method,
                        path,
                        content=body,
                        params=params,
                        headers=all_headers,
                        timeout=self._attempt_timeout(started, timeout),
                    )
                    if response.status_code >= 400:
                        raise error_from_response(response)
        except httpx.TransportError as exc:
            raise self._unreachable(method, f"{self.base_url}{path}", exc, attempts) from exc
        return response

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        response_model: type[M] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """`request` then decode: a `response_model` instance, the JSON value, or None for an empty body."""
        response = await self.request(
            method, path, json=json, params=params, idempotency_key=idempotency_key, timeout=timeout
        )
        return self._decode(response, response_model)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> ServiceClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class SyncServiceClient(_ClientCore):
    """Blocking twin of `ServiceClient` (CLI, trainer loop). Use `with` or call `close()`."""

    _http_client_cls = httpx.Client

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        method = method.upper()
        all_headers, body = self._prepare(method, json, content, headers, idempotency_key)
        started = time.monotonic()
        attempts = 0
        try:
            for attempt in Retrying(**self._retry_policy(method, idempotency_key)):
                with attempt:
                    attempts += 1
                    response = self._client.request(
                        method,
                        path,
                        content=body,
                        params=params,
                        headers=all_headers,
                        timeout=self._attempt_timeout(started, timeout),
                    )
                    if response.status_code >= 400:
                        raise error_from_response(response)
        except httpx.TransportError as exc:
            raise self._unreachable(method, f"{self.base_url}{path}", exc, attempts) from exc
        return response

    def request_json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        response_model: type[M] | None = None,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        response = self.request(
            method, path, json=json, params=params, idempotency_key=idempotency_key, timeout=timeout
        )
        return self._decode(response, response_model)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SyncServiceClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
