"""LoRA adapter updates on the inference side: what an announced adapter must look like, and the merge.

A LoRA run pushes only its adapters (`WeightUpdateBegin.adapter`): for a layer whose checkpoint weight is
`<layer>.weight` [out, in], the tensors `<layer>.lora_A.weight` [r, in] and `<layer>.lora_B.weight`
[out, r]. `check_adapter_specs` refuses anything else with a 4xx naming the bad `tensors.<i>` field.
At commit the engine serves `base + scaling * B @ A` for each adapted layer, computed by
`merged_weights` from the pristine base weights (the model folder the service started from, never
written to) and not from what is served, so each adapter version replaces the previous one exactly;
layers the adapter does not carry get their base weight back.

Why a merge and not vLLM's LoRA serving (`enable_lora` + a `LoRARequest` per version): see
docs/architecture.md (Inference). Not here: chunk bytes, checksums, versions (weights.py), the engine call
(vllm_engine.py, vllm_worker.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ghpo.services.inference.specs import FLOAT_DTYPES, fail
from ghpo.shared.errors import Unprocessable
from ghpo.shared.schemas.inference import AdapterSpec, TensorSpec

# Written into an adapter update's staging folder at `begin`: how the engine knows to merge at commit.
ADAPTER_FILE = "adapter.json"
_PARTS = (".lora_A.weight", ".lora_B.weight")


def _bad(message: str, field: str) -> Exception:
    return fail("bad_spec", Unprocessable(message, field=field))


def check_adapter_specs(tensors: list[TensorSpec], expected: dict[str, list[int]]) -> dict[str, TensorSpec]:
    """{name: spec} of an announced LoRA adapter, or a 4xx naming the bad `tensors.<i>` field."""
    specs: dict[str, TensorSpec] = {}
    ranks: dict[str, tuple[int, str]] = {}  # layer -> (rank, field that set it)
    for i, spec in enumerate(tensors):
        where = f"tensors.{i}"
        part = next((p for p in _PARTS if spec.name.endswith(p)), None)
        if part is None:
            raise _bad(
                f"adapter tensor {spec.name!r} is not '<layer>.lora_A.weight' or '.lora_B.weight'",
                f"{where}.name",
            )
        if spec.name in specs:
            raise _bad(f"tensor {spec.name!r} is listed twice", f"{where}.name")
        layer = spec.name.removesuffix(part)
        base = expected.get(f"{layer}.weight")
        if base is None or len(base) != 2:
            raise _bad(
                f"adapter tensor {spec.name!r}: the served checkpoint has no matrix {layer}.weight",
                f"{where}.name",
            )
        if spec.dtype not in FLOAT_DTYPES:
            raise _bad(
                f"tensor {spec.name!r} has dtype {spec.dtype}; adapters must be one of {sorted(FLOAT_DTYPES)}",
                f"{where}.dtype",
            )
        out, inp = base
        a_side = part == _PARTS[0]
        if len(spec.shape) != 2 or (spec.shape[1] != inp if a_side else spec.shape[0] != out):
            want = f"[rank, {inp}]" if a_side else f"[{out}, rank]"
            raise _bad(
                f"tensor {spec.name!r} has shape {spec.shape}; {layer}.weight is {base}, so {want}",
                f"{where}.shape",
            )
        rank = spec.shape[0] if a_side else spec.shape[1]
        seen = ranks.setdefault(layer, (rank, where))
        if seen[0] != rank:
            raise _bad(
                f"tensor {spec.name!r} has rank {rank}, its pair in {seen[1]} has rank {seen[0]}",
                f"{where}.shape",
            )
        specs[spec.name] = spec
    unpaired = sorted(name for name in specs if _pair(name) not in specs)
    if unpaired:
        raise _bad(f"adapter tensor {unpaired[0]!r} comes without {_pair(unpaired[0])!r}", "tensors")
    return specs


def _pair(name: str) -> str:
    a, b = _PARTS
    return name.removesuffix(a) + b if name.endswith(a) else name.removesuffix(b) + a


def write_marker(folder: Path, adapter: AdapterSpec) -> None:
    (folder / ADAPTER_FILE).write_text(adapter.model_dump_json())


def read_marker(folder: Path) -> AdapterSpec | None:
    """The adapter a staged update folder holds, or None for a full set of weights."""
    path = Path(folder) / ADAPTER_FILE
    return AdapterSpec.model_validate(json.loads(path.read_text())) if path.is_file() else None


def _tensors(folder: Path) -> dict[str, Any]:
    from safetensors import safe_open

    tensors: dict[str, Any] = {}
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:
            tensors.update({name: f.get_tensor(name) for name in f.keys()})  # noqa: SIM118
    return tensors


def merged_weights(base_folder: Path, adapter_folder: Path, scaling: float) -> Iterator[tuple[str, Any]]:
    """Every tensor of the base checkpoint, in its files' order, with `scaling * B @ A` added (in fp32,
    then cast back to the base tensor's dtype) to each layer the adapter in `adapter_folder` carries."""
    import torch
    from safetensors import safe_open

    adapter = _tensors(adapter_folder)
    pairs = {
        name.removesuffix(_PARTS[0]) + ".weight": (adapter[name], adapter[_pair(name)])
        for name in adapter
        if name.endswith(_PARTS[0])
    }
    for path in sorted(Path(base_folder).glob("*.safetensors")):
        with safe_open(path, framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensor = f.get_tensor(name)
                if name in pairs:
                    a, b = pairs[name]
                    delta = scaling * (b.to(torch.float32) @ a.to(torch.float32))
                    tensor = (tensor.to(torch.float32) + delta).to(tensor.dtype)
                yield name, tensor
