"""Tensors pushed in byte-range slices: checks and on-disk reassembly for an HTTP weight update.

A tensor larger than one chunk travels as several slice chunks: each chunk's raw body is the bytes
`[start, stop)` of the tensor (C order, its announced dtype, little-endian), named by the chunk's
`tensor`/`start`/`stop` query parameters. The first slice of a tensor creates one safetensors file for
it in the update's staging folder (header written, data region allocated sparse), and every slice is
written straight into its place there, so memory holds one chunk per request and, once every byte has
arrived, the file is an ordinary checkpoint file the engine loads with the others. The raw slice bodies
are not kept: for the update's overall checksum they are read back from that file.

Refused, each with a 4xx naming the field and nothing written: a slice of a tensor that was not
announced or already arrived whole, a range not aligned to the dtype, past the end of the tensor, or
overlapping bytes already received, a body whose length is not `stop - start` (truncated), NaN/Inf
values. Not here: chunk bookkeeping and the commit (weights.py), HTTP (api.py).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ghpo.services.inference import metrics
from ghpo.shared.errors import Conflict, Unprocessable
from ghpo.shared.schemas.inference import TensorSlice, TensorSpec

ITEM_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
_ST_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}


def _fail(exc: Exception) -> Exception:
    metrics.UPDATE_FAILURES.labels(reason="bad_chunk").inc()
    return exc


def tensor_nbytes(spec: TensorSpec) -> int:
    return math.prod(spec.shape) * ITEM_BYTES[spec.dtype]


@dataclass
class SlicedTensor:
    """One tensor being reassembled from slices in its own safetensors file."""

    spec: TensorSpec
    path: Path
    data_offset: int  # where the tensor's bytes start in the file
    nbytes: int
    ranges: list[tuple[int, int]] = field(default_factory=list)  # received [start, stop), sorted

    @classmethod
    def create(cls, spec: TensorSpec, path: Path) -> SlicedTensor:
        nbytes = tensor_nbytes(spec)
        header = json.dumps(
            {spec.name: {"dtype": _ST_CODES[spec.dtype], "shape": spec.shape, "data_offsets": [0, nbytes]}},
            separators=(",", ":"),
        ).encode()
        header += b" " * (-len(header) % 8)  # safetensors aligns the data region to 8 bytes
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(header)) + header)
            f.truncate(8 + len(header) + nbytes)  # sparse: the slices fill it in
        return cls(spec=spec, path=path, data_offset=8 + len(header), nbytes=nbytes)

    @property
    def received_bytes(self) -> int:
        return sum(stop - start for start, stop in self.ranges)

    def overlap(self, start: int, stop: int) -> tuple[int, int] | None:
        """A received range that shares bytes with [start, stop), if any."""
        i = bisect.bisect_left(self.ranges, (start, stop))
        for j in (i - 1, i):
            if 0 <= j < len(self.ranges):
                a, b = self.ranges[j]
                if a < stop and start < b:
                    return a, b
        return None

    def first_gap(self) -> tuple[int, int] | None:
        position = 0
        for start, stop in self.ranges:
            if start > position:
                return position, start
            position = stop
        return (position, self.nbytes) if position < self.nbytes else None

    def write(self, start: int, body: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY)
        try:
            os.pwrite(fd, body, self.data_offset + start)
        finally:
            os.close(fd)
        bisect.insort(self.ranges, (start, start + len(body)))

    def hash_range(self, digest: hashlib._Hash, start: int, stop: int) -> None:
        with open(self.path, "rb") as f:
            f.seek(self.data_offset + start)
            remaining = stop - start
            while remaining > 0:
                block = f.read(min(remaining, 1 << 20))
                if not block:
                    raise OSError(f"{self.path} is shorter than expected")
                digest.update(block)
                remaining -= len(block)


def check_slice(
    piece: TensorSlice,
    size: int,
    index: int,
    specs: dict[str, TensorSpec],
    whole: set[str],
    sliced: dict[str, SlicedTensor],
) -> TensorSpec:
    """The announced spec of the sliced tensor, or a 4xx naming what is wrong with the slice."""
    where = f"chunk {index}: slice [{piece.start}, {piece.stop}) of {piece.tensor!r}"
    spec = specs.get(piece.tensor)
    if spec is None:
        raise _fail(Unprocessable(f"{where}: tensor was not announced in begin", field="tensor"))
    if piece.tensor in whole:
        raise _fail(Conflict(f"{where}: the tensor already arrived whole", field="tensor"))
    nbytes = tensor_nbytes(spec)
    if piece.stop > nbytes:
        raise _fail(Unprocessable(f"{where}: past the end of the tensor ({nbytes} bytes)", field="stop"))
    item = ITEM_BYTES[spec.dtype]
    if piece.start % item or piece.stop % item:
        raise _fail(
            Unprocessable(f"{where}: bounds must be multiples of {item} bytes ({spec.dtype})", field="start")
        )
    if size != piece.stop - piece.start:
        raise _fail(
            Unprocessable(
                f"{where}: body has {size} bytes, the range needs {piece.stop - piece.start} (truncated?)",
                field="body",
            )
        )
    progress = sliced.get(piece.tensor)
    clash = progress.overlap(piece.start, piece.stop) if progress is not None else None
    if clash is not None:
        raise _fail(
            Conflict(f"{where}: overlaps bytes [{clash[0]}, {clash[1]}) already received", field="start")
        )
    return spec


def validate_slice_body(body: bytes, checksum: str, spec: TensorSpec, index: int) -> None:
    """Checksum and NaN/Inf of a slice body. CPU work: run off the event loop."""
    import torch

    if hashlib.sha256(body).hexdigest() != checksum:
        raise _fail(
            Unprocessable(f"chunk {index}: body does not match its checksum (truncated?)", field="checksum")
        )
    values = torch.frombuffer(bytearray(body), dtype=getattr(torch, spec.dtype))
    if not bool(torch.isfinite(values).all()):
        raise _fail(
            Unprocessable(f"chunk {index}: slice of {spec.name!r} has NaN or Inf values", field="body")
        )
