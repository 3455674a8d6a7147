"""The local supervisor behind `ghpo run`: readiness, crash reports with log tails, ordered shutdown."""

from __future__ import annotations

import sys
import time

import pytest

from ghpo.local.processes import ProcessFailed, ProcessSpec, Supervisor

SERVE = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print("PORT", s.server_address[1], flush=True)
s.serve_forever()
"""


def test_child_that_exits_before_ready_is_reported_with_its_log_tail(tmp_path):
    spec = ProcessSpec(
        "broken",
        [sys.executable, "-c", "import sys; print('bad model path /nope', flush=True); sys.exit(3)"],
        ready_url="http://127.0.0.1:9/readyz",
        start_timeout_s=10,
    )
    with Supervisor(tmp_path) as sup, pytest.raises(ProcessFailed, match=r"(?s)code 3.*bad model path /nope"):
        sup.start(spec)


def test_child_not_ready_in_time_is_reported(tmp_path):
    spec = ProcessSpec(
        "slow",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        ready_url="http://127.0.0.1:9/readyz",
        start_timeout_s=0.5,
    )
    with Supervisor(tmp_path, stop_grace_s=5) as sup, pytest.raises(ProcessFailed, match="not ready within"):
        sup.start(spec)


def test_crash_of_a_running_child_is_detected_and_stop_all_terminates_the_rest(tmp_path):
    with Supervisor(tmp_path, stop_grace_s=5) as sup:
        server = sup.start(ProcessSpec("server", [sys.executable, "-c", SERVE]))
        crasher = sup.start(ProcessSpec("crasher", [sys.executable, "-c", "import sys; sys.exit(7)"]))
        crasher.process.wait(10)
        with pytest.raises(ProcessFailed, match="crasher exited with code 7"):
            sup.check()
        sup.stop_all()
        assert server.process.poll() is not None
        assert sup.children == []


def test_ready_url_is_polled_until_it_answers(tmp_path):
    # The port is only known once the child runs: a second child polls the first one's URL.
    with Supervisor(tmp_path, stop_grace_s=5) as sup:
        server = sup.start(ProcessSpec("server", [sys.executable, "-c", SERVE]))
        deadline = time.monotonic() + 10
        while "PORT" not in server.log_tail() and time.monotonic() < deadline:
            time.sleep(0.05)
        port = server.log_tail().split("PORT", 1)[1].split()[0]
        probe = sup.start(
            ProcessSpec(
                "probe",
                [sys.executable, "-c", "import time; time.sleep(60)"],
                ready_url=f"http://127.0.0.1:{port}/readyz",
                start_timeout_s=10,
            )
        )
        assert probe.process.poll() is None
