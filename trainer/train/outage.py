"""Waiting through an upstream outage: the trainer's calls to the rollout server and the broker, retried
for as long as `services.outage_budget_s` allows when the service is down.

The shared HTTP client already retries a failed call a few times within seconds; a service that is being
restarted (by `ghpo run`'s supervisor, compose or Kubernetes) can take longer than that to come back. So
a call that still fails with an outage error (unreachable, or any 5xx) is tried again every second until
it succeeds or the outage has lasted `budget_s`; then `UpstreamLost` says which service was lost and
for how long. A stop request (SIGTERM) ends the wait at once with `StopRequested`, so the trainer can
checkpoint its last good state instead of waiting out the budget. Errors that are not outages (a 4xx: a
bug or a refused request) propagate at once. Not here: deciding what to do after a loss (loop.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ghpo.shared.errors import GhpoError
from ghpo.shared.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")
RETRY_EVERY_S = 1.0
REPORT_EVERY_S = 15.0


class StopRequested(Exception):
    """A stop was asked for while the trainer waited for an upstream service."""


class UpstreamLost(RuntimeError):
    """An upstream service stayed unreachable (or answered 5xx) for the whole outage budget."""


def is_outage(exc: BaseException) -> bool:
    """A failure that a restart of the service can cure: unreachable, timed out, or any 5xx answer."""
    return isinstance(exc, GhpoError) and exc.status_code >= 500


class Patience:
    """Calls `fn` until it succeeds, the outage budget is spent, or `stop` is set."""

    def __init__(self, budget_s: float, stop: threading.Event, *, retry_every_s: float = RETRY_EVERY_S):
        self.budget_s = budget_s
        self.stop = stop
        self.retry_every_s = retry_every_s

    def call(self, what: str, fn: Callable[[], T]) -> T:
        began: float | None = None
        reported = 0.0
        while True:
            try:
                result = fn()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                now = time.monotonic()
                if began is None:
                    began = now
                    log.warning("%s failed (%s); waiting up to %.0f s for it", what, exc, self.budget_s)
                elif now - reported >= REPORT_EVERY_S:
                    log.warning("%s still failing after %.0f s (%s)", what, now - began, exc)
                reported = reported if now - reported < REPORT_EVERY_S else now
                if now - began >= self.budget_s:
                    raise UpstreamLost(
                        f"{what} failed for {now - began:.0f} s, the outage budget "
                        f"(services.outage_budget_s = {self.budget_s:g}): {exc}"
                    ) from exc
                if self.stop.wait(self.retry_every_s):
                    raise StopRequested(what) from exc
                continue
            if began is not None:
                log.info("%s succeeded after an outage of %.1f s", what, time.monotonic() - began)
            return result
