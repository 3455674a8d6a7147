"""Worker of the two-process training-loop tests (run under `torch.distributed.run --nproc_per_node 2`):
the real `Trainer` loop (start, pull on rank 0 and broadcast, each rank trains its share, push, announce,
ack, checkpoint) over recorded batches, each rank with its own `ListSource` so the test sees which rank
pulled and acknowledged what. gloo on CPU, ZeRO-2, fp32, one thread per rank.

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/e2e/dist_loop_worker.py \\
        CONFIG_JSON BATCHES.jsonl OUT_DIR INFERENCE_URL|- NAN_RANK:NAN_STEP|-

With an inference URL, the loop pushes weights there (`WeightSync`, token from $GHPO_TRAINER_TOKEN).
`NAN_RANK:NAN_STEP` makes that rank's forward produce NaN logits while the trainer is at that step (a
PyTorch forward hook registered here, in the test's own worker: no hook in the trainer). Each rank writes
OUT_DIR/rank-R.json (what its source saw, its step and version, the stop message if any); rank 0 also
writes OUT_DIR/params.safetensors (the full parameters at the end).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # for tests.e2e.trainer_support

import torch
import torch.distributed as dist
from safetensors.torch import save_file

from ghpo.shared.schemas.rollout import Batch
from ghpo.trainer.train.checkpoint import Checkpointer
from ghpo.trainer.train.config import TrainConfig
from ghpo.trainer.train.engine import build_engine
from ghpo.trainer.train.loop import Trainer, TrainingStopped
from ghpo.trainer.train.weights import WeightSync, full_state_dict
from tests.e2e.trainer_support import ListSource


def main() -> None:
    config_json, batches_path, out_dir, inference_url, nan_at = sys.argv[1:6]
    torch.set_num_threads(1)
    config = TrainConfig.model_validate_json(config_json)
    batches = [Batch.model_validate_json(line) for line in Path(batches_path).read_text().splitlines()]
    train = build_engine(config)
    rank = dist.get_rank()
    source = ListSource(batches)
    sync = None
    if inference_url != "-":
        sync = WeightSync([inference_url], token=os.environ["GHPO_TRAINER_TOKEN"], bucket_bytes=256 * 1024)
    trainer = Trainer(train, source, Checkpointer(config.run.checkpoint_dir), weight_sync=sync)
    if nan_at != "-":
        nan_rank, nan_step = map(int, nan_at.split(":"))

        def glitch(module, inputs, output):
            if rank == nan_rank and trainer.step == nan_step:
                output.logits = output.logits * float("nan")
            return output

        train.module.register_forward_hook(glitch)
    trainer.start()
    message = None
    try:
        trainer.run()
    except TrainingStopped as exc:
        message = str(exc)
    latest = trainer.checkpointer.latest()
    record = {
        "rank": rank,
        "world": dist.get_world_size(),
        "pulled": source.position,
        "acked": source.acked,
        "announced": source.announced,
        "step": trainer.step,
        "policy_version": trainer.policy_version,
        "losses": [r.loss for r in trainer.history],
        "message": message,
        "latest": latest.name if latest is not None else None,
    }
    params = full_state_dict(train, bucket_bytes=1 << 20)
    if rank == 0:
        save_file(params, str(Path(out_dir) / "params.safetensors"))
    Path(out_dir, f"rank-{rank}.json").write_text(json.dumps(record))
    if sync is not None:
        sync.close()
    dist.barrier()


if __name__ == "__main__":
    main()
