"""ghpo.shared.logs: JSON lines carry service, request id and extra fields."""

from __future__ import annotations

import json
import logging

from ghpo.shared.logs import ContextFilter, JsonFormatter, reset_request_id, set_request_id


def _format(record: logging.LogRecord) -> dict:
    ContextFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_json_line_has_service_request_id_message_and_extras():
    logger = logging.getLogger("ghpo.test")
    token = set_request_id("req-1")
    try:
        record = logger.makeRecord(
            "ghpo.test",
            logging.INFO,
            __file__,
            1,
            "step %d done",
            (3,),
            None,
            extra={"step": 3, "run_id": "run-a"},
        )
        entry = _format(record)
    finally:
        reset_request_id(token)
    assert entry["message"] == "step 3 done"
    assert entry["request_id"] == "req-1"
    assert entry["level"] == "INFO"
    assert (entry["step"], entry["run_id"]) == (3, "run-a")
    assert "service" in entry


def test_outside_a_request_the_request_id_is_a_dash():
    record = logging.getLogger("ghpo.test").makeRecord(
        "ghpo.test", logging.WARNING, __file__, 1, "x", (), None
    )
    assert _format(record)["request_id"] == "-"


def test_exception_text_is_included():
    try:
        raise ValueError("bad thing")
    except ValueError:
        import sys

        record = logging.getLogger("ghpo.test").makeRecord(
            "ghpo.test", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    assert "ValueError: bad thing" in _format(record)["exc"]
