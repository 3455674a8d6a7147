"""`ghpo run`: train the tiny model (or a configured one) with GHPO on this machine, end to end.

Starts Redis, inference, verifier, broker, rollout server and trainer as local processes (ghpo.local.run),
restarts any of them that dies (a crash loop stops the run), shows progress, and writes report.md, plots
and the trained policy (export/) in the run folder. Ctrl-C (or `kill`, SIGTERM) stops cleanly: the trainer
finishes its step and checkpoints within a grace measured from its step times; `--resume` continues the
same run folder from its last checkpoint. `--help` names every config section; `--print-config` prints
the whole default config as TOML. The run folder defaults to runs/<timestamp>, as `make run` uses.
Exit codes: 0 done, 1 the run stopped (a crash loop, a guardrail: the message says which, with the log
tail), 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path

from ghpo.errors import CliError


def _sections() -> str:
    from ghpo.config_reference import run_sections_help

    return run_sections_help()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the whole system locally and train (default: the tiny model, CPU)",
        description="Train with GHPO on this machine: every service as a local process, a report, the\n"
        "trained policy exported as a Hugging Face folder (RUN_DIR/export).",
        epilog_from=_sections,
    )
    p.add_argument("--config", type=Path, help="run config TOML (default: the built-in tiny CPU run)")
    p.add_argument(
        "--run-dir", type=Path, help="run folder (default: runs/<timestamp>; required with --resume)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its checkpoint")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the full default config as TOML (every key, its default and meaning) and exit",
    )
    p.set_defaults(func=run)


def default_run_dir() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


def stop_cleanly_on_signals() -> None:
    """SIGINT (Ctrl-C, `kill -INT`) and SIGTERM (`kill`, `timeout`, a scheduler) raise KeyboardInterrupt,
    so the run stops its services and the trainer checkpoints. SIGINT is armed explicitly: a shell starts
    a background job (`ghpo run &`, nohup) with SIGINT ignored and Python keeps it ignored. Signals that
    arrive while stopping are ignored: the stop is bounded by the supervisor's own time limits, and a
    second Ctrl-C (or a driver forwarding the one the terminal already sent) must not cut it short."""

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def run(args: argparse.Namespace) -> int:
    from ghpo.local.config import RunConfigError, load_run_config
    from ghpo.local.processes import ProcessFailed
    from ghpo.local.run import RunError
    from ghpo.local.run import run as run_local

    if args.print_config:
        from ghpo.config_reference import default_config_toml

        print(default_config_toml(), end="")
        return 0
    if args.run_dir is None:
        if args.resume:
            raise CliError("--resume needs --run-dir: the folder of the run to continue")
        args.run_dir = default_run_dir()
    stop_cleanly_on_signals()
    try:
        cfg = load_run_config(args.config) if args.config or not args.resume else None
        report = run_local(cfg, args.run_dir, resume=args.resume)
    except (RunConfigError, RunError) as exc:
        raise CliError(str(exc)) from None
    except ProcessFailed as exc:
        print(f"ghpo run: stopped: {exc}")
        print(f"continue with: ghpo run --resume --run-dir {args.run_dir}")
        return 1
    except KeyboardInterrupt:
        print(f"interrupted; continue with: ghpo run --resume --run-dir {args.run_dir}")
        return 130
    print(f"report: {report}")
    return 0
