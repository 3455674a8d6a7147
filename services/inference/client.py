"""The sending side of an HTTP weight update, for the trainer (and tests and benches): pack tensors into
safetensors chunks and push them as begin -> chunks -> commit.

`pack_chunks` fills buckets in the tensors' order up to `max_chunk_bytes` (a tensor bigger than that gets
a chunk of its own, which the service refuses if it exceeds its own max_chunk_bytes: lower the bucket or
raise the limit). Send the checkpoint's names: `model.state_dict()` of a Hugging Face model with tied
embeddings also holds `lm_head.weight`, which its checkpoint does not store; drop it. Chunk PUTs are
retried by the client (idempotent on the service); the commit is sent with an idempotency key. Not here:
NCCL transfer (GPU), choosing when to push.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from ghpo.shared.http import SyncServiceClient
from ghpo.shared.schemas.inference import (
    TensorSpec,
    WeightsStatus,
    WeightUpdateBegin,
    WeightUpdateCommit,
    WeightUpdateSession,
)

# Room left in each chunk for the safetensors JSON header (about 100 bytes per tensor).
HEADER_ROOM_BYTES = 16 * 1024


def pack_chunks(tensors: Mapping[str, Any], max_chunk_bytes: int) -> list[bytes]:
    """safetensors files of at most ~max_chunk_bytes each (a header of a few hundred bytes on top)."""
    from safetensors.torch import save

    chunks: list[bytes] = []
    bucket: dict[str, Any] = {}
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if bucket and size + nbytes > max_chunk_bytes:
            chunks.append(save(bucket))
            bucket, size = {}, 0
        bucket[name] = tensor.detach().contiguous().cpu()
        size += nbytes
    if bucket:
        chunks.append(save(bucket))
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
    chunks: list[bytes] | None = None,
) -> WeightsStatus:
    """Push `tensors` as weights version `version`; returns the service's status after the commit.

    Without `max_chunk_bytes`, buckets fill to the service's limit (asked first) less header room.
    """
    if chunks is None:
        if max_chunk_bytes is None:
            limit = client.request_json("GET", "/v1/weights", response_model=WeightsStatus).max_chunk_bytes
            max_chunk_bytes = max(1, limit - HEADER_ROOM_BYTES)
        chunks = pack_chunks(tensors, max_chunk_bytes)
    overall = hashlib.sha256()
    for chunk in chunks:
        overall.update(chunk)
    checksum = overall.hexdigest()
    begin = WeightUpdateBegin(
        version=version,
        tensors=tensor_specs(tensors),
        total_bytes=sum(len(c) for c in chunks),
        num_chunks=len(chunks),
        checksum=checksum,
    )
    session = client.request_json(
        "POST", "/v1/weights/updates", json=begin, response_model=WeightUpdateSession
    )
    for index, chunk in enumerate(chunks):
        client.request(
            "PUT",
            f"/v1/weights/updates/{session.update_id}/chunks/{index}",
            content=chunk,
            params={"checksum": hashlib.sha256(chunk).hexdigest()},
            headers={"Content-Type": "application/octet-stream"},
        )
    return client.request_json(
        "POST",
        f"/v1/weights/updates/{session.update_id}/commit",
        json=WeightUpdateCommit(version=version, checksum=checksum),
        response_model=WeightsStatus,
        idempotency_key=f"commit-{session.update_id}",
    )
