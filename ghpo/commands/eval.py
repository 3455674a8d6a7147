"""`ghpo eval`: pass@1, avg@k and pass@k of a policy on the benchmarks and the synthetic task, no hints.

Parses and checks the flags (a bad value is a CliError naming the flag), runs
`ghpo.trainer.eval.run.evaluate`, prints a table and writes the JSON report. Generation runs against a
running inference service (`--inference-url`) or in this process with the inference service's vLLM engine
class on `--model` (default: the tiny model, built on first use). A `ghpo export` folder records the
prompt template its run trained with (system turn, instruction); it is used unless --system or
--instruction say otherwise. Missing benchmark data is one error line naming what to do, before any
engine starts. Not here: the evaluation itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
from pathlib import Path

from ghpo.errors import CliError

DEFAULT_BENCHMARKS = "arith,math500,aime24,amc23,minerva,olympiadbench"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="pass@1 / avg@k / pass@k on the benchmarks and the synthetic task (no hints)",
        description="Evaluate a policy without hints. Metrics: pass@1 = accuracy of each problem's first "
        "sample (greedy at --temperature 0); avg@k = mean accuracy over the k samples; pass@K = unbiased "
        "estimate that one of K samples (K = --pass-k <= k) is right.",
    )
    p.add_argument(
        "--benchmarks", default=DEFAULT_BENCHMARKS, help=f"comma-separated (default {DEFAULT_BENCHMARKS})"
    )
    p.add_argument("--limit", type=int, help="first N problems of each benchmark file (default: all)")
    p.add_argument("--arith-per-level", type=int, default=100, help="held-out arith problems per level (100)")
    p.add_argument("--arith-levels", default="1-8", help="arith levels, e.g. 1-8 or 1,2,5 (default 1-8)")
    p.add_argument("--k", type=int, default=1, help="samples per problem (default 1)")
    p.add_argument("--pass-k", type=int, help="K of pass@K, at most --k (default: --k)")
    p.add_argument("--temperature", type=float, default=0.0, help="sampling temperature; 0 = greedy")
    p.add_argument("--max-tokens", type=int, default=512, help="most completion tokens per sample (512)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed; problem i uses seed + i (0)")
    p.add_argument(
        "--instruction",
        help="text appended to each problem's user turn, e.g. ' Put your final answer within \\boxed{}.' "
        "(default: the prompt a `ghpo export` folder was trained with, else none: the tiny model's format)",
    )
    p.add_argument(
        "--system",
        help="system turn of every prompt (default: the exported run's, else none)",
    )
    p.add_argument("--model", type=Path, help="model folder for in-process vLLM (default: the tiny model)")
    p.add_argument("--inference-url", help="a running inference service to generate with, instead of --model")
    p.add_argument("--verifier-url", help="a running verifier service (default: its worker pool in-process)")
    p.add_argument("--token", default=os.environ.get("GHPO_TOKEN"), help="bearer token ($GHPO_TOKEN)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="in-process engine device (cpu)")
    p.add_argument("--max-model-len", type=int, help="in-process context length (default: the model's)")
    p.add_argument("--verifier-workers", type=int, default=2, help="in-process verifier workers (2)")
    p.add_argument(
        "--benchmarks-dir",
        type=Path,
        help="folder of the benchmark files (default $GHPO_BENCHMARKS_DIR, ../shared/data/benchmarks, "
        "else the Hugging Face hub)",
    )
    p.add_argument("--out", type=Path, help="write the JSON report here")
    p.add_argument("--samples-out", type=Path, help="write every scored completion here (JSON Lines)")
    p.set_defaults(func=run_eval)


def _levels(text: str) -> tuple[int, ...]:
    from ghpo.shared.tasks import arith

    levels: set[int] = set()
    try:
        for part in filter(None, (x.strip() for x in text.split(","))):
            low, _, high = part.partition("-")
            levels.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise CliError(f"--arith-levels: expected levels like 1-8 or 1,3,5, got {text!r}") from None
    if not levels or not levels <= set(arith.LEVELS):
        raise CliError(f"--arith-levels: levels must be in 1..{arith.MAX_LEVEL}, got {text!r}")
    return tuple(sorted(levels))


def _check_range(flag: str, value: float | None, low: float, high: float) -> None:
    if value is not None and not low <= value <= high:
        raise CliError(f"{flag} must be in {low:g}..{high:g}, got {value}")


def build_config(args: argparse.Namespace):
    """The EvalConfig the flags describe, or a CliError naming the first bad flag."""
    from ghpo.shared.schemas.inference import MAX_SAMPLES_PER_PROMPT
    from ghpo.trainer.eval.problems import NAMES
    from ghpo.trainer.eval.run import EvalConfig

    benchmarks = tuple(dict.fromkeys(x.strip() for x in args.benchmarks.split(",") if x.strip()))
    unknown = [b for b in benchmarks if b not in NAMES]
    if not benchmarks or unknown:
        raise CliError(f"--benchmarks: unknown {unknown or 'empty list'}; known: {', '.join(NAMES)}")
    _check_range("--limit", args.limit, 1, 1_000_000)
    _check_range("--arith-per-level", args.arith_per_level, 1, 10_000)
    _check_range("--k", args.k, 1, MAX_SAMPLES_PER_PROMPT)
    pass_k = args.pass_k if args.pass_k is not None else args.k
    _check_range("--pass-k", pass_k, 1, args.k)
    _check_range("--temperature", args.temperature, 0.0, 10.0)
    _check_range("--max-tokens", args.max_tokens, 1, 131_072)
    _check_range("--seed", args.seed, 0, 2**62)
    _check_range("--max-model-len", args.max_model_len, 16, 131_072)
    _check_range("--verifier-workers", args.verifier_workers, 1, 64)
    if args.model is not None and args.inference_url:
        raise CliError("--model: give either --model (in-process engine) or --inference-url, not both")
    for flag, url in (("--inference-url", args.inference_url), ("--verifier-url", args.verifier_url)):
        if url is not None and not url.startswith(("http://", "https://")):
            raise CliError(f"{flag} must be an http(s):// URL, got {url!r}")
    model = None
    if not args.inference_url:
        if args.model is None:
            from ghpo.trainer.tiny import ensure_tiny_model

            model = ensure_tiny_model(log=lambda line: print(line, file=sys.stderr))
        elif not (args.model / "config.json").is_file():
            raise CliError(f"--model: no config.json in {args.model}")
        else:
            model = args.model
    for flag, path in (("--out", args.out), ("--samples-out", args.samples_out)):
        if path is not None and not path.parent.is_dir():
            raise CliError(f"{flag}: folder {path.parent} does not exist")
    trained = _trained_prompt(model)
    return EvalConfig(
        benchmarks=benchmarks,
        k=args.k,
        pass_k=pass_k,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
        seed=args.seed,
        limit=args.limit,
        arith_per_level=args.arith_per_level,
        arith_levels=_levels(args.arith_levels),
        instruction=args.instruction if args.instruction is not None else trained.get("instruction", ""),
        system=args.system if args.system is not None else trained.get("system", ""),
        model=str(model) if model is not None else None,
        inference_url=args.inference_url,
        verifier_url=args.verifier_url,
        token=args.token,
        device=args.device,
        max_model_len=args.max_model_len,
        verifier_workers=args.verifier_workers,
        benchmarks_dir=str(args.benchmarks_dir) if args.benchmarks_dir else None,
        engine_log=None if args.inference_url else str(engine_log_path(args.out)),
    )


def engine_log_path(out: Path | None) -> Path:
    """Where vLLM's own output goes when it runs in this process: beside the report, else in the cache."""
    if out is not None:
        return out.with_name(out.name + ".vllm.log")
    return (
        Path(os.environ.get("GHPO_CACHE_DIR") or Path.home() / ".cache" / "ghpo") / "logs" / "eval-vllm.log"
    )


def _trained_prompt(model: Path | None) -> dict[str, str]:
    """The prompt template a `ghpo export` folder records (empty for any other model folder)."""
    from ghpo.trainer.train.export import read_export_info

    info = read_export_info(model) if model is not None else None
    return dict(info.get("prompt", {})) if info else {}


def run_eval(args: argparse.Namespace) -> int:
    from ghpo.shared.data import BenchmarkUnavailable, MappingError, SourceFormatError
    from ghpo.trainer.eval.run import eval_problems, evaluate, print_table

    config = build_config(args)
    if config.engine_log is not None:
        from ghpo.services.inference.vllm_engine import preload
        from ghpo.trainer.eval.generation import output_to

        with output_to(Path(config.engine_log)):
            preload()  # now, while no engine is on the stack (see preload)
        print(f"vLLM's own output goes to {config.engine_log}", file=sys.stderr)
    if config.k > 1 and config.temperature == 0.0:
        print("note: --k > 1 at --temperature 0 draws the same greedy sample k times", file=sys.stderr)
    try:  # the problems first: missing data is one line, before any engine starts
        problems = eval_problems(config)
    except (BenchmarkUnavailable, MappingError, SourceFormatError) as exc:
        raise CliError(" ".join(str(exc).split())) from None
    report = asyncio.run(
        evaluate(
            config,
            problems=problems,
            samples_out=args.samples_out,
            log=lambda line: print(line, file=sys.stderr),
        )
    )
    report["command"] = shlex.join(["ghpo", *sys.argv[1:]])
    print_table(report)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}", file=sys.stderr)
    return 0
