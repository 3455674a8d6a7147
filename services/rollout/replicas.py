"""The inference replica pool: which replica serves the next generation call, and which are out.

Replicas come from a list of URLs and/or one URL whose host name resolves to many addresses (a Kubernetes
headless service, resolved by ghpo.shared.replica_dns as the trainer does), re-resolved every
`dns_refresh_s`. Work goes to the healthy replica with the fewest outstanding requests (ties: the one
used longest ago). A replica whose call fails (transport error or 5xx after the client's own retries) is
ejected for `eject_s`; after that, one GET /readyz probe decides whether it comes back (else it stays out
another `eject_s`). Busy time per replica (some request outstanding) is recorded, so the engine busy
fraction can be computed over a window.

What this module does not do: build requests or retry a call on another replica (the sampler does).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from ghpo.shared.http import ServiceClient
from ghpo.shared.logs import get_logger
from ghpo.shared.replica_dns import replica_urls

log = get_logger(__name__)
BUSY_HISTORY = 4096  # busy intervals kept per replica (enough for a minute at any realistic rate)


@dataclass
class Replica:
    url: str
    client: ServiceClient
    outstanding: int = 0
    ejected_until: float = 0.0
    last_used: float = 0.0
    busy_since: float | None = None
    busy: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=BUSY_HISTORY))

    def busy_seconds(self, start: float, end: float) -> float:
        total = sum(max(0.0, min(b, end) - max(a, start)) for a, b in self.busy)
        if self.busy_since is not None:
            total += max(0.0, end - max(self.busy_since, start))
        return total


class ReplicaPool:
    """Least-outstanding-requests choice over healthy replicas, with ejection and probing."""

    def __init__(
        self,
        urls: list[str],
        *,
        dns: str | None,
        dns_refresh_s: float,
        eject_s: float,
        token: str | None,
        timeout_s: float,
    ):
        self.static = list(urls)
        self.dns = dns
        self.dns_refresh_s = dns_refresh_s
        self.eject_s = eject_s
        self.token = token
        self.timeout_s = timeout_s
        self.replicas: dict[str, Replica] = {}
        self.started = time.monotonic()
        self._resolved_at = -1e9
        self._changed = asyncio.Event()
        self._sync(self.static)

    def _client(self, url: str) -> ServiceClient:
        # Few attempts per replica: failing over to another replica beats waiting on a sick one.
        return ServiceClient(
            url, token=self.token, timeout=self.timeout_s, total_budget=self.timeout_s, max_attempts=2
        )

    def _sync(self, urls: list[str]) -> None:
        for url in urls:
            if url not in self.replicas:
                self.replicas[url] = Replica(url, self._client(url))

    async def refresh(self) -> None:
        """Re-resolve inference_dns when due; replicas that disappeared are removed once idle."""
        if self.dns is None or time.monotonic() - self._resolved_at < self.dns_refresh_s:
            return
        self._resolved_at = time.monotonic()
        try:
            found = await asyncio.to_thread(replica_urls, self.dns)
        except OSError as exc:
            log.warning("could not resolve %s: %s; keeping %d replicas", self.dns, exc, len(self.replicas))
            return
        self._sync(found)
        keep = set(found) | set(self.static)
        for url in [u for u, r in self.replicas.items() if u not in keep and r.outstanding == 0]:
            await self.replicas.pop(url).client.aclose()

    async def _probe(self, replica: Replica) -> None:
        try:
            await replica.client.request("GET", "/readyz", timeout=min(5.0, self.timeout_s))
        except Exception as exc:  # any failure keeps it out: the probe's only question is "is it ready"
            replica.ejected_until = time.monotonic() + self.eject_s
            log.info("replica %s still failing its probe (%s)", replica.url, exc)
        else:
            replica.ejected_until = 0.0
            log.info("replica %s is back", replica.url)

    async def _choose(self) -> Replica:
        while True:
            await self.refresh()
            now = time.monotonic()
            for replica in self.replicas.values():
                if 0.0 < replica.ejected_until <= now:
                    await self._probe(replica)
            healthy = [r for r in self.replicas.values() if r.ejected_until == 0.0]
            if healthy:
                return min(healthy, key=lambda r: (r.outstanding, r.last_used))
            self._changed.clear()
            wake = min((r.ejected_until for r in self.replicas.values()), default=now + 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.05, wake - now))

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Replica]:
        """A replica for one call, counted as outstanding (and the engine busy) while the block runs."""
        replica = await self._choose()
        replica.outstanding += 1
        replica.last_used = time.monotonic()
        if replica.outstanding == 1:
            replica.busy_since = time.monotonic()
        try:
            yield replica
        finally:
            replica.outstanding -= 1
            if replica.outstanding == 0 and replica.busy_since is not None:
                replica.busy.append((replica.busy_since, time.monotonic()))
                replica.busy_since = None

    def eject(self, replica: Replica, reason: str) -> None:
        replica.ejected_until = time.monotonic() + self.eject_s
        log.warning("replica %s ejected for %.1f s: %s", replica.url, self.eject_s, reason)
        self._changed.set()

    def busy_fraction(self, window_s: float = 60.0) -> float:
        """Mean over replicas of the share of the last `window_s` (or since start) with a call outstanding."""
        if not self.replicas:
            return 0.0
        end = time.monotonic()
        start = max(end - window_s, self.started)
        if end <= start:
            return 0.0
        return sum(r.busy_seconds(start, end) for r in self.replicas.values()) / (
            len(self.replicas) * (end - start)
        )

    def healthy_count(self) -> int:
        return sum(1 for r in self.replicas.values() if r.ejected_until == 0.0)

    async def close(self) -> None:
        for replica in self.replicas.values():
            await replica.client.aclose()
