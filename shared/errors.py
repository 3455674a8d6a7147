"""The ghpo exception hierarchy and its one mapping to HTTP: status codes and the error envelope.

Every error response of every service has the body
`{"error": {"code": str, "message": str, "field": str | null, "request_id": str}}`, whether it comes from
our own code (a `GhpoError`), FastAPI's request validation (422, field = dotted location, or "body" with
the JSON decoder's message and position when the body is not JSON at all), routing
(404/405), the body-size limit (413) or an unexpected exception (500, logged with its request id).
`Retry-After` is sent on 429 and 503. The client side (`ghpo.shared.http`) maps envelopes back to the
same classes with `error_from_response_body`.

Deliberately no try/except helpers here: code raises a `GhpoError` subclass and lets it propagate.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from ghpo.shared.logs import get_request_id

log = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 4000  # stays under ErrorDetail.message's bound, with room for a suffix


class GhpoError(Exception):
    """Base of all errors that map to an HTTP status. `field` names the offending input (dotted path)."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, field: str | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.request_id: str | None = None  # filled in by the client for errors received from a service
        self.status_code = self.status  # an error received with an unmapped status overrides this

    def __str__(self) -> str:
        where = f" (field: {self.field})" if self.field else ""
        return f"{self.code}: {self.message}{where}"

    def to_envelope(self, request_id: str | None = None) -> dict[str, Any]:
        message = (
            self.message
            if len(self.message) <= MAX_MESSAGE_CHARS
            else self.message[:MAX_MESSAGE_CHARS] + "..."
        )
        return {
            "error": {
                "code": self.code,
                "message": message,
                "field": self.field,
                "request_id": request_id or "",
            }
        }


class BadRequest(GhpoError):
    status, code = 400, "bad_request"


class Unauthorized(GhpoError):
    status, code = 401, "unauthorized"


class Forbidden(GhpoError):
    status, code = 403, "forbidden"


class NotFound(GhpoError):
    status, code = 404, "not_found"


class MethodNotAllowed(GhpoError):
    status, code = 405, "method_not_allowed"


class Conflict(GhpoError):
    status, code = 409, "conflict"


class PayloadTooLarge(GhpoError):
    status, code = 413, "payload_too_large"


class Unprocessable(GhpoError):
    status, code = 422, "unprocessable"


class TooManyRequests(GhpoError):
    status, code = 429, "too_many_requests"


class Internal(GhpoError):
    status, code = 500, "internal"


class Unavailable(GhpoError):
    status, code = 503, "unavailable"


class Unreachable(Unavailable):
    """Client side only: the service could not be reached at all (connection refused, timeouts)."""

    code = "unreachable"


ERRORS_BY_CODE: dict[str, type[GhpoError]] = {
    cls.code: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        PayloadTooLarge,
        Unprocessable,
        TooManyRequests,
        Internal,
        Unavailable,
    )
}
ERRORS_BY_STATUS: dict[int, type[GhpoError]] = {cls.status: cls for cls in ERRORS_BY_CODE.values()}


def error_class_for(code: str | None, status: int) -> type[GhpoError]:
    """The class for a received error: by envelope code first, then by status, then the nearest family."""
    if code in ERRORS_BY_CODE:
        return ERRORS_BY_CODE[code]
    if status in ERRORS_BY_STATUS:
        return ERRORS_BY_STATUS[status]
    return Internal if status >= 500 else BadRequest


def error_from_response_body(status: int, body: Any, *, retry_after: float | None = None) -> GhpoError:
    """Rebuild the exception a service raised from its status and (decoded JSON) body.

    A body that is not an envelope (a proxy's HTML page, say) still yields an error of the right family,
    with the body's start as the message.
    """
    detail = body.get("error") if isinstance(body, dict) else None
    if isinstance(detail, dict) and isinstance(detail.get("message"), str):
        code = detail.get("code") if isinstance(detail.get("code"), str) else None
        field = detail.get("field") if isinstance(detail.get("field"), str) else None
        exc = error_class_for(code, status)(detail["message"], field=field, retry_after=retry_after)
        if code and code != exc.code:
            exc.code = code  # type: ignore[misc]  # keep the remote's own code (e.g. one this side lacks)
        request_id = detail.get("request_id")
        exc.request_id = request_id if isinstance(request_id, str) and request_id else None
    else:
        text = body if isinstance(body, str) else repr(body)
        exc = error_class_for(None, status)(f"HTTP {status}: {text[:500]}", retry_after=retry_after)
    exc.status_code = status
    return exc


def error_response(
    exc: GhpoError, request_id: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON response for `exc`; Retry-After is set on 429/503 (1 s when the error gives none)."""
    all_headers = dict(headers or {})
    if exc.status_code in (429, 503) or exc.retry_after is not None:
        seconds = exc.retry_after if exc.retry_after is not None else 1.0
        all_headers["Retry-After"] = str(max(0, math.ceil(seconds)))
    return JSONResponse(exc.to_envelope(request_id), status_code=exc.status_code, headers=all_headers)


def _request_id(request: Request) -> str:
    return get_request_id() or request.headers.get("x-request-id", "")


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if len(parts) > 1 and parts[0] == "body":  # the body is implied; query/path/header stay explicit
        parts = parts[1:]
    return ".".join(parts)


def _json_problem(err: dict[str, Any], body: Any) -> str:
    """The JSON decoder's own message with its position: "Expecting value: line 1 column 40 (char 39)"."""
    loc = err.get("loc", ())
    pos = loc[-1] if loc and isinstance(loc[-1], int) else None
    reason = str((err.get("ctx") or {}).get("error") or err.get("msg") or "invalid JSON")
    if pos is None:
        return reason
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if isinstance(body, str) and pos <= len(body):
        return str(json.JSONDecodeError(reason, body, pos))  # adds line, column and char
    return f"{reason} (char {pos})"


def validation_error(exc: RequestValidationError) -> Unprocessable:
    """One 422 naming the first bad field and listing (up to 10) problems as `location: message`.
    A body that is not JSON at all names the body, with the decoder's message and position."""
    errors = list(exc.errors())
    if not errors:
        return Unprocessable("request validation failed")
    if errors[0].get("type") == "json_invalid":
        problem = _json_problem(errors[0], getattr(exc, "body", None))
        return Unprocessable(f"request body is not valid JSON: {problem}", field="body")
    problems = [
        f"{_location(err.get('loc', ())) or 'request'}: {err.get('msg', 'invalid')}" for err in errors[:10]
    ]
    if len(errors) > 10:
        problems.append(f"... and {len(errors) - 10} more")
    return Unprocessable("; ".join(problems), field=_location(errors[0].get("loc", ())) or None)


async def _handle_ghpo(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GhpoError)
    if exc.status_code == 500:
        log.error("request failed: %s", exc)
    elif exc.status_code > 500:
        log.warning("request failed: %s", exc)
    return error_response(exc, _request_id(request))


async def _handle_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc), _request_id(request))


async def _handle_http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    cls = error_class_for(None, exc.status_code)
    message = exc.detail if isinstance(exc.detail, str) else repr(exc.detail)
    if exc.status_code in (404, 405) and message in ("Not Found", "Method Not Allowed"):
        message = f"{message}: {request.method} {request.url.path}"
    err = cls(message)
    err.status_code = exc.status_code
    return error_response(err, _request_id(request), headers=dict(exc.headers or {}))


async def _handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    request_id = _request_id(request)
    log.exception("unhandled error in %s %s (request_id=%s)", request.method, request.url.path, request_id)
    return error_response(
        Internal(f"internal error ({type(exc).__name__}); see logs for request {request_id}"), request_id
    )


def install_error_handlers(app: FastAPI) -> None:
    """Map every error a FastAPI app can produce to the envelope."""
    app.add_exception_handler(GhpoError, _handle_ghpo)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(HTTPException, _handle_http)
    # Starlette serves this handler from its outermost middleware; create_service_app's own request
    # middleware normally catches unexpected errors first (so the response still carries X-Request-ID).
    app.add_exception_handler(Exception, _handle_unexpected)
