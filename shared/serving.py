"""Run an ASGI app under a real uvicorn server on a free loopback port, in a background thread.

`running_app(app)` is a context manager yielding the base URL ("http://127.0.0.1:PORT"): how tests,
benches and `ghpo.local.batches` run a service inside their own process. The socket is bound here
before uvicorn starts, so there is no race for the port between picking and binding it. The app's
lifespan runs (startup before the URL is handed out, shutdown on exit).

Deliberately not a process (`ghpo serve` and `ghpo run` start those), and not for serving on a chosen
interface: callers that need to kill a server hard start their own subprocess.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

STARTUP_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 15.0


def _bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.set_inheritable(True)
    return sock


@contextlib.contextmanager
def running_app(app: Any, *, log_level: str = "warning", **config: Any) -> Iterator[str]:
    """Serve `app` until the block exits; yields its base URL. Extra kwargs go to uvicorn.Config."""
    sock = _bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, lifespan="on", log_level=log_level, access_log=False, **config)
    )
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # surfaced to the caller below instead of dying silently in a thread
            failure.append(exc)

    thread = threading.Thread(target=serve, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if failure or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"uvicorn server on port {port} failed to start") from (
                failure[0] if failure else None
            )
        if time.monotonic() > deadline:
            server.should_exit = True
            thread.join(SHUTDOWN_TIMEOUT_S)
            sock.close()
            raise TimeoutError(f"uvicorn server on port {port} did not start in {STARTUP_TIMEOUT_S} s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_TIMEOUT_S)
        if thread.is_alive():  # a stuck request or lifespan: stop waiting for graceful shutdown
            server.force_exit = True
            thread.join(SHUTDOWN_TIMEOUT_S)
        sock.close()
