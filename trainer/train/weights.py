"""Weights out of the trainer: gather full-precision tensors in buckets and push them to every replica.

`gather_buckets` yields {checkpoint name: CPU tensor} dicts of about `bucket_bytes` each. Under ZeRO-3 a
bucket's parameters are gathered together with one `deepspeed.zero.GatheredParameters` (one collective
per bucket, not per parameter); under bf16/fp16 the fp32 master copy is read where DeepSpeed keeps one.
Names are the Hugging Face checkpoint's: a tied `lm_head.weight` is not a separate parameter, so it is
never sent (the inference service refuses names its checkpoint does not store). With LoRA
(`[model.lora]`) the buckets hold the adapters alone, under their wire names (lora.py), and a push
announces them as an adapter: the replicas merge it into their base weights.

`WeightSync` pushes one version to every inference replica over HTTP (`push_weights`, the chunks packed
once and reused). The replicas are a fixed URL list and/or the addresses one DNS name resolves to
(`services.inference_dns`, a headless Service; ghpo.shared.replica_dns), re-resolved before a push or a
catch-up when `dns_refresh_s` has passed: a replica that appears starts as "version unknown", so the next
push or catch-up brings it to the current version before it counts as synced; one that disappears is
forgotten (a failed resolution keeps the current set). A replica that fails a push is remembered as
behind and retried on every later sync; `catch_up()` asks each replica what it serves and pushes the
current weights to any that is behind (a restarted replica serves version 0), so none serves old weights
for longer than one step once it is reachable again. Only rank 0 resolves and talks to replicas. With
`transport="nccl"` (`services.weight_transport`) rank 0 instead hosts an NCCL rendezvous per replica
and broadcasts from its CUDA device in buckets through the inference service's `POST /v1/weights/nccl`
(push_nccl.py), with a timeout; a replica that cannot take it (a CPU engine) fails
the push like any other failure. `broadcast_buckets`/`receive_buckets` move
buckets between the trainer's own ranks. Not here: deciding when to push (loop.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from ghpo.shared.http import SyncServiceClient
from ghpo.shared.logs import get_logger
from ghpo.shared.replica_dns import Lookup, replica_urls, system_lookup
from ghpo.shared.schemas.inference import AdapterSpec, WeightsStatus
from ghpo.trainer.train import metrics
from ghpo.trainer.train.engine import TrainEngine
from ghpo.trainer.train.lora import adapter_parameters
from ghpo.trainer.train.push_http import HEADER_ROOM_BYTES, pack_chunks, push_weights
from ghpo.trainer.train.push_nccl import push_weights_nccl
from ghpo.trainer.train.ranks import rank, rank0_decides

log = get_logger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _buckets(named: list[tuple[str, torch.nn.Parameter]], bucket_bytes: int, zero3: bool):
    bucket: list[tuple[str, torch.nn.Parameter]] = []
    size = 0
    for name, param in named:
        numel = param.ds_numel if zero3 and hasattr(param, "ds_numel") else param.numel()
        nbytes = numel * 4
        if bucket and size + nbytes > bucket_bytes:
            yield bucket
            bucket, size = [], 0
        bucket.append((name, param))
        size += nbytes
    if bucket:
        yield bucket


def _full_precision(param: torch.nn.Parameter, precision: str) -> torch.Tensor:
    if precision != "fp32":
        from deepspeed.utils import safe_get_full_fp32_param

        master = safe_get_full_fp32_param(param)
        if master is not None:
            return master
    return param.data


def gather_buckets(
    train: TrainEngine, bucket_bytes: int, dtype: torch.dtype = torch.float32
) -> Iterator[dict[str, torch.Tensor]]:
    """Buckets of full tensors on the CPU, in parameter order, every rank participating under ZeRO-3."""
    zero3 = train.zero_stage == 3
    precision = train.config.deepspeed.precision
    named = adapter_parameters(train.module) if train.lora else list(train.module.named_parameters())
    for bucket in _buckets(named, bucket_bytes, zero3):
        if zero3:
            import deepspeed

            gathered = deepspeed.zero.GatheredParameters([p for _, p in bucket], modifier_rank=None)
        else:
            gathered = contextlib.nullcontext()
        with gathered:
            yield {
                name: _full_precision(param, precision).detach().to("cpu", dtype=dtype, copy=True)
                for name, param in bucket
            }


def full_state_dict(train: TrainEngine, bucket_bytes: int, dtype: torch.dtype = torch.float32):
    tensors: dict[str, torch.Tensor] = {}
    for bucket in gather_buckets(train, bucket_bytes, dtype):
        tensors.update(bucket)
    return tensors


@dataclass
class Replica:
    url: str
    client: SyncServiceClient
    served_version: int | None = None  # None: not known (never asked, or the last push failed)


@dataclass
class WeightSync:
    """Pushes of full weights to every inference replica: HTTP buckets, or NCCL from a CUDA trainer."""

    urls: list[str]
    token: str | None = None
    bucket_bytes: int = 64 * 1024 * 1024
    dtype: str = "float32"
    timeout_s: float = 120.0
    transport: str = "http"  # or "nccl" (see _send_nccl)
    nccl_master_address: str = "127.0.0.1"
    nccl_port: int = 29600
    nccl_timeout_s: float = 300.0
    dns: str | None = None  # a URL whose host resolves to one address per replica
    dns_refresh_s: float = 0.0  # least time between resolutions (0: before every push / catch-up)
    lookup: Lookup = system_lookup  # (host, port) -> addresses; the system resolver unless a test injects
    replicas: list[Replica] = field(init=False)
    _resolved_at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.replicas = [self._replica(url) for url in dict.fromkeys(self.urls)]

    def _replica(self, url: str) -> Replica:
        client = SyncServiceClient(
            url, token=self.token, timeout=self.timeout_s, total_budget=4 * self.timeout_s
        )
        return Replica(url, client)

    def close(self) -> None:
        for replica in self.replicas:
            replica.client.close()

    def refresh(self) -> None:
        """Re-resolve `dns` when due (rank 0): add the replicas that appeared (version unknown, so the next
        push or catch-up sends them the current weights), forget those that disappeared."""
        now = time.monotonic()
        if self.dns is None or (
            self._resolved_at is not None and now - self._resolved_at < self.dns_refresh_s
        ):
            return
        self._resolved_at = now
        try:
            found = replica_urls(self.dns, self.lookup)
        except OSError as exc:  # a DNS hiccup must not stop training: keep pushing to the known replicas
            log.warning("could not resolve %s: %s; keeping %d replicas", self.dns, exc, len(self.replicas))
            return
        keep = set(found) | set(self.urls)
        known = {r.url for r in self.replicas}
        for replica in [r for r in self.replicas if r.url not in keep]:
            log.info("inference replica %s is gone from %s; forgotten", replica.url, self.dns)
            replica.client.close()
        self.replicas = [r for r in self.replicas if r.url in keep]
        for url in found:
            if url not in known:
                log.info("inference replica %s appeared in %s", url, self.dns)
                self.replicas.append(self._replica(url))

    def served_versions(self) -> dict[str, int | None]:
        self.refresh()
        versions: dict[str, int | None] = {}
        for replica in self.replicas:
            try:
                status = replica.client.request_json("GET", "/v1/weights", response_model=WeightsStatus)
                replica.served_version = status.policy_version
            except Exception as exc:  # an unreachable replica is reported, not fatal: it is caught up later
                log.warning("inference replica %s: cannot read its version: %s", replica.url, exc)
                replica.served_version = None
            versions[replica.url] = replica.served_version
        return versions

    def push(self, train: TrainEngine, version: int, *, only_behind: bool = False) -> int:
        """Push the engine's weights as `version` to every replica (or only those behind); returns how
        many replicas serve `version` afterwards. Failures are counted and logged, never raised."""
        rank0 = rank() == 0
        if rank0:
            self.refresh()
        targets = (
            [r for r in self.replicas if not only_behind or r.served_version != version] if rank0 else []
        )
        if not rank0_decides(bool(targets)):
            return len(self.replicas)
        started = time.monotonic()
        # every rank takes part: under ZeRO-3 the bucketed gathers are collectives; rank 0 sends
        tensors = full_state_dict(train, self.bucket_bytes, DTYPES[self.dtype])
        if not rank0:
            return 0
        chunk_bytes = None
        chunks = None
        ok = 0
        lora = train.config.model.lora
        adapter = AdapterSpec(scaling=lora.scaling) if lora is not None else None
        for replica in targets:
            if replica.served_version is not None and replica.served_version >= version:
                log.warning(
                    "replica %s serves version %s >= %s; not pushed",
                    replica.url,
                    replica.served_version,
                    version,
                )
                continue
            try:
                if self.transport == "nccl":
                    status = self._send_nccl(replica, tensors, version, self.replicas.index(replica))
                    replica.served_version = status.policy_version
                    metrics.WEIGHT_SYNC_BYTES.inc(sum(t.numel() * t.element_size() for t in tensors.values()))
                    ok += 1
                    continue
                if chunks is None:
                    limit = replica.client.request_json("GET", "/v1/weights", response_model=WeightsStatus)
                    chunk_bytes = max(1, min(self.bucket_bytes, limit.max_chunk_bytes - HEADER_ROOM_BYTES))
                    chunks = pack_chunks(tensors, chunk_bytes)
                status = push_weights(replica.client, tensors, version, chunks=chunks, adapter=adapter)
                replica.served_version = status.policy_version
                metrics.WEIGHT_SYNC_BYTES.inc(sum(len(c.body) for c in chunks))
                ok += 1
            except Exception as exc:  # the replica stays behind; the next sync retries it
                replica.served_version = None
                metrics.WEIGHT_SYNC_FAILURES.inc()
                log.warning("weight push of version %d to %s failed: %s", version, replica.url, exc)
        metrics.WEIGHT_SYNC_SECONDS.observe(time.monotonic() - started)
        return ok + (len(self.replicas) - len(targets))

    def _send_nccl(self, replica: Replica, tensors: dict[str, torch.Tensor], version: int, index: int):
        """One NCCL update of one replica: this rank hosts the rendezvous on `nccl_port + index` and
        broadcasts the weights from its CUDA device in buckets (push_nccl.py); a
        replica whose engine is not on a GPU answers 409, counted as a failed push like any other."""
        device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
        return push_weights_nccl(
            replica.client,
            {name: t.to(device) for name, t in tensors.items()} if device is not None else tensors,
            version,
            master_address=self.nccl_master_address,
            master_port=self.nccl_port + index,
            timeout_s=self.nccl_timeout_s,
            bucket_bytes=self.bucket_bytes,
        )

    def catch_up(self, train: TrainEngine, version: int) -> int:
        """Bring every replica that serves something other than `version` to it; returns how many do.
        Every rank calls it (see `push`)."""
        if rank() == 0:
            self.served_versions()  # re-resolves `dns` first when due
        return self.push(train, version, only_behind=True)


def broadcast_buckets(
    train: TrainEngine, group, src: int, bucket_bytes: int, dtype: torch.dtype, device: str = "cuda"
) -> int:
    """Collective path (NCCL on GPU; gloo works too, for tests): broadcast each gathered bucket, flattened
    into one tensor, from global rank `src` to every member of `group` (inference workers that joined
    it); returns the bytes sent. Every trainer rank must call it (ZeRO-3 gathers are collective too);
    receivers call `receive_buckets` with the same bucket size and dtype."""
    import torch.distributed as dist

    sent = 0
    for bucket in gather_buckets(train, bucket_bytes, dtype):
        if dist.get_rank() == src:
            flat = torch.cat([t.reshape(-1) for t in bucket.values()]).to(device)
            dist.broadcast(flat, src=src, group=group)
            sent += flat.numel() * flat.element_size()
    return sent


def receive_buckets(
    shapes: list[tuple[str, list[int]]],
    group,
    src: int,
    bucket_bytes: int,
    dtype: torch.dtype,
    device: str = "cuda",
) -> Iterator[dict[str, torch.Tensor]]:
    """The receiving side of `broadcast_buckets`: `shapes` are the (name, shape) pairs in parameter order
    (the model's own), bucketed exactly as the sender buckets them (by fp32 size)."""
    import torch.distributed as dist

    bucket: list[tuple[str, list[int]]] = []
    size = 0

    def unpack(entries):
        numels = [int(torch.Size(shape).numel()) for _, shape in entries]
        flat = torch.empty(sum(numels), dtype=dtype, device=device)
        dist.broadcast(flat, src=src, group=group)
        parts = flat.split(numels)
        return {name: part.view(shape) for (name, shape), part in zip(entries, parts, strict=True)}

    for name, shape in shapes:
        nbytes = int(torch.Size(shape).numel()) * 4
        if bucket and size + nbytes > bucket_bytes:
            yield unpack(bucket)
            bucket, size = [], 0
        bucket.append((name, shape))
        size += nbytes
    if bucket:
        yield unpack(bucket)
