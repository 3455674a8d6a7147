"""The trainer waits through an upstream outage: a call to a service that is down is tried again until
the service is back (a restart), up to the outage budget; a stop request ends the wait at once; errors
that a restart cannot cure are not waited on. Real HTTP: a server that comes up on the port later."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from ghpo.shared.errors import NotFound
from ghpo.shared.http import SyncServiceClient
from ghpo.shared.redis_local import free_port
from ghpo.trainer.train.outage import Patience, StopRequested, UpstreamLost


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        status = 404 if self.path == "/missing" else 200
        body = b'{"error":{"code":"not_found","message":"no","field":null,"request_id":""}}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body if status == 404 else b'{"ok":true}')

    def log_message(self, *args):
        pass


def _serve_later(port: int, after_s: float) -> http.server.HTTPServer:
    time.sleep(after_s)
    server = http.server.HTTPServer(("127.0.0.1", port), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _client(port: int) -> SyncServiceClient:
    return SyncServiceClient(f"http://127.0.0.1:{port}", timeout=1.0, total_budget=1.0, max_attempts=2)


def test_a_call_waits_for_a_service_that_comes_back_within_the_budget():
    port = free_port()
    servers: list[http.server.HTTPServer] = []
    threading.Thread(target=lambda: servers.append(_serve_later(port, 2.5)), daemon=True).start()
    patience = Patience(30.0, threading.Event(), retry_every_s=0.2)
    with _client(port) as client:
        started = time.monotonic()
        assert patience.call("probing", lambda: client.request_json("GET", "/ok")) == {"ok": True}
    assert 2.0 <= time.monotonic() - started < 20
    servers[0].shutdown()


def test_an_outage_longer_than_the_budget_is_reported_as_lost():
    patience = Patience(1.5, threading.Event(), retry_every_s=0.2)
    with _client(free_port()) as client, pytest.raises(UpstreamLost, match=r"outage_budget_s = 1\.5"):
        patience.call("fetching the next batch", lambda: client.request_json("GET", "/ok"))


def test_a_stop_request_ends_the_wait_at_once():
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    patience = Patience(600.0, stop, retry_every_s=0.2)
    started = time.monotonic()
    with _client(free_port()) as client, pytest.raises(StopRequested):
        patience.call("acknowledging a batch", lambda: client.request_json("GET", "/ok"))
    assert time.monotonic() - started < 10


def test_an_error_a_restart_cannot_cure_is_not_waited_on():
    port = free_port()
    server = _serve_later(port, 0.0)
    patience = Patience(600.0, threading.Event())
    with _client(port) as client, pytest.raises(NotFound):
        patience.call("asking", lambda: client.request_json("GET", "/missing"))
    server.shutdown()
