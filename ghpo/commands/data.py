"""`ghpo data inspect`: load a prompt source the way training and evaluation will, and show what came out.

Prints the row counts, the skipped rows by reason with examples, the level mix and a few records, so a
field mapping can be checked before a run. The source is a built-in benchmark name (math500, aime24,
amc23, minerva, olympiadbench), a JSONL/JSON/Parquet file, a `save_to_disk` folder or a Hugging Face
dataset name. Not here: the loading itself (ghpo.shared.data).
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from ghpo.errors import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ghpo.shared.data.sources import FORMATS

    p = sub.add_parser("data", help="inspect prompt data sources")
    data_sub = p.add_subparsers(dest="data_command", metavar="<data command>", required=True)
    i = data_sub.add_parser("inspect", help="load a source and print counts, skipped rows and a sample")
    i.add_argument(
        "source", help="benchmark name, JSONL/JSON/Parquet file, dataset folder or HF dataset name"
    )
    i.add_argument("--format", choices=FORMATS, help="source format (default: from the suffix; hf otherwise)")
    i.add_argument(
        "--map",
        default="",
        metavar="FIELD=COLUMN,...",
        help="field mapping overrides, e.g. problem=question,answer=final_answer; fields: problem, answer, "
        "solution, id, level, meta (columns joined with +); an empty column unsets an optional field, "
        "and answer= takes the last \\boxed{} of the solution",
    )
    i.add_argument("--split", help="dataset split (Hugging Face sources)")
    i.add_argument("--config", help="dataset configuration name (Hugging Face sources)")
    i.add_argument("--name", help="label for records and id prefix (default: file stem or benchmark name)")
    i.add_argument(
        "--benchmarks-dir",
        type=Path,
        help="folder of the benchmark files (default $GHPO_BENCHMARKS_DIR, ../shared/data/benchmarks, "
        "else the Hugging Face hub)",
    )
    i.add_argument("--no-check", action="store_true", help="skip the math-verify parse of gold answers")
    i.add_argument("--require-solution", action="store_true", help="skip rows without a worked solution")
    i.add_argument("--sample", type=int, default=3, help="records to print (0..50, default 3)")
    i.set_defaults(func=run_inspect)


def _load(args: argparse.Namespace):
    from ghpo.shared.data import BENCHMARKS, FieldMapping, load_benchmark, load_prompts

    if args.source in BENCHMARKS and not Path(args.source).exists():
        return load_benchmark(
            args.source,
            args.benchmarks_dir,
            overrides=args.map,
            check_answers=not args.no_check,
            require_solution=args.require_solution,
        )
    return load_prompts(
        args.source,
        FieldMapping().with_overrides(args.map),
        fmt=args.format,
        split=args.split,
        config=args.config,
        name=args.name,
        check_answers=not args.no_check,
        require_solution=args.require_solution,
    )


def _preview(text: str | None, limit: int = 100) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def run_inspect(args: argparse.Namespace) -> int:
    from ghpo.shared.data import BenchmarkUnavailable, MappingError, SourceFormatError

    if not 0 <= args.sample <= 50:
        raise CliError(f"--sample must be in 0..50, got {args.sample}")
    try:
        result = _load(args)
    except MappingError as exc:
        raise CliError(f"--map: field {exc.field!r}: {exc}") from None
    except BenchmarkUnavailable as exc:
        raise CliError(str(exc)) from None
    except (SourceFormatError, FileNotFoundError, KeyError, ValueError) as exc:
        raise CliError(str(exc).strip("'\"")) from None
    records, report = result.records, result.report
    print(report.summary())
    hintable = sum(r.hintable for r in records)
    print(f"with worked solutions (hintable): {hintable}/{len(records)}")
    levels = Counter(r.level for r in records if r.level is not None)
    if levels:
        print("levels: " + ", ".join(f"{level}: {count}" for level, count in sorted(levels.items())))
    for record in records[: args.sample]:
        print(f"\n[{record.id}] level={record.level} answer={_preview(record.answer, 60)!r}")
        print(f"  problem:  {_preview(record.problem)}")
        print(f"  solution: {_preview(record.solution) if record.solution else '(none)'}")
        if record.meta:
            print(f"  meta:     {record.meta}")
    return 0
