"""Worker of the two-process trainer tests (run under `torch.distributed.run --nproc_per_node 2`): a ZeRO-3
engine sharded over both ranks takes one step on a recorded batch; then each rank walks the bucketed
gather (`gather_buckets`, one GatheredParameters per bucket) while rank 0 broadcasts every bucket with
`broadcast_buckets`' wire format and rank 1 receives it like an inference worker would and compares it
with its own gathered copy. Writes rank-0 results as JSON to argv[4]. gloo on CPU, NCCL on GPU.

    python -m torch.distributed.run --nproc_per_node 2 tests/e2e/trainer_dist_worker.py \\
        MODEL_DIR BATCHES.jsonl cpu|cuda OUT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from ghpo.shared.schemas.rollout import Batch
from ghpo.trainer.train.config import parse_config
from ghpo.trainer.train.engine import build_engine
from ghpo.trainer.train.step import train_step
from ghpo.trainer.train.weights import gather_buckets, receive_buckets


def main() -> None:
    model_dir, batches_path, device, out = sys.argv[1:5]
    torch.set_num_threads(1)
    batch = Batch.model_validate_json(Path(batches_path).read_text().splitlines()[0])
    config = parse_config(
        {
            "model": {"path": model_dir},
            "optim": {"lr": 1e-3, "warmup_steps": 0},
            "deepspeed": {
                "zero_stage": 3,
                "precision": "bf16" if device == "cuda" else "fp32",
                "micro_batch_size": 8,
            },
            "run": {"steps": 2, "checkpoint_dir": "/tmp/unused", "num_threads": 1},
        }
    )
    train = build_engine(config)
    rank = dist.get_rank()
    result = train_step(train, batch, policy_version=0)
    sharded = all(p.ds_tensor.numel() < p.ds_numel for p in train.module.parameters() if p.ds_numel > 1)
    shapes = [(n, list(p.ds_shape)) for n, p in train.module.named_parameters()]
    bucket_bytes = 256 * 1024
    received = receive_buckets(shapes, None, 0, bucket_bytes, torch.float32, device) if rank == 1 else None
    buckets = mismatched = 0
    for bucket in gather_buckets(train, bucket_bytes):
        buckets += 1
        if rank == 0:
            flat = torch.cat([t.reshape(-1) for t in bucket.values()]).to(device)
            dist.broadcast(flat, src=0)
        else:
            got = next(received)
            mismatched += sum(not torch.equal(got[k].cpu(), bucket[k]) for k in bucket)
    verdict = torch.tensor([mismatched], device=device)
    dist.all_reduce(verdict)
    if rank == 0:
        Path(out).write_text(
            json.dumps(
                {
                    "loss": result.loss,
                    "grad_norm": result.grad_norm,
                    "sharded": sharded,
                    "buckets": buckets,
                    "params": len(shapes),
                    "mismatched": int(verdict.item()),
                }
            )
        )
    dist.barrier()


if __name__ == "__main__":
    main()
