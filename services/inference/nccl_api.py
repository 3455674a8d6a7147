"""`POST /v1/weights/nccl`: the receiving end of a GPU weight update broadcast over NCCL by trainer rank 0.

The request names the version, the rendezvous the trainer hosts and every tensor in broadcast order.
Checked before anything reaches the engine, each a 4xx: the engine must run on CUDA (409, the HTTP push
is the way on CPU), `world_size` must be 1 + the engine's GPU workers, the version must be newer than the
served one (409), names/shapes/dtypes must be the checkpoint's (422, as for an HTTP update), and no other
update may be being applied (409). Then, under one time limit (`timeout_s`, default the service's
`nccl_timeout_s`): close the update gate and drain in-flight generations (they finish on the old
weights), let vLLM's weight-transfer engine join the trainer's NCCL group and load the broadcast buckets,
bump the version. The response comes only once the new version is served.

Failure leaves the served *version* as it was and counts `ghpo_inference_weight_update_failures_total`
(reason nccl_timeout or nccl). The weights are loaded in place as buckets arrive, so a transfer that
fails half-way has overwritten part of them: they are then restored from the on-disk copy of the served
version when there is one (the model folder at version 0, the last HTTP update), otherwise, and always
after a timeout (the worker is then stuck in an NCCL call that cannot be cancelled), the engine is marked
failed: /readyz and every /v1 route answer 503 until the service is restarted, so no sample is ever
reported under a version it was not generated with. NaN/Inf are not checked on this path (the bytes
never leave the GPU). Not here: the trainer's side (trainer/train/push_nccl.py), the HTTP updates
(api.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

from fastapi import APIRouter, Request

from ghpo.services.inference import metrics
from ghpo.services.inference.runtime import loaded_runtime, weights_status_of
from ghpo.services.inference.settings import Settings
from ghpo.services.inference.slices import ITEM_BYTES
from ghpo.services.inference.specs import check_specs
from ghpo.services.inference.weights import WeightUpdates
from ghpo.shared.errors import Conflict, Unavailable, Unprocessable
from ghpo.shared.logs import get_logger
from ghpo.shared.schemas.inference import NCCL_NUM_BUFFERS, NcclUpdateRequest, WeightsStatus

router = APIRouter(prefix="/v1", tags=["inference"])
log = get_logger(__name__)


def _fail(reason: str, exc: Exception) -> Exception:
    metrics.UPDATE_FAILURES.labels(reason=reason).inc()
    return exc


def _check(body: NcclUpdateRequest, runtime, settings: Settings) -> None:
    workers = runtime.engine.nccl_workers
    if workers == 0:
        raise _fail(
            "not_gpu",
            Conflict(
                f"NCCL weight updates need the CUDA engine; this service runs vLLM on {settings.device}: "
                "push the weights over HTTP (POST /v1/weights/updates)"
            ),
        )
    if body.world_size != 1 + workers:
        raise _fail(
            "bad_spec",
            Unprocessable(
                f"world_size {body.world_size} != 1 (trainer rank 0) + {workers} GPU worker(s)",
                field="world_size",
            ),
        )
    if body.version <= runtime.gate.version:
        raise _fail(
            "stale_version",
            Conflict(
                f"version {body.version} is not newer than the served version {runtime.gate.version}",
                field="version",
            ),
        )
    check_specs(body.tensors, runtime.updates.expected)
    if runtime.updates.committing is not None:
        raise Conflict(f"update {runtime.updates.committing} is being applied; retry after it")


async def _restore_or_fail(runtime, settings: Settings, why: str) -> None:
    """After a failed transfer the weights may be half new: reload the served version, or give up."""
    updates: WeightUpdates = runtime.updates
    source = updates.served_folder or (Path(settings.model) if runtime.gate.version == 0 else None)
    if source is None:
        runtime.engine.fail(f"{why}; no on-disk copy of version {runtime.gate.version} to restore")
        return
    try:
        await runtime.engine.load_weights(source)
    except Exception as exc:
        runtime.engine.fail(f"{why}; restoring version {runtime.gate.version} failed too: {exc}")
        return
    log.warning("%s; restored version %d from %s", why, runtime.gate.version, source)


@router.post("/weights/nccl", response_model=WeightsStatus)
async def receive_nccl(body: NcclUpdateRequest, request: Request) -> WeightsStatus:
    """Receive version `body.version` from trainer rank 0 over NCCL; answers once it is served."""
    runtime = loaded_runtime(request)
    settings: Settings = request.app.state.settings
    _check(body, runtime, settings)
    updates: WeightUpdates = runtime.updates
    timeout = body.timeout_s or settings.nccl_timeout_s
    init_info = {
        "master_address": body.master_address,
        "master_port": body.master_port,
        "rank_offset": 1,
        "world_size": body.world_size,
        "packed": True,
        "packed_buffer_size_bytes": body.bucket_bytes,
        "packed_num_buffers": NCCL_NUM_BUFFERS,
    }
    update_info = {
        "names": [t.name for t in body.tensors],
        "dtype_names": [t.dtype for t in body.tensors],
        "shapes": [t.shape for t in body.tensors],
    }
    started = time.perf_counter()
    updates.committing = f"nccl-v{body.version}"
    receiving = False
    try:
        async with asyncio.timeout(timeout):
            async with runtime.gate.swap(settings.update_drain_timeout_s):
                if body.version <= runtime.gate.version:
                    raise Conflict(f"version {body.version} was superseded during the drain", field="version")
                receiving = True
                try:
                    await runtime.engine.receive_nccl(init_info, update_info)
                except Exception as exc:
                    metrics.UPDATE_FAILURES.labels(reason="nccl").inc()
                    why = f"NCCL transfer of version {body.version} failed: {type(exc).__name__}: {exc}"
                    await _restore_or_fail(runtime, settings, why)
                    raise Unavailable(
                        f"{why}; the served version stays {runtime.gate.version}", retry_after=5.0
                    ) from exc
                runtime.gate.set_version(body.version)
    except TimeoutError:
        stage = "receiving the weights" if receiving else "draining in-flight generations"
        if receiving:
            runtime.engine.fail(f"NCCL transfer of version {body.version} timed out after {timeout} s")
        raise _fail(
            "nccl_timeout",
            Unavailable(
                f"NCCL update to version {body.version} timed out after {timeout} s while {stage}; "
                f"the served version stays {runtime.gate.version}",
                retry_after=30.0,
            ),
        ) from None
    except Unavailable as exc:
        if not receiving:  # the gate's drain limit, before any byte moved
            metrics.UPDATE_FAILURES.labels(reason="drain_timeout").inc()
        raise exc
    finally:
        updates.committing = None
    nbytes = sum(math.prod(t.shape) * ITEM_BYTES[t.dtype] for t in body.tensors)
    updates.served_in_engine_only(time.perf_counter() - started, nbytes)
    return weights_status_of(runtime)
