"""Replica discovery by DNS: one URL whose host name resolves to many addresses (a Kubernetes headless
Service, a compose service scaled out) -> one URL per address, same scheme, port and path.

Used by the rollout server (which replicas to generate on) and the trainer (which replicas to push
weights to), so both see the same set. `lookup` is the one seam: the system resolver by default; a test
(or a caller with its own service registry) passes a function from (host, port) to addresses.
Deliberately not here: when to re-resolve, or what to do with replicas that come and go (the callers).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

# (host, port) -> the addresses the host resolves to (duplicates allowed; any order)
Lookup = Callable[[str, int], list[str]]


def system_lookup(host: str, port: int) -> list[str]:
    """Every address of `host` per the system resolver (/etc/hosts, DNS); OSError when it cannot."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def replica_urls(url: str, lookup: Lookup = system_lookup) -> list[str]:
    """One URL per distinct address `url`'s host resolves to, sorted; IPv6 addresses in brackets.
    ValueError when the URL has no host name; OSError when the name does not resolve."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError(f"replica DNS URL {url!r} has no host name")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    urls = []
    for address in sorted(set(lookup(parts.hostname, port))):
        host = f"[{address}]" if ":" in address else address
        urls.append(urlunsplit((parts.scheme, f"{host}:{port}", parts.path, "", "")))
    return urls
