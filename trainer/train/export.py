"""The trained policy out of a checkpoint: a standard Hugging Face folder that transformers, vLLM and
`ghpo eval --model` load.

From one complete checkpoint (checkpoint.py's layout) and the model folder the run started from:
- the weights: under ZeRO 1-3, the fp32 master weights gathered from every rank's optimizer partitions
  (DeepSpeed's own `zero_to_fp32`); without ZeRO, the module's weights as DeepSpeed saved them;
- a fresh model built from the starting folder's config (fp32), the weights loaded strictly (every tensor
  must come from the checkpoint), tied embeddings tied again, written with `save_pretrained` as
  safetensors (a tied `lm_head` is stored once, as transformers expects);
- the starting folder's tokenizer (chat template included) and generation config;
- `ghpo_export.json`: the checkpoint, step and policy version it came from, and what the caller adds (the
  run's prompt template, which `ghpo eval --model` then uses by default).
The folder is written under a temporary name and renamed into place; an earlier export at the same place
is replaced, any other non-empty folder is refused.

A LoRA run's checkpoint holds the adapters alone: `export_adapter` writes them as a PEFT adapter folder
(loaded onto the starting folder's weights, exactly as trained), or with `merged` the merged model as above
and the adapter in its `adapter/` subfolder.

What it deliberately does not do: pick the run folder's files (ghpo.local.export does), convert dtypes
other than to fp32, or upload anything.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ghpo.trainer.train.config import LoraSection

# Imports of torch, transformers and the checkpoint layout wait for a function that needs them:
# `ghpo eval` reads EXPORT_INFO of a model folder without loading any of them.
EXPORT_INFO = "ghpo_export.json"
_MODEL_STATES = "mp_rank_00_model_states.pt"


class ExportError(RuntimeError):
    """The checkpoint or the destination cannot be exported to; the message says which and why."""


def latest_checkpoint(checkpoint_dir: Path) -> Path | None:
    """The complete checkpoint `latest` names in `checkpoint_dir`, or None when there is none."""
    from ghpo.trainer.train.checkpoint import LATEST

    marker = Path(checkpoint_dir) / LATEST
    if not marker.is_file():
        return None
    folder = marker.parent / marker.read_text().strip()
    return folder if folder.is_dir() else None


def read_export_info(model_dir: Path) -> dict[str, Any] | None:
    """The `ghpo_export.json` of an exported folder, or None for any other model folder."""
    path = Path(model_dir) / EXPORT_INFO
    return json.loads(path.read_text()) if path.is_file() else None


def checkpoint_weights(checkpoint: Path) -> dict[str, Any]:
    """Full fp32 parameters of the policy saved in `checkpoint` (one of checkpoint.py's step folders)."""
    import torch

    from ghpo.trainer.train.checkpoint import DS_TAG

    ds_dir = Path(checkpoint) / "deepspeed"
    tag_dir = ds_dir / DS_TAG
    if not any(tag_dir.glob("*model_states.pt")):
        raise ExportError(f"{checkpoint}: no DeepSpeed model states in {tag_dir}")
    if any(tag_dir.glob("zero_pp_rank_*_optim_states.pt")):  # ZeRO 1-3: the masters, partitioned
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

        state = get_fp32_state_dict_from_zero_checkpoint(str(ds_dir), tag=DS_TAG)
    else:
        state = torch.load(tag_dir / _MODEL_STATES, map_location="cpu", weights_only=False)["module"]
    return {name: tensor.detach().to(torch.float32).contiguous() for name, tensor in state.items()}


def _destination(out: Path) -> None:
    if out.exists() and any(out.iterdir()) and not (out / EXPORT_INFO).is_file():
        raise ExportError(f"{out} exists and is not an earlier ghpo export: choose an empty or new folder")


def export_checkpoint(
    checkpoint: Path, base_model: Path, out: Path, *, info: dict[str, Any] | None = None
) -> Path:
    """Write the policy of `checkpoint` as a Hugging Face folder at `out` (module docstring); returns it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    checkpoint, base_model, out = Path(checkpoint), Path(base_model), Path(out)
    _destination(out)
    weights = checkpoint_weights(checkpoint)
    config = AutoConfig.from_pretrained(base_model)
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as exc:  # another architecture than the starting folder's: say which keys
        raise ExportError(f"{checkpoint} does not fit the model in {base_model}: {exc}") from None
    model.tie_weights()
    return _publish(checkpoint, base_model, out, info, lambda tmp: model.save_pretrained(tmp))


def export_adapter(
    checkpoint: Path,
    base_model: Path,
    lora: LoraSection,
    out: Path,
    *,
    merged: bool = False,
    info: dict[str, Any] | None = None,
) -> Path:
    """A LoRA run's checkpoint out: the adapter as a PEFT folder at `out` (adapter_config.json,
    adapter_model.safetensors; `PeftModel.from_pretrained(base, out)` loads it), or with `merged` the
    merged model as a Hugging Face folder at `out` and the adapter in `out/adapter`; tokenizer, generation
    config and ghpo_export.json alongside. Returns `out`."""
    import torch
    from transformers import AutoModelForCausalLM

    from ghpo.trainer.train.lora import apply_lora

    checkpoint, base_model, out = Path(checkpoint), Path(base_model), Path(out)
    _destination(out)
    weights = checkpoint_weights(checkpoint)
    model = apply_lora(AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32), lora)
    adapters = {name for name, param in model.named_parameters() if param.requires_grad}
    missing = sorted(adapters - set(weights))  # every adapter from the checkpoint; the base from base_model
    if missing:
        raise ExportError(
            f"{checkpoint} does not hold the adapters [model.lora] describes on {base_model} "
            f"(no {missing[0]} and {len(missing) - 1} more)"
        )
    model.load_state_dict({name: weights[name] for name in adapters}, strict=False)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp / "adapter" if merged else tmp)
        if merged:
            model.merge_and_unload().save_pretrained(tmp)

    return _publish(checkpoint, base_model, out, {"lora": lora.model_dump(), **(info or {})}, write)


def _publish(
    checkpoint: Path, base_model: Path, out: Path, info: dict[str, Any] | None, write: Callable[[Path], None]
) -> Path:
    """`write(tmp)` the weights, add the tokenizer, generation config and ghpo_export.json, then rename
    the folder into place at `out` (replacing an earlier export there)."""
    from transformers import AutoTokenizer, GenerationConfig

    from ghpo.trainer.train.checkpoint import read_state

    state = read_state(checkpoint)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        write(tmp)
        AutoTokenizer.from_pretrained(base_model).save_pretrained(tmp)
        if (base_model / "generation_config.json").is_file():
            GenerationConfig.from_pretrained(base_model).save_pretrained(tmp)
        record = {
            "checkpoint": str(checkpoint),
            "step": state.step,
            "policy_version": state.policy_version,
            "base_model": str(base_model),
            "exported_at": time.time(),
            **(info or {}),
        }
        (tmp / EXPORT_INFO).write_text(json.dumps(record, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            shutil.rmtree(old)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
