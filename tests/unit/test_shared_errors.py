"""ghpo.shared.errors: the envelope, status mapping, and rebuilding errors from received envelopes."""

from __future__ import annotations

import json

from ghpo.shared.errors import (
    MAX_MESSAGE_CHARS,
    BadRequest,
    Conflict,
    GhpoError,
    Internal,
    NotFound,
    TooManyRequests,
    Unavailable,
    Unprocessable,
    error_from_response_body,
    error_response,
)
from ghpo.shared.schemas.common import ErrorEnvelope


def test_envelope_has_code_message_field_and_request_id():
    envelope = Conflict("stale version", field="version").to_envelope("r1")
    assert envelope == {
        "error": {"code": "conflict", "message": "stale version", "field": "version", "request_id": "r1"}
    }
    ErrorEnvelope.model_validate(envelope)


def test_error_response_sets_status_and_retry_after_on_503_and_429():
    response = error_response(Unavailable("warming up", retry_after=2.5), "r2")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"
    assert error_response(TooManyRequests("slow down"), "r3").headers["retry-after"] == "1"
    assert "retry-after" not in error_response(NotFound("no such batch"), "r4").headers


def test_long_messages_are_truncated_to_fit_the_envelope_bound():
    long = "".join(f"{i:07d}" for i in range(20_000))  # 140,000 characters, no two windows alike
    message = BadRequest(long).to_envelope("r")["error"]["message"]
    assert message == long[:MAX_MESSAGE_CHARS] + "..."  # the start kept, the cut marked
    ErrorEnvelope.model_validate(BadRequest(long).to_envelope("r"))
    at_bound = long[:MAX_MESSAGE_CHARS]
    assert BadRequest(at_bound).to_envelope("r")["error"]["message"] == at_bound  # nothing cut that fits


def test_received_envelope_becomes_the_same_class_with_its_details():
    body = json.loads(json.dumps(Unprocessable("bad n", field="sampling.n").to_envelope("r5")))
    exc = error_from_response_body(422, body)
    assert isinstance(exc, Unprocessable)
    assert (exc.message, exc.field, exc.request_id, exc.status_code) == ("bad n", "sampling.n", "r5", 422)


def test_unknown_code_maps_by_status_and_keeps_the_status():
    exc = error_from_response_body(418, {"error": {"code": "teapot", "message": "short and stout"}})
    assert isinstance(exc, BadRequest)
    assert (exc.status_code, exc.code) == (418, "teapot")
    exc = error_from_response_body(502, "<html>bad gateway</html>", retry_after=1.0)
    assert isinstance(exc, Internal)
    assert "bad gateway" in exc.message
    assert exc.retry_after == 1.0


def test_every_error_is_a_ghpo_error_with_a_distinct_code():
    classes = [BadRequest, Conflict, Internal, NotFound, TooManyRequests, Unavailable, Unprocessable]
    assert all(issubclass(cls, GhpoError) for cls in classes)
    assert len({cls.code for cls in classes}) == len(classes)
