"""Trainer throughput on CPU: completion tokens/s of the DeepSpeed trainer step (ghpo.trainer.train.step)
against a plain PyTorch loop with the same model, batches, loss (ghpo.trainer.core.loss) and optimizer
(AdamW, same groups and LR schedule), in one process, one torch thread each.

Batches are real: the tiny model served by the inference service (vLLM CPU build) samples them and the
verifier's scoring rewards them (ghpo.local.batches); `--batches FILE` reuses a recorded set
(JSON lines) instead. The two loops alternate step by step so machine noise hits both alike; medians.

    .venv/bin/python bench/trainer_throughput.py [--steps 12] [--zero-stage 0] [--batches FILE]

Target: DeepSpeed / plain >= 0.8. `--quick`: 2 sampled batches, 3 timed steps per loop.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import statistics
import time
from pathlib import Path

import torch

from ghpo.shared.bench_results import emit
from ghpo.shared.schemas.rollout import Batch


def recorded_batches(path: Path | None, n: int) -> list[Batch]:
    if path is not None and path.exists():
        return [Batch.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]
    from ghpo.local.batches import inference_service, real_batches
    from ghpo.trainer.tiny import ensure_tiny_model

    with inference_service(ensure_tiny_model()) as url:
        batches = real_batches(url, n_batches=n, groups=8, group_size=8, max_tokens=96, seed=3)
    if path is not None:
        path.write_text("".join(b.model_dump_json() + "\n" for b in batches))
    return batches


def plain_loop(config, model_dir: str, pad_token_id: int):
    """The baseline: the same step with no DeepSpeed."""
    from transformers import AutoModelForCausalLM

    from ghpo.trainer.core.loss import policy_loss
    from ghpo.trainer.train.batches import micro_batches
    from ghpo.trainer.train.engine import make_optimizer, make_scheduler
    from ghpo.trainer.train.step import completion_logps

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    model.train()
    optimizer = make_optimizer(model, config.optim)
    scheduler = make_scheduler(optimizer, config.optim, config.run.steps)

    def step(batch: Batch, version: int) -> int:
        mbs = micro_batches(batch, config.deepspeed.micro_batch_size, pad_token_id)
        for mb in mbs:
            logps, _ = completion_logps(model, mb)
            stale = (mb.policy_versions < version).view(-1, 1)
            behaviour = torch.where(stale, mb.behaviour_logps, logps.detach())
            loss, _ = policy_loss(
                logps, None, mb.advantages, mb.completion_mask, config.ghpo,
                behaviour_logps=behaviour, hinted=mb.hinted, truncated=mb.truncated, num_micro_batches=len(mbs),
            )  # fmt: skip
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        return sum(mb.tokens for mb in mbs)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=12, help="timed steps per loop")
    parser.add_argument("--zero-stage", type=int, default=0, choices=[0, 1, 2, 3])
    parser.add_argument("--micro-batch-size", type=int, default=16)
    parser.add_argument("--batches", type=Path, help="recorded batches (JSON lines); written if absent")
    parser.add_argument("--quick", action="store_true", help="2 sampled batches, 3 steps")
    args = parser.parse_args()
    steps = 3 if args.quick else args.steps
    torch.set_num_threads(1)

    from ghpo.trainer.tiny import ensure_tiny_model
    from ghpo.trainer.train.batches import trainable
    from ghpo.trainer.train.config import parse_config
    from ghpo.trainer.train.engine import build_engine
    from ghpo.trainer.train.step import train_step

    model_dir = str(ensure_tiny_model())
    batches = [b for b in recorded_batches(args.batches, 2 if args.quick else 6) if trainable(b)]
    assert batches, "no trainable batch was sampled"
    config = parse_config(
        {
            "model": {"path": model_dir},
            "optim": {"lr": 1e-4, "warmup_steps": 0},
            "deepspeed": {
                "zero_stage": args.zero_stage,
                "precision": "fp32",
                "micro_batch_size": args.micro_batch_size,
            },
            "run": {"steps": steps + 1, "checkpoint_dir": "/tmp/unused", "num_threads": 1},
            "ghpo": {"tis_cap": 2.0},
        }
    )
    train = build_engine(config)
    plain = plain_loop(config, model_dir, train.pad_token_id)

    def deepspeed_step(batch: Batch, version: int) -> int:
        return train_step(train, batch, version).tokens

    rates: dict[str, list[float]] = {"deepspeed": [], "plain": []}
    for i in range(steps + 1):  # step 0 warms both up and is not timed
        batch = batches[i % len(batches)]
        order = [("deepspeed", deepspeed_step), ("plain", plain)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            tokens = fn(batch, i)
            if i:
                rates[name].append(tokens / (time.perf_counter() - start))
    ds, base = statistics.median(rates["deepspeed"]), statistics.median(rates["plain"])
    rows = sum(len(g.completions) for g in batches[0].groups)
    print(f"batches: {len(batches)} distinct, {rows} completions each; {steps} timed steps per loop")
    print(f"DeepSpeed ZeRO-{args.zero_stage} fp32 trainer step: median {ds:,.0f} completion tokens/s")
    print(f"plain PyTorch loop (same model/batch/loss/AdamW): median {base:,.0f} completion tokens/s")
    print(f"ratio DeepSpeed / plain: {ds / base:.3f} (target >= 0.8)")
    emit(
        f"trainer.tokens_per_s_zero{args.zero_stage}",
        ds,
        "tokens/s",
        baseline="plain PyTorch loop, same model/batch/loss/optimizer",
        baseline_value=base,
        target=">= 0.8",
    )


if __name__ == "__main__":
    main()
