"""Bytes of one weight update with LoRA ([model.lora], adapters only) against a full update, same model.

Builds the trainer's DeepSpeed engine twice on the same model folder, once with LoRA (rank `--rank`,
alpha 2 x rank, every linear layer: target_modules = ["all-linear"]) and once without, gathers what a
push sends (`ghpo.trainer.train.weights.full_state_dict`: the adapters under their wire names, or every
weight the checkpoint stores) and packs it into the HTTP update's chunks (`push_http.pack_chunks`, 64 MiB
chunks as `services.weight_bucket_bytes` defaults to), then prints the bytes of each update (chunk bodies,
what `ghpo_trainer_weight_sync_bytes` counts) and the ratio LoRA / full. fp32, as pushed on CPU.

    .venv/bin/python bench/lora_update_bytes.py [--model smollm2] [--rank 16]

`--model smollm2` (default) is SmolLM2-135M-Instruct (`ghpo models prepare smollm2`, converted on first
use); `--quick` uses the tiny model shipped in trainer/tiny/model. No service is started: the figure is the
payload, which does not depend on the transport.
"""

from __future__ import annotations

from ghpo.shared.bench_results import require_extras

require_extras(__file__)  # a missing extra: one line naming it, before an import fails

import argparse
import tempfile

import torch

from ghpo.shared.bench_results import emit

QUICK = {"model": "tiny"}
CHUNK_BYTES = 64 * 1024 * 1024


def update_bytes(model_dir: str, lora: dict | None) -> tuple[int, int, int]:
    """(bytes of the update's chunks, tensors sent, parameters of the model) for one push."""
    from ghpo.trainer.train.config import parse_config
    from ghpo.trainer.train.engine import build_engine
    from ghpo.trainer.train.push_http import pack_chunks
    from ghpo.trainer.train.weights import full_state_dict

    model = {"path": model_dir, **({"lora": lora} if lora else {})}
    with tempfile.TemporaryDirectory() as checkpoints:
        config = parse_config(
            {"model": model, "run": {"steps": 1, "checkpoint_dir": checkpoints, "num_threads": 1}}
        )
        train = build_engine(config)
        tensors = full_state_dict(train, CHUNK_BYTES)
        chunks = pack_chunks(tensors, CHUNK_BYTES)
        params = sum(p.numel() for p in train.module.parameters())
    return sum(len(c.body) for c in chunks), len(tensors), params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("smollm2", "tiny"), default="smollm2")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK} unless given")
    args = parser.parse_args()
    if args.quick:  # quick changes the defaults only; explicit flags still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args()
    torch.set_num_threads(1)
    if args.model == "smollm2":
        from ghpo.trainer.models import prepare_smollm2

        model_dir, name = str(prepare_smollm2()), "SmolLM2-135M-Instruct"
    else:
        from ghpo.trainer.tiny import ensure_tiny_model

        model_dir, name = str(ensure_tiny_model()), "tiny model"
    lora = {"rank": args.rank, "alpha": 2.0 * args.rank, "target_modules": ["all-linear"]}
    full, full_tensors, params = update_bytes(model_dir, None)
    adapter, adapter_tensors, _ = update_bytes(model_dir, lora)
    mib = 1024 * 1024
    print(f"{name}: {params / 1e6:.1f}M parameters")
    print(f"full update: {full / mib:.1f} MiB in {full_tensors} tensors")
    print(f"LoRA r={args.rank} on all linear layers: {adapter / mib:.2f} MiB in {adapter_tensors} tensors")
    print(f"ratio LoRA / full: {adapter / full:.4f} ({100 * adapter / full:.2f}%)")
    emit(
        f"trainer.lora_r{args.rank}_update_mib",
        adapter / mib,
        "MiB",
        baseline="full weight update of the same model",
        baseline_value=full / mib,
        note=f"{name}, fp32, all linear layers; ratio {adapter / full:.4f}",
    )


if __name__ == "__main__":
    main()
