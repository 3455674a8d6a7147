"""Start ghpo's services as child processes on loopback, wait until each is ready, stop them cleanly.

What it is for: `ghpo run` wires Redis, inference, verifier, broker, rollout server and trainer together on
one machine. Each service is a real `ghpo serve <name>` process (the same entry point compose and
Kubernetes use), with its output in `<run_dir>/logs/<name>.log`, started in dependency order and
considered up only when its `/readyz` answers 200. A child that dies is reported with the tail of its
log; on exit every child gets SIGTERM in reverse start order, then SIGKILL after a grace period.

What it deliberately does not do: restart crashed children (a crash stops the run: `--resume` carries on
from the last checkpoint), or manage remote machines (that is what compose and Kubernetes are for).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LOG_TAIL_CHARS = 2000


class ProcessFailed(RuntimeError):
    """A child did not become ready, or exited while the run needed it; the message holds its log tail."""


@dataclass(frozen=True)
class ProcessSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None  # polled until 200; None: ready as soon as it runs
    start_timeout_s: float = 120.0


def ghpo_argv(*args: str) -> list[str]:
    """The `ghpo` command line of this interpreter (works without the console script on PATH)."""
    return [sys.executable, "-m", "ghpo", *args]


@dataclass
class Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-LOG_TAIL_CHARS:]

    def failure(self, what: str) -> ProcessFailed:
        return ProcessFailed(f"{self.spec.name} {what} (log {self.log_path}):\n{self.log_tail()}")


class Supervisor:
    """Owns the children of one run. Use as a context manager: leaving it stops everything."""

    def __init__(self, run_dir: Path, *, stop_grace_s: float = 20.0):
        self.log_dir = Path(run_dir) / "logs"
        self.stop_grace_s = stop_grace_s
        self.children: list[Child] = []

    def start(self, spec: ProcessSpec) -> Child:
        """Start one child and block until it is ready; raise ProcessFailed with its log tail if not."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.name}.log"
        env = {**os.environ, **spec.env}
        with log_path.open("ab") as log:
            # A new session: Ctrl-C in the terminal reaches the supervisor only, which then stops the
            # children in order instead of having them all die at once mid-request.
            process = subprocess.Popen(
                list(spec.argv),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        child = Child(spec, process, log_path)
        self.children.append(child)
        self._wait_ready(child)
        return child

    def _wait_ready(self, child: Child) -> None:
        if child.spec.ready_url is None:
            return
        deadline = time.monotonic() + child.spec.start_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                if child.process.poll() is not None:
                    raise child.failure(f"exited with code {child.process.returncode} before it was ready")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(child.spec.ready_url).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise child.failure(f"was not ready within {child.spec.start_timeout_s:.0f} s")
                time.sleep(0.25)

    def check(self) -> None:
        """Raise ProcessFailed if any child has exited (a finished run stops its children itself)."""
        for child in self.children:
            if child.process.poll() is not None:
                raise child.failure(f"exited with code {child.process.returncode}")

    def stop(self, child: Child) -> int | None:
        """SIGTERM, wait the grace period, SIGKILL; returns the exit code."""
        process = child.process
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(self.stop_grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        return process.returncode

    def stop_all(self) -> None:
        for child in reversed(self.children):
            self.stop(child)
        self.children.clear()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
