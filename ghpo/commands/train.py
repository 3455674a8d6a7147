"""`ghpo train --config FILE.toml`: run the GHPO trainer (DeepSpeed) against the rollout server.

One process on CPU; on GPUs launch it under `deepspeed` or `torchrun` (one process per GPU), e.g.
`torchrun --nproc_per_node 8 -m ghpo train --config run.toml`. Exit codes: 0 when run.steps were taken
or a stop was asked for (SIGTERM: the current step is finished and checkpointed), 2 for a bad config,
3 (`GUARDRAIL_EXIT`) when a guardrail stopped the run (non-finite loss/gradients, too many empty batches,
an upstream service lost for longer than services.outage_budget_s; a checkpoint of the last good state
is written first); anything else is a crash, which a supervisor may restart (`ghpo run` does). Not
here: the training itself (ghpo.trainer.train).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ghpo.errors import CliError

GUARDRAIL_EXIT = 3


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="run the GHPO trainer from a TOML config")
    p.add_argument("--config", type=Path, required=True, help="trainer config (TOML)")
    p.add_argument("--steps", type=int, help="override run.steps")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ghpo.trainer.train.config import ConfigError, load_config

    try:
        config = load_config(args.config)
        if args.steps is not None:
            from ghpo.trainer.train.config import parse_config

            data = config.model_dump(mode="json")
            data["run"]["steps"] = args.steps
            config = parse_config(data, f"{args.config} (--steps)")
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if config.services.rollout_url is None:
        raise CliError(f"{args.config}: services.rollout_url is required to train (where batches come from)")

    from ghpo.shared.logs import configure_logging
    from ghpo.shared.settings import SettingsError
    from ghpo.trainer.train.loop import TrainingStopped
    from ghpo.trainer.train.session import run_training

    configure_logging("trainer", "INFO", False)
    try:
        run_training(config)
    except ConfigError as exc:  # found when the model is built (a LoRA target the model lacks)
        raise CliError(str(exc)) from None
    except SettingsError as exc:  # the status API refused its settings (production without a strong token)
        from ghpo.trainer.train.config import TOKEN_ENV

        raise CliError(f"{exc} (the trainer's token: [services] token or ${TOKEN_ENV})") from None
    except TrainingStopped as exc:
        print(f"ghpo train: stopped: {exc}", file=sys.stderr)
        return GUARDRAIL_EXIT
    return 0
