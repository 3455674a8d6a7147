"""ghpo.shared.http pieces that need no server: Retry-After parsing, headers, argument checks.

The retry behaviour itself is tested over real HTTP in tests/service/test_service_base.py.
"""

from __future__ import annotations

import email.utils
import time

import pytest

from ghpo.shared.http import SyncServiceClient, parse_retry_after
from ghpo.shared.logs import reset_request_id, set_request_id
from ghpo.shared.schemas.common import HealthStatus


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 50 <= parse_retry_after(in_a_minute) <= 61
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_request_headers_carry_token_request_id_idempotency_key_and_json():
    with SyncServiceClient("http://127.0.0.1:1/", token="tok") as client:
        token = set_request_id("trace-1")
        try:
            headers, body = client._prepare(
                "POST", HealthStatus(service="s", version="1"), None, None, "op-1"
            )
        finally:
            reset_request_id(token)
    assert headers["Authorization"] == "Bearer tok"
    assert headers["X-Request-ID"] == "trace-1"
    assert headers["Idempotency-Key"] == "op-1"
    assert headers["Content-Type"] == "application/json"
    assert body == b'{"status":"ok","service":"s","version":"1"}'
    assert client.base_url == "http://127.0.0.1:1"


def test_json_and_content_together_are_refused():
    with (
        SyncServiceClient("http://127.0.0.1:1") as client,
        pytest.raises(ValueError, match="json or content"),
    ):
        client._prepare("POST", {"a": 1}, b"raw", None, None)


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"total_budget": -1}, {"max_attempts": 0}])
def test_nonsense_limits_are_refused(kwargs):
    with pytest.raises(ValueError):
        SyncServiceClient("http://127.0.0.1:1", **kwargs)
