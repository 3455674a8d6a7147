"""Versioned weight updates pushed over HTTP: validation and on-disk staging, engine-independent.

Protocol (schemas in ghpo.shared.schemas.inference): `begin` announces a version, every tensor (name,
dtype, shape), the byte count, chunk count and the SHA-256 of all chunk bodies in index order; each
`chunk` is a safetensors file as raw bytes with its own SHA-256; `commit` applies the update only if
every chunk and tensor arrived and the overall checksum matches. A tensor bigger than a chunk arrives
as byte-range slices, reassembled on disk (slices.py). Checked, each refused with a 4xx naming
the problem before anything is served: unknown/missing tensor names, shapes, non-float dtypes, a tensor
sent twice or not announced, NaN/Inf values, bad chunk bytes or checksum, a version not newer than the
served one (409). Chunks are written to a staging folder as they arrive (memory stays one chunk per
request), and that folder is what the engine loads; a retried chunk with identical bytes is accepted
again as a no-op. One update is pending at a time: a new `begin` discards the pending one (the trainer
restarting an interrupted push). Not here: HTTP, the drain of in-flight requests (engine.UpdateGate).
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ghpo.services.inference import metrics
from ghpo.services.inference.adapters import check_adapter_specs, write_marker
from ghpo.services.inference.slices import SlicedTensor, check_slice
from ghpo.services.inference.specs import check_specs, fail
from ghpo.shared.errors import Conflict, NotFound, PayloadTooLarge, Unprocessable
from ghpo.shared.schemas.inference import TensorSlice, TensorSpec, WeightUpdateBegin


@dataclass
class PendingUpdate:
    update_id: str
    begin: WeightUpdateBegin
    folder: Path
    specs: dict[str, TensorSpec]
    chunks: dict[int, str] = field(default_factory=dict)  # index -> sha256
    chunk_bytes: dict[int, int] = field(default_factory=dict)
    received: set[str] = field(default_factory=set)  # tensors that arrived whole
    sliced: dict[str, SlicedTensor] = field(default_factory=dict)  # tensors arriving in slices
    slice_chunks: dict[int, TensorSlice] = field(default_factory=dict)  # index -> the slice it carried

    def missing_chunks(self) -> list[int]:
        return [i for i in range(self.begin.num_chunks) if i not in self.chunks]


def validate_chunk(body: bytes, checksum: str, pending: PendingUpdate, index: int) -> set[str]:
    """The tensor names in a chunk body, or a 4xx naming what is wrong. CPU work: run off the loop."""
    import torch
    from safetensors.torch import load

    if hashlib.sha256(body).hexdigest() != checksum:
        raise fail(
            "bad_chunk",
            Unprocessable(f"chunk {index}: body does not match its checksum (truncated?)", field="checksum"),
        )
    try:
        tensors = load(body)
    except Exception as exc:  # safetensors raises its own error type for malformed bytes
        raise fail(
            "bad_chunk", Unprocessable(f"chunk {index}: not a safetensors file: {exc}", field="body")
        ) from exc
    if not tensors:
        raise fail("bad_chunk", Unprocessable(f"chunk {index}: holds no tensors", field="body"))
    names = set()
    for name, tensor in tensors.items():
        spec = pending.specs.get(name)
        if spec is None:
            raise fail(
                "bad_chunk",
                Unprocessable(f"chunk {index}: tensor {name!r} was not announced in begin", field="body"),
            )
        if name in pending.received or name in pending.sliced:
            raise fail(
                "bad_chunk",
                Conflict(f"chunk {index}: tensor {name!r} already arrived in another chunk", field="body"),
            )
        dtype = str(tensor.dtype).removeprefix("torch.")
        if dtype != spec.dtype or list(tensor.shape) != spec.shape:
            raise fail(
                "bad_chunk",
                Unprocessable(
                    f"chunk {index}: tensor {name!r} is {dtype}{list(tensor.shape)}, announced "
                    f"{spec.dtype}{spec.shape}",
                    field="body",
                ),
            )
        if not bool(torch.isfinite(tensor).all()):
            raise fail(
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
            raise fail(
                "stale_version",
                Conflict(
                    f"version {body.version} is not newer than the served version {served_version}",
                    field="version",
                ),
            )
        if body.total_bytes > self.max_update_bytes:
            raise fail(
                "bad_spec",
                PayloadTooLarge(
                    f"total_bytes {body.total_bytes} exceeds max_update_bytes {self.max_update_bytes}",
                    field="total_bytes",
                ),
            )
        if body.adapter is not None:
            specs = check_adapter_specs(body.tensors, self.expected)
        else:
            specs = check_specs(body.tensors, self.expected)
        self.discard()
        update_id = f"u{body.version}-{uuid.uuid4().hex[:12]}"
        folder = self.staging_root / update_id
        folder.mkdir()
        if body.adapter is not None:  # the engine merges it into the base at commit (adapters.py)
            write_marker(folder, body.adapter)
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

    def precheck_chunk(
        self, update_id: str, index: int, size: int, checksum: str, piece: TensorSlice | None = None
    ) -> PendingUpdate | None:
        """The pending update the chunk belongs to, or None when it is an exact repeat (no-op).

        `piece`: the tensor slice the body carries (raw bytes), None for a safetensors chunk.
        """
        self._refuse_while_committing()
        pending = self.get(update_id)
        if index >= pending.begin.num_chunks:
            raise fail(
                "bad_chunk",
                Unprocessable(f"chunk index {index} >= num_chunks {pending.begin.num_chunks}", field="index"),
            )
        if size > self.max_chunk_bytes:
            raise fail(
                "bad_chunk",
                PayloadTooLarge(
                    f"chunk {index} has {size} bytes; max_chunk_bytes is {self.max_chunk_bytes}", field="body"
                ),
            )
        if index in pending.chunks:
            if pending.chunks[index] == checksum:
                return None
            raise fail(
                "bad_chunk", Conflict(f"chunk {index} already arrived with different bytes", field="index")
            )
        if sum(pending.chunk_bytes.values()) + size > pending.begin.total_bytes:
            raise fail(
                "bad_chunk",
                Unprocessable(
                    f"chunk {index} takes the upload past total_bytes {pending.begin.total_bytes}",
                    field="body",
                ),
            )
        if piece is not None:
            check_slice(piece, size, index, pending.specs, pending.received, pending.sliced)
        return pending

    def store_chunk(
        self, pending: PendingUpdate, index: int, body: bytes, checksum: str, names: set[str]
    ) -> None:
        if self.pending is not pending:  # replaced while the chunk was being validated
            raise NotFound(
                f"weight update {pending.update_id!r} was replaced by a newer one", field="update_id"
            )
        clash = names & (pending.received | pending.sliced.keys())
        if clash:
            raise fail(
                "bad_chunk",
                Conflict(f"chunk {index}: tensor {sorted(clash)[0]!r} already arrived", field="body"),
            )
        (pending.folder / f"chunk-{index:06d}.safetensors").write_bytes(body)
        pending.chunks[index] = checksum
        pending.chunk_bytes[index] = len(body)
        pending.received |= names
        metrics.UPDATE_BYTES.inc(len(body))

    def store_slice(
        self, pending: PendingUpdate, index: int, body: bytes, checksum: str, piece: TensorSlice
    ) -> None:
        """Write a validated slice into its tensor's file; re-checked here, as another request may have
        delivered overlapping bytes while this one was being validated off the event loop."""
        if self.pending is not pending:
            raise NotFound(
                f"weight update {pending.update_id!r} was replaced by a newer one", field="update_id"
            )
        spec = check_slice(piece, len(body), index, pending.specs, pending.received, pending.sliced)
        sliced = pending.sliced.get(piece.tensor)
        if sliced is None:
            path = pending.folder / f"sliced-{len(pending.sliced):06d}.safetensors"
            sliced = pending.sliced[piece.tensor] = SlicedTensor.create(spec, path)
        sliced.write(piece.start, body)
        pending.chunks[index] = checksum
        pending.chunk_bytes[index] = len(body)
        pending.slice_chunks[index] = piece
        metrics.UPDATE_BYTES.inc(len(body))

    def verify_complete(self, pending: PendingUpdate, version: int, checksum: str) -> None:
        """Raise unless `pending` is complete and its bytes are exactly the announced ones."""
        if version != pending.begin.version:
            raise fail(
                "bad_spec",
                Conflict(
                    f"commit names version {version}, the update announced {pending.begin.version}",
                    field="version",
                ),
            )
        missing = pending.missing_chunks()
        if missing:
            raise fail(
                "incomplete",
                Unprocessable(
                    f"upload incomplete: chunks {missing[:10]} of {pending.begin.num_chunks} missing",
                    field="chunks",
                ),
            )
        absent = sorted(set(pending.specs) - pending.received - pending.sliced.keys())
        if absent:
            raise fail(
                "incomplete",
                Unprocessable(f"upload incomplete: tensors {absent[:5]} never arrived", field="tensors"),
            )
        for name, sliced in pending.sliced.items():
            gap = sliced.first_gap()
            if gap is not None:
                raise fail(
                    "incomplete",
                    Unprocessable(
                        f"upload incomplete: bytes [{gap[0]}, {gap[1]}) of tensor {name!r} never arrived "
                        f"(a slice is missing)",
                        field="tensors",
                    ),
                )
        total = sum(pending.chunk_bytes.values())
        if total != pending.begin.total_bytes:
            raise fail(
                "incomplete",
                Unprocessable(
                    f"received {total} bytes, announced total_bytes {pending.begin.total_bytes}",
                    field="total_bytes",
                ),
            )
        digest = hashlib.sha256()
        for index in range(pending.begin.num_chunks):
            piece = pending.slice_chunks.get(index)
            if piece is not None:  # slice bodies live in their tensor's file, not as chunk files
                pending.sliced[piece.tensor].hash_range(digest, piece.start, piece.stop)
                continue
            with open(pending.folder / f"chunk-{index:06d}.safetensors", "rb") as f:
                while block := f.read(1 << 20):
                    digest.update(block)
        if checksum != pending.begin.checksum or digest.hexdigest() != checksum:
            self.discard()
            raise fail(
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

    def served_in_engine_only(self, seconds: float, nbytes: int) -> None:
        """A version arrived by NCCL: the engine holds the only copy; the old staged folder is stale."""
        if self.served_folder is not None:
            shutil.rmtree(self.served_folder, ignore_errors=True)
        self.served_folder = None
        self.last_update_seconds = seconds
        metrics.UPDATES.inc()
        metrics.UPDATE_DURATION.observe(seconds)
        metrics.UPDATE_BYTES.inc(nbytes)

    def discard(self) -> None:
        self._refuse_while_committing()
        if self.pending is not None:
            shutil.rmtree(self.pending.folder, ignore_errors=True)
            self.pending = None

    def close(self) -> None:
        self.discard()
