"""Finding every process a `ghpo run` started, however deep: each inherits a marker in its environment.

A test starts `ghpo run` with `GHPO_TEST_RUN=<unique mark>` in its environment; every descendant (the
services, the trainer, vLLM's engine core, workers and resource tracker) inherits it, whatever process
group or session it ends up in, so scanning /proc for the mark finds what is alive, and what was left
behind after the run returned. A process that renames itself (setproctitle: Redis, vLLM's
`VLLM::EngineCore` and `VLLM::Worker`) overwrites the memory /proc shows as its environment, so the mark
alone misses exactly the processes most likely to be left behind. Hence `adopting_orphans()`: inside it
this process is a child subreaper, so an orphaned descendant is re-parented to it instead of to init,
and everything below it that was not there before counts too, renamed or not. Redis can still be named
by its address (`also`). Linux only (/proc, prctl).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

MARK_VARIABLE = "GHPO_TEST_RUN"
PR_SET_CHILD_SUBREAPER = 36


def new_mark() -> dict[str, str]:
    """An environment entry to give `ghpo run`."""
    return {MARK_VARIABLE: uuid.uuid4().hex}


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live process (zombies excluded)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if fields[0] != "Z":
            parents[int(entry.name)] = int(fields[1])
    return parents


def descendants() -> set[int]:
    """Every live process below this one."""
    parents, found, me = _parents(), set(), os.getpid()
    for pid in parents:
        chain, up = [], pid
        while up in parents and up not in found and up != me and up > 1:
            chain.append(up)
            up = parents[up]
        if up == me or up in found:
            found.update(chain)
    return found


@contextlib.contextmanager
def adopting_orphans() -> Iterator[set[int]]:
    """While inside, orphaned descendants are re-parented to this process (a child subreaper), so
    `left_behind(..., before=...)` finds them by ancestry even when they renamed themselves. Yields the
    descendants that were already there (to leave out). Adopted orphans that exit stay zombies until
    this process exits; they count as gone."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    before = descendants()
    if prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    try:
        yield before
    finally:
        prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def marked(
    env: dict[str, str], also: Sequence[str] = (), before: Collection[int] | None = None
) -> dict[int, str]:
    """pid -> command line of every live process carrying the mark of `env`, or whose command line holds
    one of `also`, or (given `before`, from `adopting_orphans`) below this process and not in `before`
    (zombies excluded)."""
    needle = f"{MARK_VARIABLE}={env[MARK_VARIABLE]}".encode()
    below = descendants() - set(before) if before is not None else set()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
            if (
                int(entry.name) not in below
                and needle not in (entry / "environ").read_bytes().split(b"\0")
                and not any(a in cmdline for a in also)
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


def left_behind(
    env: dict[str, str],
    within_s: float = 10.0,
    also: Sequence[str] = (),
    before: Collection[int] | None = None,
) -> dict[int, str]:
    """What is still alive `within_s` seconds from now (polled: returns as soon as nothing is)."""
    deadline = time.monotonic() + within_s
    while True:
        alive = marked(env, also, before)
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.5)


def stop_run(process, grace_s: float = 180.0) -> None:
    """End a `ghpo run` a failed test leaves running as Ctrl-C would (SIGINT: it stops its children);
    SIGKILL only after `grace_s`, since a SIGKILLed run can leave vLLM's engine core behind."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
