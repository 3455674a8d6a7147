"""Versioned weight updates pushed over HTTP: validation and on-disk staging, engine-independent.

Protocol (schemas in ghpo.shared.schemas.inference): `begin` announces a version, every tensor (name,
dtype, shape), the byte count, chunk count and the SHA-256 of all chunk bodies in index order; each
`chunk` is a safetensors file as raw bytes with its own SHA-256; `commit` applies the update only if
every chunk and tensor arrived and the overall checksum matches. Checked, each refused with a 4xx naming
the problem before anything is served: unknown/missing tensor names, shapes, non-float dtypes, a tensor
sent twice or not announced, NaN/Inf values, bad chunk bytes or checksum, a version not newer than the
served one (409). Chunks are written to a staging folder as they arrive (memory stays one chunk per
request), and that folder is what the engine loads; a retried chunk with identical bytes is accepted
again as a no-op. One update is pending at a time: a new `begin` discards the pending one (the trainer
restarting an interrupted push). Not here: HTTP, the drain of in-flight requests (engine.UpdateGate).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ghpo.services.inference import metrics
from ghpo.shared.errors import Conflict, NotFound, PayloadTooLarge, Unprocessable
from ghpo.shared.schemas.inference import TensorSpec, WeightUpdateBegin

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


def _fail(reason: str, exc: Exception) -> Exception:
    metrics.UPDATE_FAILURES.labels(reason=reason).inc()
    return exc


@dataclass
class PendingUpdate:
    update_id: str
    begin: WeightUpdateBegin
    folder: Path
    specs: dict[str, TensorSpec]
    chunks: dict[int, str] = field(default_factory=dict)  # index -> sha256
    chunk_bytes: dict[int, int] = field(default_factory=dict)
    received: set[str] = field(default_factory=set)

    def missing_chunks(self) -> list[int]:
        return [i for i in range(self.begin.num_chunks) if i not in self.chunks]


def validate_chunk(body: bytes, checksum: str, pending: PendingUpdate, index: int) -> set[str]:
    """The tensor names in a chunk body, or a 4xx naming what is wrong. CPU work: run off the loop."""
    import torch
    from safetensors.torch import load

    if hashlib.sha256(body).hexdigest() != checksum:
        raise _fail(
            "bad_chunk",
            Unprocessable(f"chunk {index}: body does not match its checksum (truncated?)", field="checksum"),
        )
    try:
        tensors = load(body)
    except Exception as exc:  # safetensors raises its own error type for malformed bytes
        raise _fail(
            "bad_chunk", Unprocessable(f"chunk {index}: not a safetensors file: {exc}", field="body")
        ) from exc
    if not tensors:
        raise _fail("bad_chunk", Unprocessable(f"chunk {index}: holds no tensors", field="body"))
    names = set()
    for name, tensor in tensors.items():
        spec = pending.specs.get(name)
        if spec is None:
            raise _fail(
                "bad_chunk",
                Unprocessable(f"chunk {index}: tensor {name!r} was not announced in begin", field="body"),
            )
        if name in pending.received:
            raise _fail(
                "bad_chunk",
                Conflict(f"chunk {index}: tensor {name!r} already arrived in another chunk", field="body"),
            )
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype != spec.dtype or list(tensor.shape) != spec.shape:
            raise _fail(
                "bad_chunk",
                Unprocessable(
                    f"chunk {index}: tensor {name!r} is {dtype}{list(tensor.shape)}, announced "
                    f"{spec.dtype}{spec.shape}",
                    field="body",
                ),
            )
        if not bool(torch.isfinite(tensor).all()):
            raise _fail(
                "bad_chunk",
                Unprocessable(f"chunk {index}: tensor {name!r} has NaN or Inf values", field="body"),
            )
        names.add(name)
    return names


class WeightUpdates:
    """Pending-update bookkeeping for one served model; the served version lives in the `UpdateGate`."""

    def __init__(
        self,
        *,
        expected: dict[str, list[int]],
        staging_root: Path,
        max_update_bytes: int,
        max_chunk_bytes: int,
    ):
        self.expected = expected
        self.staging_root = staging_root
        self.max_update_bytes = max_update_bytes
        self.max_chunk_bytes = max_chunk_bytes
        self.pending: PendingUpdate | None = None
        self.last_committed: tuple[str, int] | None = None  # (update_id, version), for idempotent commits
        self.served_folder: Path | None = None
        self.last_update_seconds: float | None = None
        self.committing: str | None = None  # update id being loaded: its folder must not change meanwhile
        staging_root.mkdir(parents=True, exist_ok=True)

    def begin(self, body: WeightUpdateBegin, served_version: int) -> PendingUpdate:
        self._refuse_while_committing()
        if body.version <= served_version:
            raise _fail(
                "stale_version",
                Conflict(
                    f"version {body.version} is not newer than the served version {served_version}",
                    field="version",
                ),
            )
        if body.total_bytes > self.max_update_bytes:
            raise _fail(
                "bad_spec",
                PayloadTooLarge(
                    f"total_bytes {body.total_bytes} exceeds max_update_bytes {self.max_update_bytes}",
                    field="total_bytes",
                ),
            )
        specs: dict[str, TensorSpec] = {}
        for i, spec in enumerate(body.tensors):
            where = f"tensors.{i}"
            if spec.name in specs:
                raise _fail(
                    "bad_spec", Unprocessable(f"tensor {spec.name!r} is listed twice", field=f"{where}.name")
                )
            shape = self.expected.get(spec.name)
            if shape is None:
                raise _fail(
                    "bad_spec",
                    Unprocessable(
                        f"unknown tensor name {spec.name!r} (not in the served checkpoint)",
                        field=f"{where}.name",
                    ),
                )
            if spec.shape != shape:
                raise _fail(
                    "bad_spec",
                    Unprocessable(
                        f"tensor {spec.name!r} has shape {spec.shape}, the model expects {shape}",
                        field=f"{where}.shape",
                    ),
                )
            if spec.dtype not in FLOAT_DTYPES:
                raise _fail(
                    "bad_spec",
                    Unprocessable(
                        f"tensor {spec.name!r} has dtype {spec.dtype}; weights must be one of {sorted(FLOAT_DTYPES)}",
                        field=f"{where}.dtype",
                    ),
                )
            specs[spec.name] = spec
        missing = sorted(set(self.expected) - set(specs))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise _fail(
                "bad_spec", Unprocessable(f"update must carry every weight; missing {shown}", field="tensors")
            )
        self.discard()
        update_id = f"u{body.version}-{uuid.uuid4().hex[:12]}"
        folder = self.staging_root / update_id
        folder.mkdir()
        self.pending = PendingUpdate(update_id=update_id, begin=body, folder=folder, specs=specs)
        return self.pending

    def _refuse_while_committing(self) -> None:
        if self.committing is not None:
            raise Conflict(f"update {self.committing} is being committed; retry after it", field="update_id")

    def get(self, update_id: str) -> PendingUpdate:
        if self.pending is None or self.pending.update_id != update_id:
            raise NotFound(
                f"no pending weight update {update_id!r} (committed, discarded or replaced)",
                field="update_id",
            )
        return self.pending

    def precheck_chunk(self, update_id: str, index: int, size: int, checksum: str) -> PendingUpdate | None:
        """The pending update the chunk belongs to, or None when it is an exact repeat (no-op)."""
        self._refuse_while_committing()
        pending = self.get(update_id)
        if index >= pending.begin.num_chunks:
            raise _fail(
                "bad_chunk",
                Unprocessable(f"chunk index {index} >= num_chunks {pending.begin.num_chunks}", field="index"),
            )
        if size > self.max_chunk_bytes:
            raise _fail(
                "bad_chunk",
                PayloadTooLarge(
                    f"chunk {index} has {size} bytes; max_chunk_bytes is {self.max_chunk_bytes}", field="body"
                ),
            )
        if index in pending.chunks:
            if pending.chunks[index] == checksum:
                return None
            raise _fail(
                "bad_chunk", Conflict(f"chunk {index} already arrived with different bytes", field="index")
            )
        if sum(pending.chunk_bytes.values()) + size > pending.begin.total_bytes:
            raise _fail(
                "bad_chunk",
                Unprocessable(
                    f"chunk {index} takes the upload past total_bytes {pending.begin.total_bytes}",
                    field="body",
                ),
            )
        return pending

    def store_chunk(
        self, pending: PendingUpdate, index: int, body: bytes, checksum: str, names: set[str]
    ) -> None:
        if self.pending is not pending:  # replaced while the chunk was being validated
            raise NotFound(
                f"weight update {pending.update_id!r} was replaced by a newer one", field="update_id"
            )
        clash = names & pending.received
        if clash:
            raise _fail(
                "bad_chunk",
                Conflict(f"chunk {index}: tensor {sorted(clash)[0]!r} already arrived", field="body"),
            )
        (pending.folder / f"chunk-{index:06d}.safetensors").write_bytes(body)
        pending.chunks[index] = checksum
        pending.chunk_bytes[index] = len(body)
        pending.received |= names
        metrics.UPDATE_BYTES.inc(len(body))

    def verify_complete(self, pending: PendingUpdate, version: int, checksum: str) -> None:
        """Raise unless `pending` is complete and its bytes are exactly the announced ones."""
        if version != pending.begin.version:
            raise _fail(
                "bad_spec",
                Conflict(
                    f"commit names version {version}, the update announced {pending.begin.version}",
                    field="version",
                ),
            )
        missing = pending.missing_chunks()
        if missing:
            raise _fail(
                "incomplete",
                Unprocessable(
                    f"upload incomplete: chunks {missing[:10]} of {pending.begin.num_chunks} missing",
                    field="chunks",
                ),
            )
        absent = sorted(set(pending.specs) - pending.received)
        if absent:
            raise _fail(
                "incomplete",
                Unprocessable(f"upload incomplete: tensors {absent[:5]} never arrived", field="tensors"),
            )
        total = sum(pending.chunk_bytes.values())
        if total != pending.begin.total_bytes:
            raise _fail(
                "incomplete",
                Unprocessable(
                    f"received {total} bytes, announced total_bytes {pending.begin.total_bytes}",
                    field="total_bytes",
                ),
            )
        digest = hashlib.sha256()
        for index in range(pending.begin.num_chunks):
            with open(pending.folder / f"chunk-{index:06d}.safetensors", "rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
        if checksum != pending.begin.checksum or digest.hexdigest() != checksum:
            self.discard()
            raise _fail(
                "checksum",
                Unprocessable(
                    "checksum of all chunks does not match the announced one; update discarded",
                    field="checksum",
                ),
            )

    def committed(self, pending: PendingUpdate, seconds: float) -> None:
        if self.served_folder is not None:
            shutil.rmtree(self.served_folder, ignore_errors=True)
        self.served_folder = pending.folder  # kept: the engine may re-read it (vLLM now points there)
        self.last_committed = (pending.update_id, pending.begin.version)
        self.last_update_seconds = seconds
        self.pending = None
        metrics.UPDATES.inc()
        metrics.UPDATE_DURATION.observe(seconds)

    def discard(self) -> None:
        self._refuse_while_committing()
        if self.pending is not None:
            shutil.rmtree(self.pending.folder, ignore_errors=True)
            self.pending = None

    def close(self) -> None:
        self.discard()
