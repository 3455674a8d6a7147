"""The `ghpo` command line: one entry point, one module per subcommand under `ghpo.commands`.

Each command module exposes `add_parser(subparsers)`; heavy imports (torch, vLLM, math-verify)
happen only inside the command that needs them, so `ghpo --help` stays instant. Help text generated
from the config models (`ghpo run --help`, `ghpo serve SERVICE --help`) is given as `epilog_from`, a
function called only when that help is printed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from ghpo import __version__
from ghpo.errors import CliError
from ghpo.shared.progress_bars import follow_terminal

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
    "ghpo.commands.export",
]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog may be computed when help is printed (`epilog_from=callable`),
    keeping the models it is generated from unimported until then; epilogs keep their line breaks."""

    def __init__(self, *args: object, epilog_from: Callable[[], str] | None = None, **kwargs: object):
        if epilog_from is not None:
            kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.epilog_from = epilog_from

    def format_help(self) -> str:
        if self.epilog_from is not None:
            self.epilog = self.epilog_from()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    follow_terminal()  # libraries' progress bars: on a terminal only, as ghpo's own
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
