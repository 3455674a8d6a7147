"""The trainer's side of a GPU weight update over NCCL: `push_weights_nccl`, called by trainer rank 0.

Rank 0 asks the inference service for its NCCL world (`GET /v1/weights`), posts `POST /v1/weights/nccl`
(the service drains, then its vLLM workers join the group) from a helper thread, and meanwhile hosts the
rendezvous as NCCL rank 0 and broadcasts the tensors in the announced order, packed into buckets of
`bucket_bytes` (vLLM's packed broadcast: at most two buckets of extra GPU memory, never a second copy of
the weights). It returns the service's status once the new version is served. One time limit covers the
whole transfer on both sides: the service gets `timeout_s` (its answer is then a 503 and it keeps
serving the old version, or restarts), and this function gives up `grace_s` later with `TimeoutError`.
After any failure the NCCL group of that attempt is unusable and its thread may stay blocked in NCCL:
retry on another `master_port`, or fall back to the HTTP push (`push_http.push_weights`).

Arguments are checked before any network or GPU work (ValueError naming the argument), the service's
refusals (CPU engine, stale version, unknown names) arrive as `ghpo.shared.errors` exceptions before the
rendezvous starts. torch and vLLM are imported lazily: the module imports on a machine without either.
Not here: choosing between NCCL and HTTP (the trainer), several trainer ranks (only rank 0 sends).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from ghpo.shared.errors import Conflict
from ghpo.shared.http import SyncServiceClient
from ghpo.shared.schemas.inference import NCCL_NUM_BUFFERS, NcclUpdateRequest, WeightsStatus
from ghpo.trainer.train.push_http import tensor_specs

MiB = 1024 * 1024
DEFAULT_BUCKET_BYTES = 256 * MiB


def check_nccl_args(
    tensors: Mapping[str, Any], version: int, master_port: int, timeout_s: float, bucket_bytes: int
) -> None:
    """ValueError naming the first bad argument; no network, no GPU."""
    if not tensors:
        raise ValueError("tensors: empty; an update carries every checkpoint tensor")
    if not 1 <= version <= 2**53:
        raise ValueError(f"version: {version} is not in 1..2**53")
    if not 1 <= master_port <= 65535:
        raise ValueError(f"master_port: {master_port} is not a TCP port")
    if not 0 < timeout_s <= 3600:
        raise ValueError(f"timeout_s: {timeout_s} is not in (0, 3600]")
    if not MiB <= bucket_bytes <= 1 << 36:
        raise ValueError(f"bucket_bytes: {bucket_bytes} is not in [1 MiB, 64 GiB]")


def _run(target: Any, result: dict[str, Any], key: str) -> threading.Thread:
    def body() -> None:
        try:
            result[key] = target()
        except BaseException as exc:  # handed to the caller's thread, which raises it
            result[f"{key}_error"] = exc

    # Daemon: after a failure the broadcast may block in NCCL forever; it must not keep the trainer alive.
    thread = threading.Thread(target=body, name=f"ghpo-nccl-{key}", daemon=True)
    thread.start()
    return thread


def _broadcast(tensors: Mapping[str, Any], world_size: int, address: str, port: int, bucket: int) -> None:
    import torch
    from vllm.distributed.weight_transfer.nccl_common import trainer_init
    from vllm.distributed.weight_transfer.packed_tensor import packed_nccl_broadcast_producer

    # The current CUDA device is per thread: use the tensors' one (trainer_init and the packer read it).
    torch.cuda.set_device(next(iter(tensors.values())).device)
    group = trainer_init({"master_address": address, "master_port": port, "world_size": world_size})
    try:
        packed_nccl_broadcast_producer(
            iterator=iter(tensors.items()),
            group=group,
            src=0,
            post_iter_func=lambda item: item[1].detach(),
            buffer_size_bytes=bucket,
            num_buffers=NCCL_NUM_BUFFERS,
        )
        torch.cuda.synchronize()
    finally:
        group.destroy()


def push_weights_nccl(
    client: SyncServiceClient,
    tensors: Mapping[str, Any],
    version: int,
    *,
    master_address: str,
    master_port: int,
    timeout_s: float = 300.0,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    grace_s: float = 30.0,
) -> WeightsStatus:
    """Broadcast `tensors` (checkpoint names, on one CUDA device) as weights version `version`.

    `master_address:master_port` is where this process hosts the NCCL rendezvous; the service's GPU
    workers must reach it.
    """
    check_nccl_args(tensors, version, master_port, timeout_s, bucket_bytes)
    status = client.request_json("GET", "/v1/weights", response_model=WeightsStatus)
    if status.nccl_workers == 0:
        raise Conflict(
            f"the inference service at {client.base_url} cannot receive NCCL updates (CPU engine); "
            "push the weights over HTTP (push_weights)"
        )
    if version <= status.policy_version:
        raise Conflict(
            f"version {version} is not newer than the served version {status.policy_version}", field="version"
        )
    devices = {str(t.device) for t in tensors.values()}
    if len(devices) != 1 or not next(iter(devices)).startswith("cuda"):
        raise ValueError(f"tensors: must all be on one CUDA device, found {sorted(devices)}")
    world_size = 1 + status.nccl_workers
    body = NcclUpdateRequest(
        version=version,
        master_address=master_address,
        master_port=master_port,
        world_size=world_size,
        tensors=tensor_specs(tensors),
        bucket_bytes=bucket_bytes,
        timeout_s=timeout_s,
    )
    result: dict[str, Any] = {}
    # Not retried (no idempotency key): a second receive would wait for a broadcast that never comes.
    post = _run(
        lambda: client.request_json(
            "POST", "/v1/weights/nccl", json=body, response_model=WeightsStatus, timeout=timeout_s + grace_s
        ),
        result,
        "post",
    )
    send = _run(
        lambda: _broadcast(tensors, world_size, master_address, master_port, bucket_bytes), result, "send"
    )
    deadline = time.monotonic() + timeout_s + grace_s
    post.join(max(0.0, deadline - time.monotonic()))
    if "post_error" in result:  # the service's verdict explains a stuck or failed broadcast best
        raise result["post_error"]
    send.join(max(0.0, deadline - time.monotonic()))
    if "send_error" in result:
        raise result["send_error"]
    if post.is_alive() or send.is_alive():
        raise TimeoutError(
            f"NCCL weight update to version {version} did not finish in {timeout_s + grace_s:.0f} s "
            f"(service {'answered' if not post.is_alive() else 'did not answer'}, "
            f"broadcast {'done' if not send.is_alive() else 'still running'})"
        )
    return result["post"]
