"""LoRA through PEFT: wrap the policy so only adapters train, and name adapter tensors the way they travel.

`apply_lora` wraps a Hugging Face causal LM with `peft.get_peft_model` from `[model.lora]`: the base
weights are frozen, so the optimizer, its state and the checkpoints hold the adapters alone. Each adapter
adds `scaling * B @ A` to the weight of the linear layer it sits on (scaling = alpha / rank).

Wire names (`wire_name`): the base layer's checkpoint name with `.lora_A.weight` / `.lora_B.weight` in
place of `.weight`, e.g. `model.layers.0.self_attn.q_proj.lora_B.weight` for the base weight
`model.layers.0.self_attn.q_proj.weight`: what a weight update carries, and what the inference service
merges (ghpo.services.inference.adapters). PEFT's own adapter files add `base_model.model.` in front
(export.py writes them with PEFT). Not here: pushing (weights.py), merging at inference, exporting
(export.py).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ghpo.trainer.train.config import ConfigError, LoraSection

_PEFT_PREFIX = "base_model.model."
# a parameter of PEFT's wrapped model: ...<layer>.lora_A.<adapter name>.weight
_ADAPTER = re.compile(r"^(?P<layer>.+)\.(?P<part>lora_[AB])\.[^.]+\.weight$")


def lora_config(lora: LoraSection) -> Any:
    from peft import LoraConfig

    targets = lora.target_modules
    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else list(targets),
        bias="none",
        task_type="CAUSAL_LM",
    )


def apply_lora(model: torch.nn.Module, lora: LoraSection) -> torch.nn.Module:
    """`model` wrapped by PEFT with adapters on `lora.target_modules`; every base weight frozen.
    ConfigError naming the key when a target module is not in the model."""
    from peft import NoMatchingPeftModuleError, get_peft_model

    try:
        return get_peft_model(model, lora_config(lora))
    except NoMatchingPeftModuleError as exc:
        raise ConfigError(f"model.lora.target_modules: {exc}") from None


def wire_name(param_name: str) -> str | None:
    """The wire name of a PEFT adapter parameter (module docstring), None for any other parameter."""
    match = _ADAPTER.match(param_name.removeprefix(_PEFT_PREFIX))
    return None if match is None else f"{match['layer']}.{match['part']}.weight"


def adapter_parameters(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    """(wire name, parameter) of every adapter tensor, in parameter order."""
    named = []
    for name, param in module.named_parameters():
        wire = wire_name(name)
        if wire is not None:
            named.append((wire, param))
    return named
