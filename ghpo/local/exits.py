"""Why a child of `ghpo run` died, in words a user can act on: an out-of-memory death named as such,
with the settings that change how much memory the trainer takes.

The kernel's out-of-memory killer ends a process with SIGKILL (exit -9 from Python's view, 137 from a
shell's); a CUDA allocation that fails raises torch's OutOfMemoryError and the trainer exits 1 with it in
its log; a CPU allocation that fails raises MemoryError. Anything else is reported as its exit code.

What it deliberately does not do: read the kernel log (`dmesg` needs privileges) or restart anything
(healing.py restarts; a process that keeps dying this way ends in a crash loop described with this).
"""

from __future__ import annotations

from ghpo.local.config import RunConfig
from ghpo.local.processes import exit_description

OOM_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "MemoryError")


def _settings(cfg: RunConfig) -> str:
    return (
        f"lower deepspeed.micro_batch_size (this run: {cfg.deepspeed.micro_batch_size}) or "
        f"services.max_model_len ({cfg.services.max_model_len}), or set deepspeed.gradient_checkpointing = true"
    )


def explain_exit(code: int | None, log_tail: str, cfg: RunConfig) -> str:
    """What to say about a child that exited with `code` (its log ends with `log_tail`)."""
    if code in (-9, 137):
        return (
            f"was killed with SIGKILL (exit {code}); unless someone killed it, that is the kernel's "
            f"out-of-memory killer: {_settings(cfg)}"
        )
    if any(marker in log_tail for marker in OOM_MARKERS):
        return f"ran out of memory (exit {code}, see its log): {_settings(cfg)}"
    return exit_description(code)
