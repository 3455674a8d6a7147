"""The healing step of `ghpo run`'s watch loop: restart what died, or stop the run when it keeps dying.

Called about once a second. Every child that exited without being asked to is restarted in start order
(Redis before the services that use it, the trainer last), on its own port, after a bounded, jittered
back-off (processes.py); the trainer comes back from its latest checkpoint exactly as `ghpo run
--resume` brings it back (its config has `resume = true`), and the history rolls back the steps it
redoes (history.py). Each restart is a `restart` record in the history (which process, the step the
trainer was on, when, how it ended, back-off, seconds until ready again) and a line on the console.

Not restarts: the trainer ending by itself, with exit code 0 (it took `run.steps` steps), 2 (a bad
config) or 3 (a guardrail stopped it: non-finite loss, nothing trainable for too long, an upstream
service lost past its outage budget). More than `[run] crash_loop_restarts` restarts of one process within
`crash_loop_window_s` is a crash loop: `CrashLoop` stops the run with that process's log tail, and the
command line says how to resume. What it deliberately does not do: start the run or stop it (run.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ghpo.local.history import append_history
from ghpo.local.processes import Child, ProcessFailed, Supervisor, exit_description, kill_group

TRAINER = "trainer"
TRAINER_ENDINGS = frozenset({0, 2, 3})  # done, bad config, guardrail (ghpo.commands.train)


class CrashLoop(ProcessFailed):
    """One process died more often than the crash-loop rule allows."""


def heal(
    sup: Supervisor,
    run_dir: Path,
    step: int,
    note: Callable[[str], None],
    explain: Callable[[Child], str] | None = None,
) -> Child | None:
    """Restart every child that died unexpectedly; returns the trainer when it ended by itself.
    `explain(child)` words how it died (default: its exit code or signal)."""
    for child in sup.exited():
        code = child.process.returncode
        if child.name == TRAINER and code in TRAINER_ENDINGS:
            return child
        how = explain(child) if explain is not None else exit_description(code)
        if sup.crash_loop(child):
            policy = sup.policy
            raise CrashLoop(
                f"{child.name} {how} after {policy.crash_loop_restarts} restarts within "
                f"{policy.crash_loop_window_s:.0f} s (a crash loop; [run] crash_loop_restarts, "
                f"crash_loop_window_s) (log {child.log_path}):\n{child.log_tail()}"
            )
        note(f"{child.name} {how} during step {step + 1}: restarting it")
        try:
            record = sup.restart(child)
        except ProcessFailed as exc:  # not ready again: ended, and counted when it is seen dead next
            fresh = next(c for c in sup.children if c.name == child.name)
            kill_group(fresh.process.pid)
            fresh.process.wait()
            note(f"{child.name} did not come back: {str(exc).splitlines()[0]}")
            continue
        append_history(run_dir, {"kind": "restart", "step": step, **record.record()})
        note(f"{child.name} is back after {record.ready_after_s:.1f} s (back-off {record.back_off_s:.1f} s)")
    return None
