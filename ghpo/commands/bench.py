"""`ghpo bench`: run the benchmark scripts listed in bench/registry.toml and write BENCHMARKS.md.

`--quick` runs each script's smoke mode (CI); without it, the full measurements. `--only` picks scripts
by name. Figures come from each script's BENCH_RESULT lines. Not here: the running and the Markdown
(ghpo.local.bench), or any measurement.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import textwrap
from pathlib import Path

from ghpo.errors import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run the benchmark scripts in bench/ and write BENCHMARKS.md")
    p.add_argument(
        "--quick", action="store_true", help="smoke mode of every script (fast, not representative)"
    )
    p.add_argument("--only", default="", help="comma-separated script names (default: all registered)")
    p.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"), help="Markdown file (./BENCHMARKS.md)")
    p.add_argument(
        "--bench-dir", type=Path, help="folder with registry.toml (default: this checkout's bench/)"
    )
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per script (3600)")
    p.add_argument("--list", action="store_true", help="list the registered scripts and exit")
    p.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from ghpo.local import bench

    bench_dir = args.bench_dir or bench.default_bench_dir()
    if not (bench_dir / bench.REGISTRY).is_file():
        raise CliError(f"--bench-dir: no {bench.REGISTRY} in {bench_dir}")
    if not 1 <= args.timeout <= 86_400:
        raise CliError(f"--timeout must be in 1..86400 seconds, got {args.timeout:g}")
    if not args.out.parent.is_dir():
        raise CliError(f"--out: folder {args.out.parent} does not exist")
    registry = bench.load_registry(bench_dir)
    if args.list:
        for b in registry:
            present = "" if (bench_dir / b.script).is_file() else "  (not present yet)"
            print(f"{b.name:28s} {b.area:10s} {shlex.join(bench.command_for(b, args.quick))}{present}")
        return 0
    wanted = [x.strip().removesuffix(".py") for x in args.only.split(",") if x.strip()]
    unknown = sorted(set(wanted) - {b.name for b in registry})
    if unknown:
        raise CliError(f"--only: not in {bench.REGISTRY}: {', '.join(unknown)}")
    load_before = bench.load_average()
    outcomes = []
    for b in registry:
        if wanted and b.name not in wanted:
            outcomes.append(bench.not_selected(b, args.quick))
            continue
        print(f"{b.script}: running", file=sys.stderr, flush=True)
        outcome = bench.run_one(b, bench_dir, quick=args.quick, timeout_s=args.timeout)
        print(
            f"{b.script}: {outcome.status} in {outcome.seconds:.0f}s, {len(outcome.figures)} figure(s)"
            + (f" ({outcome.detail.splitlines()[0]})" if outcome.detail else ""),
            file=sys.stderr,
            flush=True,
        )
        if outcome.status in ("failed", "timeout"):  # the tail, here too: a CI log may be all there is
            print(textwrap.indent("\n".join(outcome.detail.splitlines()[1:]), "    "), file=sys.stderr)
        outcomes.append(outcome)
    info = bench.machine() | {
        "load average (1/5/15 min), start → end": f"{load_before} → {bench.load_average()}"
    }
    markdown = bench.render_markdown(
        outcomes, info, quick=args.quick, extra=bench.unregistered(bench_dir, registry)
    )
    args.out.write_text(markdown)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if all(o.status in ("ok", "skipped", "not run") for o in outcomes) else 1
