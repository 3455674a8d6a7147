"""Start ghpo's processes on loopback, wait until each is ready, restart the ones that die, stop them all.

What it is for: `ghpo run` wires Redis, inference, verifier, broker, rollout server and trainer together on
one machine. Each service is a real `ghpo serve <name>` process (the same entry point compose and
Kubernetes use), with its output in `<run_dir>/logs/<name>.log`, started in dependency order and
considered up only when its readiness check passes (`/readyz` answers 200, or Redis answers PING).

Every child leads its own process group (a new session), so Ctrl-C in the terminal reaches the supervisor
alone, and everything a child starts (vLLM's engine core and workers, multiprocessing's resource tracker)
is in that group: stopping or restarting a child ends its whole group, and nothing is left behind. On
Linux each child also asks the kernel for SIGTERM when the supervisor dies (PR_SET_PDEATHSIG), so a
SIGKILLed `ghpo run` does not leave its services running: they stop as on `docker stop` (the trainer
checkpoints).

Healing: `exited()` lists children that died without being asked to; `restart()` ends what is left of the
child's group, waits a bounded, jittered back-off (1 s doubling to 30 s, times 0.5-1) and starts the same
command line again: same ports, same data, so the others' URLs stay valid. `RestartPolicy` says when a
child has crashed too often (`crash_loop_restarts` restarts within `crash_loop_window_s`): then the
caller stops the run instead. Every restart is a `Restart` record (which process, when, exit code or
signal, back-off, seconds until ready again). Each poll of a running child samples its peak resident
memory, so it is known when its death is explained (exits.py).

What it deliberately does not do: decide what a crash means for the run (run.py and healing.py), or
manage remote machines (that is what compose and Kubernetes are for).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LOG_TAIL_CHARS = 2000
PR_SET_PDEATHSIG = 1


class ProcessFailed(RuntimeError):
    """A child did not become ready, or exited while the run needed it; the message holds its log tail."""


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None  # polled until 200
    ready: Callable[[], bool] | None = None  # or this check; neither: ready as soon as it runs
    start_timeout_s: float = 120.0


def ghpo_argv(*args: str) -> list[str]:
    """The `ghpo` command line of this interpreter (works without the console script on PATH)."""
    return [sys.executable, "-m", "ghpo", *args]


def exit_description(code: int | None) -> str:
    """'exited with code 3' or 'was killed by SIGKILL' (Popen reports a signal as a negative code)."""
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def high_water_bytes(pid: int) -> int | None:
    """The peak resident memory of a running process (VmHWM), None when it cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # kB
    return None


@dataclass
class Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = field(default_factory=time.monotonic)
    stopping: bool = False  # asked to stop: its exit is not a crash
    peak_rss_bytes: int | None = None  # the leader's peak resident memory as last sampled by `reap`

    @property
    def name(self) -> str:
        return self.spec.name

    def reap(self) -> int | None:
        """The leader's exit code, or None while it runs. While it runs, each call samples its peak resident
        memory (the kernel's high-water mark of the program it exec'd, /proc/PID/status VmHWM), the
        evidence for or against an out-of-memory death. Not wait4's ru_maxrss: the kernel carries into it
        the memory of the parent the child was forked from, so a sleeper forked from a 1 GiB process
        reported a 1 GiB peak."""
        if self.process.returncode is None:
            try:
                pid, status, _usage = os.wait4(self.process.pid, os.WNOHANG)
            except ChildProcessError:  # already reaped through Popen
                return self.process.poll()
            if pid == 0:
                hwm = high_water_bytes(self.process.pid)
                if hwm is not None:
                    self.peak_rss_bytes = max(hwm, self.peak_rss_bytes or 0)
                return None
            self.process.returncode = os.waitstatus_to_exitcode(status)
        return self.process.returncode

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-LOG_TAIL_CHARS:]

    def failure(self, what: str) -> ProcessFailed:
        return ProcessFailed(f"{self.spec.name} {what} (log {self.log_path}):\n{self.log_tail()}")


@dataclass(frozen=True)
class Restart:
    """One restart of a child that died unexpectedly."""

    process: str
    at_s: float  # seconds since the supervisor started
    exit: str  # 'exited with code 1', 'was killed by SIGKILL'
    back_off_s: float
    ready_after_s: float  # from the restart decision until ready again (back-off included)

    def record(self) -> dict[str, object]:
        return {
            "process": self.process,
            "at_s": round(self.at_s, 2),
            "exit": self.exit,
            "back_off_s": round(self.back_off_s, 2),
            "ready_after_s": round(self.ready_after_s, 2),
        }


@dataclass(frozen=True)
class RestartPolicy:
    """Bounded, jittered back-off, and the crash-loop rule: more than `crash_loop_restarts` restarts of
    one process within `crash_loop_window_s` seconds stop the run."""

    crash_loop_restarts: int = 3
    crash_loop_window_s: float = 300.0
    back_off_initial_s: float = 1.0
    back_off_max_s: float = 30.0

    def back_off(self, recent: int, rng: random.Random) -> float:
        """Seconds to wait before the restart that follows `recent` restarts inside the window."""
        return min(self.back_off_max_s, self.back_off_initial_s * 2**recent) * rng.uniform(0.5, 1.0)

    def recent(self, restarts: Sequence[Restart], name: str, now_s: float) -> int:
        return sum(1 for r in restarts if r.process == name and now_s - r.at_s <= self.crash_loop_window_s)

    def crash_loop(self, restarts: Sequence[Restart], name: str, now_s: float) -> bool:
        return self.recent(restarts, name, now_s) >= self.crash_loop_restarts


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl()  # looked up once here: the pre-exec hook must not load anything


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A pre-exec hook asking for SIGTERM when `parent` dies (and exiting if it already has)."""
    if _PRCTL is None:
        return None
    prctl = _PRCTL

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died between fork and prctl
            os._exit(1)

    return hook


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal every process left in the group `pid` led (its leader may be gone already)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Supervisor:
    """Owns the children of one run. Use as a context manager: leaving it stops everything."""

    def __init__(
        self,
        run_dir: Path,
        *,
        stop_grace_s: float = 20.0,
        policy: RestartPolicy | None = None,
        seed: int | None = None,
    ):
        self.log_dir = Path(run_dir) / "logs"
        self.stop_grace_s = stop_grace_s
        self.policy = policy or RestartPolicy()
        self.children: list[Child] = []
        self.restarts: list[Restart] = []
        self.started = time.monotonic()
        self._rng = random.Random(seed)

    def start(self, spec: ProcessSpec) -> Child:
        """Start one child and block until it is ready; raise ProcessFailed with its log tail if not."""
        child = self._spawn(spec)
        self.children.append(child)
        self._wait_ready(child)
        return child

    def _spawn(self, spec: ProcessSpec) -> Child:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        env = {**os.environ, **spec.env}
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                list(spec.argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        return Child(spec, process, log_path)

    def _wait_ready(self, child: Child) -> None:
        spec = child.spec
        if spec.ready_url is None and spec.ready is None:
            return
        deadline = time.monotonic() + spec.start_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                if child.process.poll() is not None:
                    raise child.failure(f"{exit_description(child.process.returncode)} before it was ready")
                if spec.ready is not None and spec.ready():
                    return
                if spec.ready_url is not None:
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(spec.ready_url).status_code == 200:
                            return
                if time.monotonic() > deadline:
                    raise child.failure(f"was not ready within {spec.start_timeout_s:.0f} s")
                time.sleep(0.25)

    def child(self, name: str) -> Child | None:
        """The current process of `name` (a restart replaces it)."""
        return next((c for c in self.children if c.name == name), None)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def exited(self) -> list[Child]:
        """Children that died without being asked to stop, in start order."""
        return [c for c in self.children if not c.stopping and c.reap() is not None]

    def check(self) -> None:
        """Raise ProcessFailed if any child has exited unexpectedly."""
        for child in self.exited():
            raise child.failure(exit_description(child.process.returncode))

    def crash_loop(self, child: Child) -> bool:
        """Whether restarting `child` once more would exceed the crash-loop rule."""
        return self.policy.crash_loop(self.restarts, child.name, self.elapsed())

    def restart(self, child: Child) -> Restart:
        """End what is left of a dead child's group, back off, start it again and wait until it is ready.
        Raises ProcessFailed when the new process does not become ready."""
        decided = time.monotonic()
        exit_text = exit_description(child.process.returncode)
        kill_group(child.process.pid)  # its workers (vLLM's engine core) may outlive it
        back_off = self.policy.back_off(
            self.policy.recent(self.restarts, child.name, self.elapsed()), self._rng
        )
        time.sleep(back_off)
        with self.log_dir.joinpath(f"{child.name}.log").open("a") as log:
            log.write(f"\n==== ghpo run: {child.name} {exit_text}; restarted after {back_off:.1f} s ====\n")
        fresh = self._spawn(child.spec)
        self.children[self.children.index(child)] = fresh
        record = Restart(child.name, decided - self.started, exit_text, back_off, 0.0)
        self.restarts.append(record)
        self._wait_ready(fresh)
        ready = Restart(record.process, record.at_s, exit_text, back_off, time.monotonic() - decided)
        self.restarts[-1] = ready
        return ready

    def stop(self, child: Child, grace_s: float | None = None) -> int | None:
        """SIGTERM to the group, wait the grace period, then SIGKILL to whatever is left of the group;
        returns the leader's exit code."""
        child.stopping = True
        process = child.process
        if process.poll() is None:
            kill_group(process.pid, signal.SIGTERM)
            try:
                process.wait(self.stop_grace_s if grace_s is None else grace_s)
            except subprocess.TimeoutExpired:
                kill_group(process.pid)
                process.wait()
        kill_group(process.pid)  # the leader is gone: end the workers it may have left behind
        return process.returncode

    def stop_all(self) -> None:
        for child in reversed(self.children):
            self.stop(child)
        self.children.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
