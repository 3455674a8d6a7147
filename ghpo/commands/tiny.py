"""`ghpo tiny build` / `ghpo tiny eval`: the locally built tiny policy model of the tiny world.

`build` returns the cached model folder (building it on first use, or again with --rebuild) and prints
its per-level greedy accuracy on the held-out arithmetic split; `eval` scores any model folder the same
way. Not here: training logic (ghpo.trainer.tiny) or RL.
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
        "--eval-per-level", type=int, default=100, help="held-out problems per level (0 = skip eval)"
    )
    b.set_defaults(func=run_build)

    e = tiny_sub.add_parser("eval", help="per-level greedy accuracy of a model folder on held-out arithmetic")
    e.add_argument("model_dir", type=Path, help="Hugging Face model folder")
    e.add_argument("--per-level", type=int, default=100, help="held-out problems per level")
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


def run_build(args: argparse.Namespace) -> int:
    from ghpo.trainer.tiny import TinyBuildConfig, ensure_tiny_model, evaluate_levels

    _check_count("--eval-per-level", args.eval_per_level, 0)
    start = time.monotonic()
    path = ensure_tiny_model(TinyBuildConfig(seed=args.seed), cache_dir=args.cache_dir, rebuild=args.rebuild)
    print(f"tiny model ready in {time.monotonic() - start:.1f}s: {path}")
    if args.eval_per_level:
        print_table(evaluate_levels(path, n_per_level=args.eval_per_level), f"held-out accuracy: {path.name}")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ghpo.trainer.tiny import evaluate_levels

    _check_count("--per-level", args.per_level, 1)
    if not (args.model_dir / "config.json").is_file():
        raise CliError(f"model_dir: no config.json in {args.model_dir}")
    print_table(
        evaluate_levels(args.model_dir, n_per_level=args.per_level), f"held-out accuracy: {args.model_dir}"
    )
    return 0
