"""Finding every process a `ghpo run` started, however deep: each inherits a marker in its environment.

A test starts `ghpo run` with `GHPO_TEST_RUN=<unique mark>` in its environment; every descendant (the
services, the trainer, vLLM's engine core, workers and resource tracker) inherits it, whatever process
group or session it ends up in, so scanning /proc for the mark finds what is alive, and what was left
behind after the run returned. Redis is the exception: naming itself (setproctitle) it overwrites the
memory /proc shows as its environment, so it is found by its address in its command line instead
(`also`). Linux only (/proc).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

MARK_VARIABLE = "GHPO_TEST_RUN"


def new_mark() -> dict[str, str]:
    """An environment entry to give `ghpo run`."""
    return {MARK_VARIABLE: uuid.uuid4().hex}


def marked(env: dict[str, str], also: Sequence[str] = ()) -> dict[int, str]:
    """pid -> command line of every live process carrying the mark of `env`, or whose command line holds
    one of `also` (zombies excluded)."""
    needle = f"{MARK_VARIABLE}={env[MARK_VARIABLE]}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            if needle not in (entry / "environ").read_bytes().split(b"\0") and not any(
                a in cmdline for a in also
            ):
                continue
            if (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                continue
        except OSError:  # gone meanwhile, or not ours
            continue
        found[int(entry.name)] = cmdline
    return found


def find(env: dict[str, str], *needles: str, unmarked: bool = False) -> int | None:
    """The pid of the marked process whose command line holds every needle, if one is alive; with
    `unmarked`, any process's (Redis, found by its address)."""
    for pid, cmdline in marked(env, also=needles if unmarked else ()).items():
        if all(n in cmdline for n in needles):
            return pid
    return None


def left_behind(env: dict[str, str], within_s: float = 10.0, also: Sequence[str] = ()) -> dict[int, str]:
    """What is still alive `within_s` seconds from now (polled: returns as soon as nothing is)."""
    deadline = time.monotonic() + within_s
    while True:
        alive = marked(env, also)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.5)


def wait_while_running(predicate, timeout_s: float, what: str, process, log: Path):
    """Poll `predicate` until it is truthy (returned), failing with the run's log tail if the run exits
    first or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if process.poll() is not None:
            raise AssertionError(
                f"ghpo run exited ({process.returncode}) before {what}:\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")
