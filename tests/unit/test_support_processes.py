"""The no-orphan check of the `ghpo run` tests (tests/support/processes.py) sees a process that renamed
itself and lost its parent: what vLLM's engine core does, and what the environment mark alone misses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.support.processes import adopting_orphans, left_behind, marked, new_mark

TITLE = "VLLM::EngineCore"
# A service that starts a worker in its own session and exits without ending it; the worker renames
# itself, which overwrites the environment /proc shows.
LEAVES_A_RENAMED_WORKER = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c",
    "import os, setproctitle, time; setproctitle.setproctitle(os.environ['TITLE']); time.sleep(60)"],
    start_new_session=True)
"""


def _titled(found: dict[int, str]) -> list[int]:
    return [pid for pid, cmdline in found.items() if cmdline.startswith(TITLE)]


def test_an_orphaned_worker_that_renamed_itself_is_found_although_its_mark_is_gone():
    mark = new_mark()
    with adopting_orphans() as before:
        subprocess.run(
            [sys.executable, "-c", LEAVES_A_RENAMED_WORKER],
            env={**os.environ, **mark, "TITLE": TITLE},
            check=True,
        )
        deadline = time.monotonic() + 30
        while not (orphans := _titled(left_behind(mark, 0.0, before=before))):
            assert time.monotonic() < deadline, "the renamed worker was never seen"
            time.sleep(0.1)
        try:
            assert not _titled(marked(mark)), "the mark alone should not see it (setproctitle wiped it)"
            assert _ppid(orphans[0]) == os.getpid()  # adopted by this process, not by init
        finally:
            for pid in orphans:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
    assert not _titled(left_behind(mark, 1.0, before=before))


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[1])
