"""The DeepSpeed engine around a Hugging Face causal LM: ZeRO stage, precision, gradient checkpointing,
micro-batching, AdamW and the warm-up + decay LR schedule, all from `TrainConfig`.

One process on CPU (gloo, no launcher needed: the rank environment is filled in when absent), or one
process per GPU under `deepspeed`/`torchrun`, which set RANK/WORLD_SIZE/LOCAL_RANK/MASTER_*. The
optimizer is `torch.optim.AdamW` (DeepSpeed's fused/CPU Adam would compile C++ on first use); weight
decay applies to matrices only, as Hugging Face's Trainer does. The number of micro-batches varies with
the batch, so the engine runs with gradient_accumulation_steps=1 and the step sets the accumulation
boundary itself. Deliberately not here: the loss (step.py), weight pushes (weights.py), checkpoint
layout (checkpoint.py).
"""

from __future__ import annotations

import math
import os
import random
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ghpo.trainer.train.config import LoraSection, OptimSection, TrainConfig

# DeepSpeed compiles its CPU comm op on first use into TORCH_EXTENSIONS_DIR, by default one folder under
# ~/.cache shared by every environment of the user: two virtualenvs at different paths (a checkout and a
# CI clone) then rebuild each other's op on every start, 1-5 minutes each under a lock. One per environment,
# unless the user chose a folder.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))


def lr_factor(step: int, optim: OptimSection, total_steps: int) -> float:
    """Multiplier of optim.lr after `step` optimizer steps (LambdaLR convention)."""
    if optim.warmup_steps and step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    if optim.schedule == "constant":
        return 1.0
    span = max(1, total_steps - optim.warmup_steps)
    progress = min(1.0, (step - optim.warmup_steps) / span)
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if optim.schedule == "cosine" else 1.0 - progress
    return optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * decay


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on matrices (dim >= 2), none on biases and norms."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.dim() >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # DeepSpeed drops an empty group (LoRA adapters are all matrices): the LR scheduler must not see it
    return [group for group in groups if group["params"]]


def make_optimizer(model: torch.nn.Module, optim: OptimSection) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, optim.weight_decay), lr=optim.lr, betas=optim.betas, eps=optim.eps
    )


def make_scheduler(optimizer: torch.optim.Optimizer, optim: OptimSection, total_steps: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, optim, total_steps))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def init_distributed() -> None:
    """Join (or, alone, create) the process group: gloo on CPU, NCCL on GPU."""
    import deepspeed
    import torch.distributed as dist

    if dist.is_initialized():
        return
    alone = "MASTER_PORT" not in os.environ and os.environ.get("WORLD_SIZE", "1") == "1"
    for name, value in (
        ("RANK", "0"),
        ("LOCAL_RANK", "0"),
        ("WORLD_SIZE", "1"),
        ("MASTER_ADDR", "127.0.0.1"),
        # DeepSpeed only checks that the launcher's variables exist; alone, no port is ever bound.
        ("MASTER_PORT", "0"),
    ):
        os.environ.setdefault(name, value)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    if alone:
        # One process, no launcher: a group over an in-memory store. A TCP store needs a free port, and
        # "find a free port, close it, bind it again" lost races to other processes' ephemeral ports.
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    deepspeed.init_distributed(dist_backend=backend, verbose=False)


def deepspeed_config(config: TrainConfig) -> dict[str, Any]:
    ds = config.deepspeed
    return {
        "train_micro_batch_size_per_gpu": ds.micro_batch_size,
        "gradient_accumulation_steps": 1,  # the step sets the boundary: micro-batches per batch vary
        "gradient_clipping": config.optim.max_grad_norm,
        "zero_optimization": {"stage": ds.zero_stage},
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": ds.precision == "fp16", "initial_scale_power": 16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


@dataclass
class TrainEngine:
    """The DeepSpeed engine and what the step needs to know about the model."""

    engine: Any  # deepspeed.DeepSpeedEngine
    config: TrainConfig
    pad_token_id: int

    @property
    def module(self) -> torch.nn.Module:
        return self.engine.module

    @property
    def lora(self) -> bool:
        """Whether only LoRA adapters train (and so checkpoint and travel to inference)."""
        return self.config.model.lora is not None

    @property
    def zero_stage(self) -> int:
        return self.config.deepspeed.zero_stage

    @property
    def global_steps(self) -> int:
        return int(self.engine.global_steps)

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def apply_lr_schedule(self) -> None:
        """Set the optimizer's lr from this config's schedule at the scheduler's step. After a resume the
        optimizer state holds the lr of the run that saved it; a run resumed with another run.steps
        (extended) follows its own schedule from the restored step on."""
        scheduler = self.engine.lr_scheduler
        factor = lr_factor(scheduler.last_epoch, self.config.optim, self.config.run.steps)
        for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base * factor
        scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def load_model(path: str, gradient_checkpointing: bool, lora: LoraSection | None = None) -> torch.nn.Module:
    """The policy in fp32; with `lora`, wrapped by PEFT so only its adapters require gradients."""
    from transformers import AutoModelForCausalLM

    # fp32 master weights whatever the compute precision: DeepSpeed casts for bf16/fp16 itself.
    model = AutoModelForCausalLM.from_pretrained(os.path.expanduser(path), dtype=torch.float32)
    model.config.use_cache = False
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if lora is not None:
        from ghpo.trainer.train.lora import apply_lora

        model = apply_lora(model, lora)
    model.train()
    return model


def build_engine(config: TrainConfig) -> TrainEngine:
    """Seeded, initialised engine. Under ZeRO-3 the model is loaded whole, then partitioned (fine while it
    fits one host's memory; larger models would load under deepspeed.zero.Init)."""
    import deepspeed

    if config.run.num_threads:
        torch.set_num_threads(config.run.num_threads)
    init_distributed()
    seed_everything(config.run.seed)
    model = load_model(config.model.path, config.deepspeed.gradient_checkpointing, config.model.lora)
    optimizer = make_optimizer(model, config.optim)
    scheduler = make_scheduler(optimizer, config.optim, config.run.steps)
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=deepspeed_config(config)
    )
    pad = model.config.pad_token_id
    if pad is None:
        pad = model.config.eos_token_id if isinstance(model.config.eos_token_id, int) else 0
    return TrainEngine(engine=engine, config=config, pad_token_id=int(pad))
