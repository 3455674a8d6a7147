"""Why a child of `ghpo run` died, in words that say what is known: how it ended (its exit code or the
signal), and an out-of-memory death only with evidence for it.

Evidence, in the order it is looked for:
- its log ends with an allocation failure (torch's OutOfMemoryError, "CUDA out of memory", MemoryError);
- the kernel's out-of-memory killer recorded killing it (its pid in /dev/kmsg, where this user may read
  it; nothing is claimed from the log's absence where it cannot be read);
- its peak resident memory (wait4's ru_maxrss, recorded when the supervisor reaps it) came within
  NEAR_LIMIT of the machine's memory limit (the cgroup's limit, else MemTotal).
A SIGKILL without any of these is reported as a SIGKILL with its peak memory, not as the OOM killer:
someone may have killed it. The settings to change are named only for the processes whose memory they
control (the trainer's micro-batch and sequence length, the inference engine's KV cache and context);
for the others the message says what ran out and no more.

What it deliberately does not do: sample memory while processes run (the leader's peak is exact, its
workers' are not counted), or restart anything (healing.py restarts; a process that keeps dying this way
ends in a crash loop described with this).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from ghpo.local.config import RunConfig
from ghpo.local.processes import Child, exit_description

GiB = 1024**3
NEAR_LIMIT = 0.9  # peak RSS at or above this share of the memory limit counts as memory pressure
SIGKILL_CODES = (-9, 137)  # Popen's view of SIGKILL, and a shell's
OOM_MARKERS = ("CUDA out of memory", "OutOfMemoryError", "MemoryError")
_KERNEL_OOM = re.compile(r"(?:Killed process|Out of memory: Kill process) (\d+)|oom-kill:.*?\bpid=(\d+)")


def memory_settings(name: str, cfg: RunConfig) -> str | None:
    """The settings that control how much memory the process `name` takes, or None for the others."""
    if name == "trainer":
        return (
            f"lower deepspeed.micro_batch_size (this run: {cfg.deepspeed.micro_batch_size}) or "
            f"services.max_model_len ({cfg.services.max_model_len}), or set "
            "deepspeed.gradient_checkpointing = true"
        )
    if name == "inference":
        return (
            f"lower services.kv_cache_gib (this run: {cfg.services.kv_cache_gib}) or "
            f"services.max_model_len ({cfg.services.max_model_len})"
        )
    return None


def _gib(n: int) -> str:
    return f"{n / GiB:.2f} GiB" if n < 10 * GiB else f"{n / GiB:.1f} GiB"


def memory_limit_bytes() -> int | None:
    """The memory this machine gives its processes: the cgroup's limit where one is set, else MemTotal."""
    limits = []
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        with contextlib.suppress(OSError, ValueError):
            limits.append(int(Path(path).read_text().strip()))  # "max" (no limit) does not parse
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                limits.append(int(line.split()[1]) * 1024)
    return min(limits) if limits else None


def kernel_oom_pids(kernel_log: str, since_s: float = 0.0) -> set[int]:
    """The pids the kernel's out-of-memory killer names in /dev/kmsg records (`prio,seq,usec,flags;text`)
    stamped `since_s` seconds after boot or later (the monotonic clock: a pid reused since is not matched)."""
    pids = set()
    for record in kernel_log.splitlines():
        header, _, text = record.partition(";")
        fields = header.split(",")
        with contextlib.suppress(IndexError, ValueError):
            if int(fields[2]) / 1e6 < since_s:
                continue
        pids |= {int(a or b) for a, b in _KERNEL_OOM.findall(text)}
    return pids


def read_kernel_log() -> str | None:
    """What /dev/kmsg holds now, or None where this user may not read it (kernel.dmesg_restrict)."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    records = []
    try:
        while True:
            try:
                records.append(os.read(fd, 8192).decode(errors="replace"))
            except BlockingIOError:
                break  # read everything there is
            except OSError:  # EPIPE: a record was overwritten while reading; go on
                continue
    finally:
        os.close(fd)
    return "".join(records)


def explain_exit(child: Child, cfg: RunConfig, *, memory_limit: int | None = None) -> str:
    """What to say about `child`, which exited (reaped by the supervisor). `memory_limit` defaults to
    this machine's."""
    code = child.process.returncode
    how = exit_description(code)
    settings = memory_settings(child.name, cfg)
    hint = f"; {settings}" if settings else ""
    tail = child.log_tail()
    marker = next((m for m in OOM_MARKERS if m in tail), None)
    if marker is not None:
        return f"{how} after running out of memory ({marker} in its log){hint}"
    if code not in SIGKILL_CODES:
        return how
    kernel_log = read_kernel_log()
    if kernel_log is not None and child.process.pid in kernel_oom_pids(kernel_log, child.started_at - 1):
        return f"{how}: the kernel's out-of-memory killer ended it (kernel log){hint}"
    limit = memory_limit if memory_limit is not None else memory_limit_bytes()
    peak = child.peak_rss_bytes
    if peak is None or not limit:
        return how
    facts = f"peak RSS {_gib(peak)} of the {_gib(limit)} memory limit"
    if peak >= NEAR_LIMIT * limit:
        return f"{how} with its {facts}: most likely the kernel's out-of-memory killer{hint}"
    no_record = "; the kernel log has no out-of-memory kill of it" if kernel_log is not None else ""
    return f"{how} ({facts}{no_record})"
