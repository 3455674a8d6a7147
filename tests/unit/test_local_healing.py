"""The healing step of `ghpo run`: a dead process is restarted and recorded, the trainer ending by itself
is not, and a process that keeps dying stops the run with its log tail (the crash-loop rule). Its message
says what is known: the signal and the process, and out of memory only with evidence (an allocation
failure in its log, the kernel's record, a peak RSS near the memory limit), with the settings to change
only for the processes whose memory they control."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ghpo.local.config import parse_run_config
from ghpo.local.exits import explain_exit, kernel_oom_pids
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


MiB = 1024**2
HOLDER = [sys.executable, "-c", "import time; held = b'x' * (200 * 1024**2); time.sleep(300)"]  # 200 MiB


def killed_message(tmp_path, name: str, argv: list[str], *, holds: int = 0, memory_limit: int | None = None):
    """The console line `ghpo run` prints when `name` (holding `holds` bytes resident) dies of a SIGKILL
    and is restarted."""
    cfg = parse_run_config({"deepspeed": {"micro_batch_size": 64}})
    notes: list[str] = []
    with Supervisor(tmp_path, stop_grace_s=5, policy=RestartPolicy(back_off_initial_s=0.05)) as sup:
        pid = sup.start(ProcessSpec(name, argv)).process.pid
        deadline = time.monotonic() + 20
        while (resident_bytes(pid) < holds or sup.exited()) and time.monotonic() < deadline:
            time.sleep(0.05)  # polled as ghpo run polls its children, which samples their peak memory
        sup.exited()
        os.kill(pid, signal.SIGKILL)
        while not sup.exited() and time.monotonic() < deadline:
            time.sleep(0.05)
        heal(sup, tmp_path, 4, notes.append, lambda c: explain_exit(c, cfg, memory_limit=memory_limit))
    return notes[0]


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def test_a_killed_rollout_server_is_named_by_its_signal_with_no_memory_claim(tmp_path):
    message = killed_message(tmp_path, "rollout", SLEEPER)
    assert message.startswith("rollout was killed by SIGKILL (peak RSS 0.")
    assert message.endswith("during step 5: restarting it")
    assert "out-of-memory killer" not in message and "deepspeed" not in message  # nothing showed pressure


def test_a_trainer_killed_near_the_memory_limit_is_named_out_of_memory_with_the_settings_to_change(tmp_path):
    message = killed_message(tmp_path / "trainer", "trainer", HOLDER, holds=200 * MiB, memory_limit=215 * MiB)
    assert message.startswith("trainer was killed by SIGKILL with its peak RSS 0.2")
    assert (
        "most likely the kernel's out-of-memory killer; lower deepspeed.micro_batch_size (this run: 64)"
        in (message)
    )
    # The same evidence for the rollout server: no setting of ghpo run's controls its memory.
    message = killed_message(tmp_path / "rollout", "rollout", HOLDER, holds=200 * MiB, memory_limit=215 * MiB)
    assert "out-of-memory killer" in message and "lower" not in message


def test_an_allocation_failure_in_the_log_is_named_out_of_memory_and_other_exits_by_their_code(tmp_path):
    cfg = parse_run_config({})
    oom = "import sys; print('torch.OutOfMemoryError: CUDA out of memory.', flush=True); sys.exit(1)"
    plain = "import sys; print('ValueError: bad', flush=True); sys.exit(1)"
    notes: list[str] = []
    with Supervisor(tmp_path, stop_grace_s=5, policy=RestartPolicy(back_off_initial_s=0.05)) as sup:
        for name, code in (("inference", oom), ("broker", plain)):
            sup.start(ProcessSpec(name, [sys.executable, "-c", code]))
            sup.children[-1].process.wait(20)
            sup.children[-1].spec = ProcessSpec(name, SLEEPER)
        heal(sup, tmp_path, 0, notes.append, lambda c: explain_exit(c, cfg))
    assert notes[0] == (
        "inference exited with code 1 after running out of memory (CUDA out of memory in its log); "
        "lower services.kv_cache_gib (this run: 1) or services.max_model_len (512) during step 1: restarting it"
    )
    assert notes[2] == "broker exited with code 1 during step 1: restarting it"


def test_the_kernels_out_of_memory_records_name_the_killed_pids_since_a_time():
    kmsg = (
        "3,812,4000000,-;Out of memory: Killed process 4242 (python) total-vm:9000kB, anon-rss:8000kB\n"
        "6,813,4000100,-;oom-kill:constraint=CONSTRAINT_NONE,task=python,pid=4343,uid=0\n"
        "3,700,1000000,-;Out of memory: Killed process 77 (python)\n"
        "6,814,4000200,-;python (4444): drop_caches: 3\n"
    )
    assert kernel_oom_pids(kmsg) == {4242, 4343, 77}
    assert kernel_oom_pids(kmsg, since_s=2.0) == {4242, 4343}  # pid 77's record predates the process
