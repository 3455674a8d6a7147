"""The trainer's side of an HTTP weight update (also used by tests and benches): pack tensors into
safetensors chunks and push them to an inference service as begin -> chunks -> commit.

`pack_chunks` fills buckets (safetensors files) in the tensors' order up to `max_chunk_bytes`; a tensor
bigger than that is split by byte range into slice chunks of its raw bytes, which the service reassembles,
so no chunk exceeds the bucket size. The whole update is held once in memory as chunk bytes (the
overall checksum goes in `begin`, before the first chunk). Send the checkpoint's names:
`model.state_dict()` of a Hugging Face model with tied embeddings also holds `lm_head.weight`, which its checkpoint does not store; drop it. Chunk PUTs are
retried by the client (idempotent on the service); the commit is sent with an idempotency key. Not here:
NCCL transfer (GPU, push_nccl.py), gathering the weights or choosing when to push (weights.py), the
receiving end (ghpo.services.inference).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ghpo.shared.http import SyncServiceClient
from ghpo.shared.schemas.inference import (
    AdapterSpec,
    TensorSlice,
    TensorSpec,
    WeightsStatus,
    WeightUpdateBegin,
    WeightUpdateCommit,
    WeightUpdateSession,
)

# Room left in each chunk for the safetensors JSON header (about 100 bytes per tensor).
HEADER_ROOM_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Chunk:
    """One chunk body: a safetensors file of whole tensors, or (`piece` set) raw bytes of one tensor."""

    body: bytes
    piece: TensorSlice | None = None

    def params(self) -> dict[str, Any]:
        """Query parameters of the chunk's PUT."""
        params: dict[str, Any] = {"checksum": hashlib.sha256(self.body).hexdigest()}
        if self.piece is not None:
            params.update(tensor=self.piece.tensor, start=self.piece.start, stop=self.piece.stop)
        return params


def _slices(name: str, tensor: Any, max_chunk_bytes: int) -> list[Chunk]:
    import torch

    raw = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8)
    item = tensor.element_size()
    step = max(item, max_chunk_bytes // item * item)  # whole elements per slice
    return [
        Chunk(
            raw[a : a + step].numpy().tobytes(),
            TensorSlice(tensor=name, start=a, stop=min(a + step, len(raw))),
        )
        for a in range(0, len(raw), step)
    ]


def pack_chunks(tensors: Mapping[str, Any], max_chunk_bytes: int) -> list[Chunk]:
    """Chunks of at most ~max_chunk_bytes each (safetensors files get a few hundred header bytes on top)."""
    from safetensors.torch import save

    chunks: list[Chunk] = []
    bucket: dict[str, Any] = {}
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > max_chunk_bytes:
            chunks.append(Chunk(save(bucket)))
            bucket, size = {}, 0
        if nbytes > max_chunk_bytes:
            chunks.extend(_slices(name, tensor, max_chunk_bytes))
            continue
        bucket[name] = tensor.detach().contiguous().cpu()
        size += nbytes
    if bucket:
        chunks.append(Chunk(save(bucket)))
    return chunks


def tensor_specs(tensors: Mapping[str, Any]) -> list[TensorSpec]:
    return [
        TensorSpec(name=name, dtype=str(t.dtype).removeprefix("torch."), shape=list(t.shape))
        for name, t in tensors.items()
    ]


def push_weights(
    client: SyncServiceClient,
    tensors: Mapping[str, Any],
    version: int,
    *,
    max_chunk_bytes: int | None = None,
    chunks: list[Chunk] | None = None,
    adapter: AdapterSpec | None = None,
) -> WeightsStatus:
    """Push `tensors` as weights version `version`; returns the service's status after the commit.

    Without `max_chunk_bytes`, buckets fill to the service's limit (asked first) less header room.
    With `adapter`, `tensors` are a LoRA adapter's (wire names, ghpo.trainer.train.lora), not weights.
    """
    if chunks is None:
        if max_chunk_bytes is None:
            limit = client.request_json("GET", "/v1/weights", response_model=WeightsStatus).max_chunk_bytes
            max_chunk_bytes = max(1, limit - HEADER_ROOM_BYTES)
        chunks = pack_chunks(tensors, max_chunk_bytes)
    overall = hashlib.sha256()
    for chunk in chunks:
        overall.update(chunk.body)
    checksum = overall.hexdigest()
    begin = WeightUpdateBegin(
        version=version,
        tensors=tensor_specs(tensors),
        total_bytes=sum(len(c.body) for c in chunks),
        num_chunks=len(chunks),
        checksum=checksum,
        adapter=adapter,
    )
    session = client.request_json(
        "POST", "/v1/weights/updates", json=begin, response_model=WeightUpdateSession
    )
    for index, chunk in enumerate(chunks):
        client.request(
            "PUT",
            f"/v1/weights/updates/{session.update_id}/chunks/{index}",
            content=chunk.body,
            params=chunk.params(),
            headers={"Content-Type": "application/octet-stream"},
        )
    return client.request_json(
        "POST",
        f"/v1/weights/updates/{session.update_id}/commit",
        json=WeightUpdateCommit(version=version, checksum=checksum),
        response_model=WeightsStatus,
        idempotency_key=f"commit-{session.update_id}",
    )
