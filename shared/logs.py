"""Structured logging for ghpo processes: one handler on the root logger, plain text or JSON lines,
every record stamped with the service name and the request id of the request being served.

The request id lives in a contextvar (`request_id_var`): the service app sets it per request, the HTTP
client reads it to forward `X-Request-ID` downstream, so one id follows a call through all services.
Extra structured fields go through the standard `extra=` argument (`log.info("step", extra={"step": 3})`)
and appear as JSON keys. This module does not ship logs anywhere: it writes to stderr.
"""

from __future__ import annotations

import json as jsonlib
import logging
import sys
import time
from contextvars import ContextVar, Token

request_id_var: ContextVar[str | None] = ContextVar("ghpo_request_id", default=None)

_service_name = "ghpo"
# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "service",
    "request_id",
    "taskName",
    "color_message",  # uvicorn's coloured duplicate of the message
}


def get_request_id() -> str | None:
    return request_id_var.get()


def set_request_id(request_id: str | None) -> Token[str | None]:
    """Set the current request id; pass the returned token to `reset_request_id` when done."""
    return request_id_var.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    request_id_var.reset(token)


class ContextFilter(logging.Filter):
    """Adds `service` and `request_id` ("-" outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = _service_name
        record.request_id = request_id_var.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, service, request_id, message, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "service": getattr(record, "service", _service_name),
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return jsonlib.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(service)s [%(request_id)s] %(name)s: %(message)s"


def configure_logging(service: str, level: str = "INFO", json: bool = False) -> None:
    """Install (or replace) ghpo's handler on the root logger. Idempotent; other handlers are kept."""
    global _service_name
    _service_name = service
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_ghpo", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._ghpo = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    # httpx logs every request at INFO: far too chatty for service-to-service traffic.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> logging.Logger:
    """A standard logger; records get service and request id from the handler's filter."""
    return logging.getLogger(name)
