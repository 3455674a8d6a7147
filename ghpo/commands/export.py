"""`ghpo export --run-dir RUN [--out DIR] [--merged]`: the trained policy of a `ghpo run` folder as a Hugging Face folder.

Takes the run's latest complete checkpoint (or `--checkpoint step-...`) and writes config, safetensors
weights, tokenizer (chat template included) and generation config that transformers, vLLM and
`ghpo eval --model DIR` load; a LoRA run's adapter as a PEFT folder (`--merged`: the merged model, adapter
inside). Not here: the export itself (ghpo.local.export, ghpo.trainer.train.export).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ghpo.errors import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a run's trained policy as a Hugging Face model folder")
    p.add_argument("--run-dir", type=Path, required=True, help="the `ghpo run` folder")
    p.add_argument("--out", type=Path, help="destination folder (default: RUN_DIR/export)")
    p.add_argument("--checkpoint", help="checkpoint folder name, e.g. step-000000020 (default: the latest)")
    p.add_argument(
        "--merged",
        action="store_true",
        help="LoRA runs: write the merged model (a Hugging Face folder) with the adapter in its adapter/ "
        "subfolder, instead of the adapter alone (a PEFT folder)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ghpo.local.export import export_run
    from ghpo.trainer.train.export import ExportError

    try:
        path = export_run(args.run_dir, args.out, checkpoint=args.checkpoint, merged=args.merged)
    except ExportError as exc:
        raise CliError(str(exc)) from None
    print(path)
    return 0
