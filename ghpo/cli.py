"""The `ghpo` command line: one entry point, one module per subcommand under `ghpo.commands`.

Each command module exposes `add_parser(subparsers)`; heavy imports (torch, vLLM, math-verify)
happen only inside the command that needs them, so `ghpo --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ghpo import __version__
from ghpo.errors import CliError

# Order is the order `ghpo --help` lists them in.
COMMAND_MODULES = [
    "ghpo.commands.serve",
    "ghpo.commands.tiny",
    "ghpo.commands.models",
    "ghpo.commands.data",
    "ghpo.commands.eval",
    "ghpo.commands.bench",
    "ghpo.commands.train",
    "ghpo.commands.run",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ghpo",
        description="GHPO: RL with verifiable rewards and adaptive solution hints for hard prompts.",
    )
    parser.add_argument("--version", action="version", version=f"ghpo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CliError as exc:
        print(f"ghpo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
