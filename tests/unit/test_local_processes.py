"""The local supervisor behind `ghpo run`: readiness, crash reports with log tails, ordered shutdown,
restarts on the same port with bounded back-off, the crash-loop rule, and no process left behind (a
child's whole group ends with it; children hear of their supervisor's death)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ghpo.local.processes import ProcessFailed, ProcessSpec, Restart, RestartPolicy, Supervisor
from ghpo.shared.redis_local import free_port

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


FIXED_PORT_SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

# A leader that starts a grandchild in its own group and writes the grandchild's pid, then waits. The
# grandchild ignores SIGTERM, as a worker busy in native code may: only ending the group reaches it.
WITH_GRANDCHILD = """
import subprocess, sys, time
grandchild = (
    "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(300)"
)
subprocess.Popen([sys.executable, "-c", grandchild, sys.argv[1]])
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(predicate, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_killed_child_is_restarted_on_its_port_and_the_restart_is_recorded(tmp_path):
    port = free_port()
    spec = ProcessSpec(
        "server",
        [sys.executable, "-c", FIXED_PORT_SERVER, str(port)],
        ready_url=f"http://127.0.0.1:{port}/readyz",
        start_timeout_s=20,
    )
    policy = RestartPolicy(back_off_initial_s=0.2)
    with Supervisor(tmp_path, stop_grace_s=5, policy=policy) as sup:
        first = sup.start(spec)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(10)
        assert sup.exited() == [first]
        record = sup.restart(first)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200  # same URL
        assert sup.child("server") is not first and sup.exited() == []
        assert (record.process, record.exit) == ("server", "was killed by SIGKILL")
        assert 0.1 <= record.back_off_s <= 0.2 and record.ready_after_s >= record.back_off_s
        assert sup.restarts == [record]
        assert "restarted after" in (tmp_path / "logs" / "server.log").read_text()


def test_back_off_doubles_is_jittered_and_capped_and_a_crash_loop_is_recognised():
    policy = RestartPolicy(
        crash_loop_restarts=3, crash_loop_window_s=60, back_off_initial_s=1, back_off_max_s=5
    )
    rng = random.Random(0)
    waits = [policy.back_off(n, rng) for n in (0, 1, 2, 3, 4)]
    for n, wait in enumerate(waits):
        bound = min(5, 2**n)
        assert 0.5 * bound <= wait <= bound
    assert len({round(policy.back_off(0, rng), 6) for _ in range(5)}) > 1  # jittered
    restarts = [Restart("broker", at, "was killed by SIGKILL", 1, 2) for at in (10, 20, 30)]
    assert policy.crash_loop(restarts, "broker", now_s=40)
    assert not policy.crash_loop(restarts, "broker", now_s=75)  # the first one left the window
    assert not policy.crash_loop(restarts, "verifier", now_s=40)


def test_stopping_a_child_ends_its_whole_process_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    with Supervisor(tmp_path, stop_grace_s=5) as sup:
        child = sup.start(ProcessSpec("leader", [sys.executable, "-c", WITH_GRANDCHILD, str(pid_file)]))
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text())
        grandchild = int(pid_file.read_text())
        assert _alive(grandchild)
        sup.stop(child)
    assert _wait_for(lambda: not _alive(grandchild)), "the grandchild outlived its supervisor"


def test_a_restart_first_ends_what_the_dead_child_left_in_its_group(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    with Supervisor(tmp_path, stop_grace_s=5, policy=RestartPolicy(back_off_initial_s=0.1)) as sup:
        child = sup.start(ProcessSpec("leader", [sys.executable, "-c", WITH_GRANDCHILD, str(pid_file)]))
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text())
        orphan = int(pid_file.read_text())
        pid_file.unlink()
        os.kill(child.process.pid, signal.SIGKILL)  # the leader dies; its grandchild would live on
        child.process.wait(10)
        sup.restart(child)
        assert _wait_for(lambda: not _alive(orphan)), "the dead leader's grandchild survived the restart"


def test_children_get_sigterm_when_the_supervisor_itself_is_killed(tmp_path):
    # A supervisor in a process of its own, SIGKILLed: its child hears of it (PR_SET_PDEATHSIG).
    pid_file = tmp_path / "child.pid"
    script = f"""
import sys, time
from pathlib import Path
from ghpo.local.processes import ProcessSpec, Supervisor
sup = Supervisor(Path({str(tmp_path)!r}))
child = sup.start(ProcessSpec("sleeper", [sys.executable, "-c", "import time; time.sleep(300)"]))
Path({str(pid_file)!r}).write_text(str(child.process.pid))
time.sleep(300)
"""
    supervisor = subprocess.Popen([sys.executable, "-c", script])
    try:
        assert _wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30)
        child = int(pid_file.read_text())
        assert _alive(child)
        supervisor.kill()
        supervisor.wait(10)
        assert _wait_for(lambda: not _alive(child)), "the child outlived its SIGKILLed supervisor"
    finally:
        supervisor.kill()
