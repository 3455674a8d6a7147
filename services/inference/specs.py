"""What a weight update must look like: the served checkpoint's tensor names and shapes, float dtypes.

Reads a model folder's safetensors headers (never the tensors) to learn the names and shapes every update
must carry, and checks an announced tensor list against them, raising a 4xx that names the bad
`tensors.<i>` field. Shared by the HTTP update path (weights.py) and the NCCL path (nccl_api.py).
Not here: chunk bytes, checksums, staging (weights.py, slices.py).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from ghpo.services.inference import metrics
from ghpo.shared.errors import Unprocessable
from ghpo.shared.schemas.inference import TensorSpec

# safetensors header dtype codes <-> wire names
_ST_DTYPES = {
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "F64": "float64",
    "I64": "int64",
    "I32": "int32",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}
FLOAT_DTYPES = frozenset({"float32", "float16", "bfloat16"})


def read_safetensors_header(path: Path) -> dict[str, tuple[str, list[int]]]:
    """{name: (dtype, shape)} from a safetensors file's JSON header, without reading the tensors."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    return {name: (_ST_DTYPES.get(v["dtype"], v["dtype"]), list(v["shape"])) for name, v in header.items()}


def checkpoint_spec(model_dir: Path) -> dict[str, list[int]]:
    """{tensor name: shape} of a model folder's safetensors files: the names an update must send."""
    spec: dict[str, list[int]] = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        spec.update({name: shape for name, (_, shape) in read_safetensors_header(path).items()})
    if not spec:
        raise FileNotFoundError(f"no *.safetensors files in {model_dir}")
    return spec


def fail(reason: str, exc: Exception) -> Exception:
    metrics.UPDATE_FAILURES.labels(reason=reason).inc()
    return exc


def check_specs(tensors: list[TensorSpec], expected: dict[str, list[int]]) -> dict[str, TensorSpec]:
    """{name: spec} of an announced full set of weights, or a 4xx naming the bad `tensors.<i>` field."""
    specs: dict[str, TensorSpec] = {}
    for i, spec in enumerate(tensors):
        where = f"tensors.{i}"
        if spec.name in specs:
            raise fail(
                "bad_spec", Unprocessable(f"tensor {spec.name!r} is listed twice", field=f"{where}.name")
            )
        shape = expected.get(spec.name)
        if shape is None:
            raise fail(
                "bad_spec",
                Unprocessable(
                    f"unknown tensor name {spec.name!r} (not in the served checkpoint)",
                    field=f"{where}.name",
                ),
            )
        if spec.shape != shape:
            raise fail(
                "bad_spec",
                Unprocessable(
                    f"tensor {spec.name!r} has shape {spec.shape}, the model expects {shape}",
                    field=f"{where}.shape",
                ),
            )
        if spec.dtype not in FLOAT_DTYPES:
            raise fail(
                "bad_spec",
                Unprocessable(
                    f"tensor {spec.name!r} has dtype {spec.dtype}; weights must be one of {sorted(FLOAT_DTYPES)}",
                    field=f"{where}.dtype",
                ),
            )
        specs[spec.name] = spec
    missing = sorted(set(expected) - set(specs))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise fail(
            "bad_spec", Unprocessable(f"update must carry every weight; missing {shown}", field="tensors")
        )
    return specs
