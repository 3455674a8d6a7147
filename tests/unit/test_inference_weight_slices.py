"""Byte-range slices of big tensors in an HTTP weight update, without HTTP or an engine: the client's
packing and the service's bookkeeping (`WeightUpdates`) reassembling them into loadable files.

The HTTP round trip with a real engine is in tests/service/test_inference_service.py.
"""

from __future__ import annotations

import hashlib
import re

import pytest
import torch
from safetensors.torch import load_file

from ghpo.services.inference.slices import validate_slice_body
from ghpo.services.inference.weights import WeightUpdates, validate_chunk
from ghpo.shared.errors import Conflict, Unprocessable
from ghpo.shared.schemas.inference import TensorSlice, WeightUpdateBegin
from ghpo.trainer.train.push_http import pack_chunks, tensor_specs

WEIGHTS = {
    "embed.weight": torch.randn(40, 16, generator=torch.Generator().manual_seed(0)),  # 2560 bytes
    "norm.weight": torch.randn(16, generator=torch.Generator().manual_seed(1)),
    "head.bias": torch.randn(7, dtype=torch.float32, generator=torch.Generator().manual_seed(2)).to(
        torch.bfloat16
    ),
}


def _begin(tmp_path, chunks):
    updates = WeightUpdates(
        expected={n: list(t.shape) for n, t in WEIGHTS.items()},
        staging_root=tmp_path,
        max_update_bytes=1 << 20,
        max_chunk_bytes=1 << 20,
    )
    body = WeightUpdateBegin(
        version=1,
        tensors=tensor_specs(WEIGHTS),
        total_bytes=sum(len(c.body) for c in chunks),
        num_chunks=len(chunks),
        checksum=hashlib.sha256(b"".join(c.body for c in chunks)).hexdigest(),
    )
    return updates, updates.begin(body, 0), body.checksum


def _put(updates, pending, index, chunk):
    checksum = hashlib.sha256(chunk.body).hexdigest()
    assert updates.precheck_chunk(pending.update_id, index, len(chunk.body), checksum, chunk.piece)
    if chunk.piece is not None:
        validate_slice_body(chunk.body, checksum, pending.specs[chunk.piece.tensor], index)
        updates.store_slice(pending, index, chunk.body, checksum, chunk.piece)
    else:
        names = validate_chunk(chunk.body, checksum, pending, index)
        updates.store_chunk(pending, index, chunk.body, checksum, names)


def test_a_tensor_bigger_than_a_chunk_is_sliced_and_reassembled_bit_exact(tmp_path):
    chunks = pack_chunks(WEIGHTS, 1000)
    sliced = [c.piece for c in chunks if c.piece is not None]
    assert {p.tensor for p in sliced} == {"embed.weight"} and len(sliced) == 3
    assert all(len(c.body) <= 1000 for c in chunks if c.piece is not None)
    updates, pending, checksum = _begin(tmp_path, chunks)
    for index in reversed(range(len(chunks))):  # order of arrival does not matter
        _put(updates, pending, index, chunks[index])
    updates.verify_complete(pending, 1, checksum)
    loaded = {}
    for path in pending.folder.glob("*.safetensors"):
        loaded.update(load_file(path))
    assert loaded.keys() == WEIGHTS.keys()
    for name, tensor in WEIGHTS.items():
        assert torch.equal(loaded[name], tensor), name


def test_bad_slices_are_refused_naming_the_field(tmp_path):
    chunks = pack_chunks(WEIGHTS, 1000)
    updates, pending, checksum = _begin(tmp_path, chunks)
    first = next(i for i, c in enumerate(chunks) if c.piece is not None)
    body = chunks[first].body

    def precheck(piece, data=body):
        sha = hashlib.sha256(data).hexdigest()
        return updates.precheck_chunk(pending.update_id, first, len(data), sha, piece)

    with pytest.raises(Unprocessable, match="past the end") as err:
        precheck(TensorSlice(tensor="embed.weight", start=2560 - 8, stop=2560 + len(body) - 8))
    assert err.value.field == "stop"
    with pytest.raises(Unprocessable, match="truncated") as err:
        precheck(chunks[first].piece, body[:-4])
    assert err.value.field == "body"
    with pytest.raises(Unprocessable, match="multiples of 4") as err:
        precheck(TensorSlice(tensor="embed.weight", start=2, stop=2 + len(body)))
    with pytest.raises(Unprocessable, match="not announced") as err:
        precheck(TensorSlice(tensor="lm_head.weight", start=0, stop=len(body)))
    assert err.value.field == "tensor"
    nan = bytearray(body)
    nan[0:4] = bytes(torch.tensor([float("nan")]).view(torch.uint8).tolist())
    with pytest.raises(Unprocessable, match="NaN"):
        validate_slice_body(bytes(nan), hashlib.sha256(nan).hexdigest(), pending.specs["embed.weight"], first)
    _put(updates, pending, first, chunks[first])
    with pytest.raises(Conflict, match="overlaps") as err:  # same bytes again under another index
        updates.precheck_chunk(
            pending.update_id, first + 1, len(body), hashlib.sha256(body).hexdigest(), chunks[first].piece
        )
    assert err.value.field == "start"
    whole = pack_chunks({"embed.weight": WEIGHTS["embed.weight"]}, 1 << 20)[0]
    with pytest.raises(Conflict, match="already arrived"):
        validate_chunk(whole.body, hashlib.sha256(whole.body).hexdigest(), pending, first + 1)
    for index, chunk in enumerate(chunks):
        if index not in (first, first + 1):
            _put(updates, pending, index, chunk)
    with pytest.raises(Unprocessable, match=re.escape("chunks [1] of 4 missing")) as err:
        updates.verify_complete(pending, 1, checksum)
    assert err.value.field == "chunks"


def test_an_update_whose_slices_leave_a_gap_is_refused_at_commit(tmp_path):
    chunks = pack_chunks(WEIGHTS, 1000)
    middle = [i for i, c in enumerate(chunks) if c.piece is not None][1]
    gappy = chunks[:middle] + chunks[middle + 1 :]  # announced and sent consistently, one slice short
    updates, pending, checksum = _begin(tmp_path, gappy)
    for index, chunk in enumerate(gappy):
        _put(updates, pending, index, chunk)
    with pytest.raises(Unprocessable, match=re.escape("bytes [1000, 2000) of tensor 'embed.weight'")) as err:
        updates.verify_complete(pending, 1, checksum)
    assert err.value.field == "tensors" and "a slice is missing" in str(err.value)
