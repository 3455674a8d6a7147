"""`ghpo tiny build` / `ghpo tiny eval`: the tiny policy model of the tiny world.

`build` returns the model folder (the shipped build for the default config, else the cached one, built
on first use or again with --rebuild) and prints its per-level greedy accuracy on the held-out
arithmetic split; `build --ship` builds the default config afresh, measures its hint table and puts
both where `ensure_tiny_model` finds them (the repository's trainer/tiny/model). `eval` scores any
model folder the same way, `eval --hints` at each hint ratio too, `eval --samples K` sampled at temperature 1
beside greedy. Not here: training logic
(ghpo.trainer.tiny) or RL.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ghpo.errors import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tiny", help="build or evaluate the tiny local policy model")
    tiny_sub = p.add_subparsers(dest="tiny_command", metavar="<tiny command>", required=True)

    b = tiny_sub.add_parser("build", help="build (or reuse the cached) tiny model and print its accuracy")
    b.add_argument("--seed", type=int, default=0, help="build seed (default 0)")
    b.add_argument(
        "--cache-dir", type=Path, help="cache root (default $GHPO_CACHE_DIR/models or ~/.cache/ghpo/models)"
    )
    b.add_argument("--rebuild", action="store_true", help="build again even if cached")
    b.add_argument(
        "--ship",
        action="store_true",
        help="build the default config afresh and replace the shipped build and its hint table with it",
    )
    b.add_argument(
        "--eval-per-level", type=int, default=100, help="held-out problems per level (0 = skip eval)"
    )
    b.set_defaults(func=run_build)

    e = tiny_sub.add_parser("eval", help="per-level greedy accuracy of a model folder on held-out arithmetic")
    e.add_argument("model_dir", type=Path, help="Hugging Face model folder")
    e.add_argument("--per-level", type=int, default=100, help="held-out problems per level")
    e.add_argument(
        "--samples",
        type=int,
        default=0,
        help="also the sampled accuracy: the mean over this many completions per problem at temperature 1",
    )
    e.add_argument(
        "--hints",
        action="store_true",
        help="also ask each problem with GHPO's 25/50/75%% hint (the table that shows where hints help)",
    )
    e.set_defaults(func=run_eval)


def _check_count(name: str, value: int, low: int) -> None:
    if value < low or value > 10_000:
        raise CliError(f"{name} must be in {low}..10000, got {value}")


def print_table(results: dict[int, tuple[int, int]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("level", "correct", "total", "accuracy"):
        table.add_column(column, justify="right")
    for level, (correct, total) in results.items():
        table.add_row(str(level), str(correct), str(total), f"{correct / max(total, 1):.1%}")
    Console().print(table)


def print_hint_table(table: dict[float, dict[int, tuple[int, int]]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Table(title=title)
    out.add_column("level", justify="right")
    for ratio in table:
        out.add_column("no hint" if ratio == 0 else f"{ratio:.0%} hint", justify="right")
    for level in next(iter(table.values())):
        row = [f"{table[r][level][0] / max(table[r][level][1], 1):.1%}" for r in table]
        out.add_row(str(level), *row)
    Console().print(out)


def run_build(args: argparse.Namespace) -> int:
    from ghpo.trainer.tiny import TinyBuildConfig, ensure_tiny_model, evaluate_levels

    _check_count("--eval-per-level", args.eval_per_level, 0)
    if args.ship:
        if args.seed != 0 or args.cache_dir is not None:
            raise CliError(
                "--ship builds the default config into the repository: drop --seed and --cache-dir"
            )
        return ship()
    start = time.monotonic()
    path = ensure_tiny_model(TinyBuildConfig(seed=args.seed), cache_dir=args.cache_dir, rebuild=args.rebuild)
    print(f"tiny model ready in {time.monotonic() - start:.1f}s: {path}")
    if args.eval_per_level:
        print_table(evaluate_levels(path, n_per_level=args.eval_per_level), f"held-out accuracy: {path.name}")
    return 0


def ship(out_dir: Path | None = None) -> int:
    """Build the default config into a fresh folder, measure its hint table, then swap it in for the
    shipped build (`SHIPPED_DIR`, or `out_dir`)."""
    import shutil
    import tempfile

    from ghpo.trainer.tiny import TinyBuildConfig, build_tiny_model
    from ghpo.trainer.tiny.build import SHIPPED_DIR
    from ghpo.trainer.tiny.evaluate import HINT_TABLE_FILE, write_hint_table

    target = Path(out_dir) if out_dir is not None else SHIPPED_DIR
    with tempfile.TemporaryDirectory(prefix=".tiny-ship-", dir=target.parent) as tmp:
        built = build_tiny_model(TinyBuildConfig(), Path(tmp) / "model")
        tables = write_hint_table(built)
        if target.exists():
            shutil.rmtree(target)
        shutil.move(built, target)
    for kind, table in tables.items():
        print_hint_table(table, f"held-out accuracy by hint ratio, {kind}: {target} ({HINT_TABLE_FILE})")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ghpo.trainer.tiny import evaluate_levels
    from ghpo.trainer.tiny.evaluate import evaluate_hint_table

    _check_count("--per-level", args.per_level, 1)
    if not 0 <= args.samples <= 64:
        raise CliError(f"--samples must be in 0..64, got {args.samples}")
    if not (args.model_dir / "config.json").is_file():
        raise CliError(f"model_dir: no config.json in {args.model_dir}")
    kinds = [("greedy", 0)] + (
        [(f"sampled, mean of {args.samples} at T = 1", args.samples)] if args.samples else []
    )
    for kind, samples in kinds:
        if args.hints:
            table = evaluate_hint_table(args.model_dir, n_per_level=args.per_level, samples=samples)
            print_hint_table(table, f"held-out accuracy by hint ratio, {kind}: {args.model_dir}")
        else:
            results = evaluate_levels(args.model_dir, n_per_level=args.per_level, samples=samples)
            print_table(results, f"held-out accuracy, {kind}: {args.model_dir}")
    return 0
