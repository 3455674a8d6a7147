"""SmolLM2-135M-Instruct's greedy accuracy on MATH-500 level 1 and on the synthetic arithmetic levels.

Reproduces the figures quoted for the real pretrained model of the tiny world: the model folder from
`ghpo models prepare smollm2`, its own chat template, an instruction to put the answer in \\boxed{},
greedy decoding on CPU with batched transformers `generate`, scored by the verifier's `score()`.
The baseline run is the same prompts with GHPO's hint (the first half of the worked solution appended,
ratio 0.5): the ratio shows how much guidance lifts this model, which is what GHPO relies on.
Accuracy under greedy decoding is deterministic, so one run per figure (no medians needed).

    python bench/smollm2_accuracy.py [--math-levels 1] [--arith-per-level 5] [--max-new-tokens 384]

Measured on the 2-core development machine (shared, about 4-6 generated tokens/s at batch 16):
`--arith-per-level 0 --no-hint-baseline` (MATH-500 level 1, 43 problems, 384 tokens) took 30 min and
`--math-levels '' --arith-per-level 5 --max-new-tokens 160 --no-hint-baseline` took 18 min; the hinted
baseline doubles either. `--quick` is a smoke run (2 MATH-500 problems, 1 per arithmetic level, 32 new
tokens); each figure is also printed as a BENCH_RESULT line. Not a test: it asserts nothing.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

from ghpo.shared.algorithm.hints import hinted_problem
from ghpo.shared.bench_results import emit

QUICK = {"math_limit": 2, "arith_per_level": 1, "max_new_tokens": 32}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
INSTRUCTION = "\nPlease reason step by step, and put your final answer within \\boxed{}."


def user_turn(problem: str, solution: str | None, hint_ratio: float) -> str:
    text = hinted_problem(problem, solution, hint_ratio) if hint_ratio > 0 and solution else problem
    return text + INSTRUCTION


def generate(
    model, tokenizer, prompts: list[str], max_new_tokens: int, batch_size: int
) -> tuple[list[str], int]:
    """Greedy completions in input order, and the number of generated tokens."""
    import torch

    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], add_generation_prompt=True, tokenize=False
        )
        for p in prompts
    ]
    # Batches of similar length waste less compute on padding.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: dict[int, str] = {}
    generated = 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            tokens = model.generate(
                **enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        new = tokens[:, enc["input_ids"].shape[1] :]
        generated += int((new != tokenizer.pad_token_id).sum())
        for i, row in zip(idx, new, strict=True):
            out[i] = tokenizer.decode(row, skip_special_tokens=True)
        print(f"  generated {len(out)}/{len(texts)}", file=sys.stderr, flush=True)
    return [out[i] for i in range(len(texts))], generated


def last_number_correct(completion: str, gold: str) -> bool:
    """Format-free check: the last number the completion writes equals the gold answer (math-verify).

    SmolLM2 rarely writes \\boxed{}, so the verifier's strict extraction scores it 0; this shows how
    often the right value is there at all. Not the reward: a diagnostic only.
    """
    from math_verify import parse, verify

    from ghpo.shared.scoring.answers import parse_gold

    numbers = NUMBER.findall(completion)
    gold_parsed = parse_gold(gold)
    if not numbers or not gold_parsed:
        return False
    return bool(verify(list(gold_parsed), parse(f"${numbers[-1]}$")))


def evaluate(model, tokenizer, records, hint_ratio: float, args) -> dict:
    from ghpo.shared.scoring.answers import score

    start = time.monotonic()
    prompts = [user_turn(r.problem, r.solution, hint_ratio) for r in records]
    completions, generated = generate(model, tokenizer, prompts, args.max_new_tokens, args.batch_size)
    seconds = time.monotonic() - start
    by_level: dict[int | None, list[int]] = defaultdict(lambda: [0, 0])
    lenient: dict[int | None, int] = defaultdict(int)
    scored = []
    for record, completion in zip(records, completions, strict=True):
        result = score(completion, record.answer)
        by_level[record.level][0] += int(result.accuracy)
        by_level[record.level][1] += 1
        lenient[record.level] += int(last_number_correct(completion, record.answer))
        scored.append(
            {
                "id": record.id,
                "level": record.level,
                "gold": record.answer,
                "status": result.status,
                "extracted": result.extracted,
                "accuracy": result.accuracy,
                "completion": completion,
            }
        )
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        name = f"{records[0].source}_hint{hint_ratio}.jsonl"
        (args.out / name).write_text("".join(json.dumps(row) + "\n" for row in scored))
    return {
        "levels": dict(sorted(by_level.items())),
        "seconds": seconds,
        "tokens": generated,
        "example": completions[0],
        "lenient": dict(lenient),
        "answered": sum(row["status"] != "no_answer" for row in scored),
    }


def report(title: str, plain: dict, hinted: dict | None, figure: str) -> None:
    print(
        f"\n{title}: {plain['tokens']} tokens in {plain['seconds']:.0f}s "
        f"({plain['tokens'] / plain['seconds']:.0f} tokens/s)"
    )
    print(f"{'level':>6} {'n':>4} {'no hint':>8} {'last-number':>12} {'hint 0.5':>9} {'ratio':>6}")
    for level, (correct, total) in plain["levels"].items():
        line = (
            f"{level!s:>6} {total:>4} {correct / total:>8.1%} {plain['lenient'].get(level, 0) / total:>12.1%}"
        )
        if hinted is not None:
            h_correct, _ = hinted["levels"][level]
            ratio = f"{correct / h_correct:.2f}" if h_correct else "-"
            line += f" {h_correct / total:>9.1%} {ratio:>6}"
        print(line)
    total = sum(n for _, n in plain["levels"].values())
    print(
        f"completions with an answer the verifier can extract (\\boxed{{}} etc.): {plain['answered']}/{total}"
    )
    print(f"first completion: {plain['example'][:300]!r}")
    correct = sum(c for c, _ in plain["levels"].values())
    emit(
        f"smollm2.{figure}_greedy_accuracy",
        correct / total,
        "fraction",
        baseline=None if hinted is None else "same prompts with a 0.5 hint",
        baseline_value=None if hinted is None else sum(c for c, _ in hinted["levels"].values()) / total,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--math-levels", default="1", help="MATH-500 levels, comma-separated ('' to skip)")
    parser.add_argument(
        "--arith-per-level", type=int, default=5, help="held-out arithmetic problems per level"
    )
    parser.add_argument("--math-limit", type=int, default=0, help="first N MATH-500 problems only (0 = all)")
    parser.add_argument("--max-new-tokens", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, help="folder for the scored completions (JSON Lines)")
    parser.add_argument("--no-hint-baseline", action="store_true", help="skip the hinted baseline run")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given")
    args = parser.parse_args()
    if args.quick:  # quick changes the defaults only; explicit flags still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ghpo.shared.data import load_benchmark
    from ghpo.trainer.models import prepare_smollm2

    torch.manual_seed(0)
    path = prepare_smollm2()
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    print(f"model: {path}; torch threads: {torch.get_num_threads()}")

    levels = {int(x) for x in args.math_levels.split(",") if x.strip()}
    if levels:
        records = [r for r in load_benchmark("math500").records if r.level in levels]
        records = records[: args.math_limit or None]
        plain = evaluate(model, tokenizer, records, 0.0, args)
        hinted = None if args.no_hint_baseline else evaluate(model, tokenizer, records, 0.5, args)
        report(f"MATH-500 levels {sorted(levels)}", plain, hinted, "math500")

    if args.arith_per_level > 0:
        from ghpo.shared.tasks import arith

        records = arith.make_split("heldout", args.arith_per_level, list(arith.LEVELS), seed=0)
        plain = evaluate(model, tokenizer, records, 0.0, args)
        hinted = None if args.no_hint_baseline else evaluate(model, tokenizer, records, 0.5, args)
        report("synthetic arithmetic (held-out)", plain, hinted, "arith")


if __name__ == "__main__":
    main()
