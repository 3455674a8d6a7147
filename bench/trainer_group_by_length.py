"""Trainer step time on a GHPO-shaped batch, rows in batch order against rows grouped by length
(`deepspeed.group_by_length`), in one process, one torch thread, the two alternating step by step.

The batch has the shape of the study's GHPO batches on arithmetic level 2: 64 groups x G 8, of which 47
unhinted, 4 / 5 / 8 at hint levels 1 / 2 / 3 (the first step of `docs/study`'s ghpo seed 0; the mean over
all steps of its three seeds is 44.8 / 6.3 / 4.3 / 8.6, as many hinted groups give or take one). Prompts are
the tiny model's chat template over real training problems, hinted as the rollout server hints them;
completions are the worked-solution targets the model was warm-started on, with advantages +-1. Only the
shapes matter to the time, and these are the real ones.

    .venv/bin/python bench/trainer_group_by_length.py [--steps 8] [--micro-batch-size 64]

Prints the median seconds per step of each and the ratio (batch order / grouped). `--quick`: G 2, one timed
step per arm.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import random
import statistics
import time

import torch

from ghpo.shared.bench_results import emit
from ghpo.shared.schemas.rollout import Batch, Completion, ScoredGroup

LEVEL_MIX = {0: 47, 1: 4, 2: 5, 3: 8}  # groups per final hint level in a 64-group GHPO batch (docstring)
LADDER = (0.25, 0.5, 0.75)


def ghpo_batch(tokenizer, seed: int, group_size: int) -> Batch:
    from ghpo.shared.algorithm.hints import hinted_problem_at_level
    from ghpo.shared.tasks import arith
    from ghpo.trainer.tiny.prompts import assistant_target

    rng = random.Random(seed)
    levels = [lvl for lvl, n in LEVEL_MIX.items() for _ in range(n)]
    rng.shuffle(levels)  # hinted groups land anywhere in the batch, as they come out of the rollout server
    records = arith.make_split("train", len(levels), [2], seed=seed)
    groups = []
    for i, (record, level) in enumerate(zip(records, levels, strict=True)):
        problem = hinted_problem_at_level(record.problem, record.solution, level, LADDER)
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": problem}], add_generation_prompt=True, tokenize=False
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        target = tokenizer(assistant_target(record), add_special_tokens=False)["input_ids"]
        completions = [
            Completion(
                token_ids=[*target, tokenizer.eos_token_id],
                behaviour_logprobs=[-1.0] * (len(target) + 1),
                finish_reason="stop",
                reward=float(k % 2),
                accuracy=float(k % 2),
                advantage=1.0 if k % 2 else -1.0,
                policy_version=0,
            )
            for k in range(group_size)
        ]
        groups.append(
            ScoredGroup(
                group_id=f"g{i}",
                prompt_id=record.id,
                epoch=0,
                hint_level=level,
                hint_ratio=0.0 if level == 0 else LADDER[level - 1],
                prompt_token_ids=prompt_ids,
                completions=completions,
                created_at=1.0,
            )
        )
    return Batch(batch_id=f"ghpo-shaped-{seed}", groups=groups, created_at=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=8, help="timed steps per arm")
    parser.add_argument("--micro-batch-size", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="G 2, one timed step per arm")
    args = parser.parse_args()
    steps = 1 if args.quick else args.steps
    group_size = 2 if args.quick else args.group_size
    torch.set_num_threads(1)

    from transformers import AutoTokenizer

    from ghpo.trainer.tiny import ensure_tiny_model
    from ghpo.trainer.train.batches import micro_batches
    from ghpo.trainer.train.config import parse_config
    from ghpo.trainer.train.engine import build_engine
    from ghpo.trainer.train.step import train_step

    model_dir = str(ensure_tiny_model())
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batches = [ghpo_batch(tokenizer, seed, group_size) for seed in range(3)]

    def engine(group_by_length: bool):
        return build_engine(
            parse_config(
                {
                    "model": {"path": model_dir},
                    "optim": {"lr": 1e-4, "warmup_steps": 0},
                    "deepspeed": {
                        "micro_batch_size": args.micro_batch_size,
                        "group_by_length": group_by_length,
                    },
                    "run": {"steps": steps + 1, "checkpoint_dir": "/tmp/unused", "num_threads": 1},
                }
            )
        )

    arms = {"batch order": engine(False), "grouped by length": engine(True)}
    pad = arms["batch order"].pad_token_id
    cells = {
        name: sum(
            mb.input_ids.numel()
            for mb in micro_batches(batches[0], args.micro_batch_size, pad, group_by_length=grouped)
        )
        for name, grouped in (("batch order", False), ("grouped by length", True))
    }
    seconds: dict[str, list[float]] = {name: [] for name in arms}
    for i in range(steps + 1):  # step 0 warms both up and is not timed
        batch = batches[i % len(batches)]
        order = list(arms.items())
        for name, train in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            train_step(train, batch, 0)
            if i:
                seconds[name].append(time.perf_counter() - start)
    median = {name: statistics.median(times) for name, times in seconds.items()}
    in_order, grouped = median["batch order"], median["grouped by length"]
    rows = sum(len(g.completions) for g in batches[0].groups)
    print(
        f"GHPO-shaped batch: {len(batches[0].groups)} groups ({LEVEL_MIX[0]} unhinted), {rows} rows, "
        f"micro-batches of {args.micro_batch_size}; {steps} timed steps per arm"
    )
    for name in arms:
        print(f"{name}: median {median[name]:.2f} s/step, {cells[name]:,} token cells padded")
    print(f"ratio batch order / grouped: {in_order / grouped:.2f}x")
    emit(
        "trainer.ghpo_steps_per_s_grouped_by_length",
        1.0 / grouped,
        "steps/s",
        baseline="same step on the same GHPO-shaped batch, rows in batch order",
        baseline_value=1.0 / in_order,
        target="reported",
    )


if __name__ == "__main__":
    main()
