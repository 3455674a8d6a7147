"""The healing step of `ghpo run`: a dead process is restarted and recorded, the trainer ending by itself
is not, and a process that keeps dying stops the run with its log tail (the crash-loop rule)."""

from __future__ import annotations

import sys
import time

import pytest

from ghpo.local.healing import CrashLoop, heal
from ghpo.local.history import read_records
from ghpo.local.processes import ProcessSpec, RestartPolicy, Supervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]
CRASHER = [sys.executable, "-c", "import sys; print('broker: cannot reach redis', flush=True); sys.exit(1)"]


def _dead(sup: Supervisor, name: str) -> None:
    child = sup.child(name)
    assert child is not None
    child.process.wait(20)


def test_a_dead_service_is_restarted_and_recorded_but_the_trainer_ending_itself_is_not(tmp_path):
    notes: list[str] = []
    with Supervisor(tmp_path, stop_grace_s=5, policy=RestartPolicy(back_off_initial_s=0.1)) as sup:
        sup.start(ProcessSpec("broker", [sys.executable, "-c", "import sys; sys.exit(1)"]))
        _dead(sup, "broker")
        sup.children[0].spec = ProcessSpec("broker", SLEEPER)  # it comes back healthy
        assert heal(sup, tmp_path, 7, notes.append) is None
        assert sup.child("broker").process.poll() is None
        trainer = sup.start(ProcessSpec("trainer", [sys.executable, "-c", "import sys; sys.exit(3)"]))
        _dead(sup, "trainer")
        assert heal(sup, tmp_path, 7, notes.append) is trainer  # a guardrail stop ends the run instead
    [record] = read_records(tmp_path)
    assert (record["kind"], record["process"], record["step"]) == ("restart", "broker", 7)
    assert record["exit"] == "exited with code 1"
    assert notes[0] == "broker exited with code 1 during step 8: restarting it"
    assert notes[1].startswith("broker is back after")


def test_a_process_that_keeps_dying_stops_the_run_with_its_log_tail(tmp_path):
    policy = RestartPolicy(crash_loop_restarts=2, crash_loop_window_s=60, back_off_initial_s=0.05)
    with Supervisor(tmp_path, stop_grace_s=5, policy=policy) as sup:
        sup.start(ProcessSpec("broker", CRASHER))
        with pytest.raises(
            CrashLoop, match=r"(?s)broker exited with code 1 after 2 restarts.*cannot reach redis"
        ):
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                _dead(sup, "broker")
                heal(sup, tmp_path, 0, lambda _line: None)
        assert len(sup.restarts) == 2
