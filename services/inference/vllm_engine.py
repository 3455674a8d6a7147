"""The vLLM engine: `AsyncLLM` (vLLM's V1 async engine) in this process, its engine core in a child.

Why `AsyncLLM` and not `vllm.LLM` in a thread: concurrent HTTP requests go straight into one continuously
batched engine (a thread running `LLM.generate` would serialize them into separate batches, or need our own
batcher), a cancelled HTTP request aborts its vLLM requests, and `collective_rpc` is awaitable. The engine
core runs in a child process (vLLM's default), so model compute never blocks the server's event loop;
the model itself runs in a worker process below it (vLLM's CPU platform insists on its "mp" executor
for OpenMP setup), so start-up costs three Python imports of vLLM (~40 s on a busy 2-core machine).

Weights: `collective_rpc("ghpo_reload_weights", folder)` (vllm_worker.py: vLLM's in-place
`reload_weights` of every *.safetensors in the folder, plus a fix for tied embeddings) swaps weights
in a few hundredths of a second for the tiny model; a LoRA adapter update is merged into the pristine
base weights and loaded the same way (`ghpo_merge_adapter`, adapters.py). On CUDA the engine is also
built with vLLM's NCCL weight-transfer backend, and `receive_nccl` runs its init -> start -> update -> finish cycle (the
trainer broadcasting as rank 0, one new NCCL group per update, released after it) then re-ties the
output head. The caller (the update gate) guarantees no request is running meanwhile. Log-probs are requested as `logprobs=0`: only the sampled token's.
Not here: versions, validation (weights.py), HTTP.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path
from typing import Any

from ghpo.services.inference.adapters import read_marker
from ghpo.services.inference.engine import Completion, FinishReason, SamplingSpec
from ghpo.shared.logs import get_logger
from ghpo.shared.progress_bars import bars_shown

log = get_logger(__name__)

_MIN_LOGPROB = -1e6  # the wire bound; a sampled token's log-prob below it (underflow) is clipped
_request_ids = itertools.count()


def engine_args(
    *,
    model: str,
    device: str,
    dtype: str,
    max_model_len: int,
    kv_cache_gib: int,
    gpu_memory_utilization: float,
    max_num_seqs: int,
    seed: int,
    logprobs_mode: str,
) -> Any:
    from vllm.engine.arg_utils import AsyncEngineArgs

    extra: dict[str, Any] = {}
    if device == "cpu":
        # Read by vLLM's CPU worker at start-up; there is no engine argument for it.
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
        # vLLM 0.32 CPU bug: a seeded request whose prompt is split by chunked prefill makes the worker
        # call `set_offset` on a CPU torch.Generator, which raises and kills the engine. Whole prompts
        # per step avoid the split (max_num_batched_tokens then defaults to at least max_model_len).
        extra["enable_chunked_prefill"] = False
        extra["enforce_eager"] = True  # torch.compile buys nothing on CPU and costs start-up time
    else:
        extra["gpu_memory_utilization"] = gpu_memory_utilization
        # The worker builds its NCCL weight-transfer engine at start-up (receive_nccl uses it).
        extra["weight_transfer_config"] = {"backend": "nccl"}
    return AsyncEngineArgs(
        model=model,
        dtype=dtype,
        max_model_len=max_model_len,
        max_num_seqs=max_num_seqs,
        seed=seed,
        logprobs_mode=logprobs_mode,
        # vLLM's own Prometheus collectors would clash across engines in one process (tests, benches).
        disable_log_stats=True,
        use_tqdm_on_load=bars_shown(),  # its weight-loading bar ignores tqdm's switches (shared.progress_bars)
        worker_extension_cls="ghpo.services.inference.vllm_worker.GhpoWorkerExtension",
        **extra,
    )


class VllmEngine:
    """`Engine` backed by vLLM's `AsyncLLM`. Build with `await VllmEngine.start(...)`."""

    def __init__(self, llm: Any, device: str = "cpu", model: str | None = None):
        self._llm = llm
        self.device = device
        self.model = model  # the pristine base folder LoRA adapters are merged into
        self._failed: str | None = None

    @classmethod
    async def start(cls, **kwargs: Any) -> VllmEngine:
        AsyncLLM = preload()

        started = time.monotonic()
        args = engine_args(**kwargs)
        # Building spawns the engine core and waits for it to load the model: blocking, so off the loop.
        engine = cls(
            await asyncio.to_thread(AsyncLLM.from_engine_args, args), kwargs["device"], kwargs["model"]
        )
        log.info("vLLM engine ready in %.1f s (model %s)", time.monotonic() - started, kwargs["model"])
        return engine

    @property
    def nccl_workers(self) -> int:
        return 1 if self.device == "cuda" else 0  # no tensor/pipeline parallelism configured

    async def receive_nccl(self, init_info: dict, update_info: dict) -> None:
        from vllm.distributed.weight_transfer.base import (
            WeightTransferInitRequest,
            WeightTransferUpdateRequest,
        )

        await self._llm.init_weight_transfer_engine(WeightTransferInitRequest(init_info=init_info))
        try:
            await self._llm.start_weight_update()
            await self._llm.update_weights(WeightTransferUpdateRequest(update_info=update_info))
            await self._llm.finish_weight_update()
        except Exception:  # the worker answered, so it is not stuck: release the group. Not on
            # cancellation (timeout): the worker is then blocked in an NCCL call and would never answer.
            await self._llm.shutdown_weight_transfer_engine()
            raise
        await self._llm.shutdown_weight_transfer_engine()
        await self._llm.collective_rpc("ghpo_retie_head")
        await self._llm.reset_prefix_cache()

    def fail(self, reason: str) -> None:
        log.error("engine marked failed: %s", reason)
        self._failed = reason

    async def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]:
        return list(await asyncio.gather(*(self._one(ids, spec, i) for i, ids in enumerate(prompts))))

    async def _one(self, prompt_ids: list[int], spec: SamplingSpec, index: int) -> list[Completion]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        # One seed per prompt (vLLM derives one per sample from it): two identical prompts in one request
        # must not get identical samples, and the same request must get the same samples again.
        seed = None if spec.seed is None else (spec.seed + index) % 2**63
        params = SamplingParams(
            n=spec.n,
            temperature=spec.temperature,
            top_p=spec.top_p,
            top_k=spec.top_k,
            max_tokens=spec.max_tokens,
            stop=list(spec.stop) or None,
            seed=seed,
            logprobs=0,
            output_kind=RequestOutputKind.FINAL_ONLY,
        )
        final = None
        request_id = f"ghpo-{next(_request_ids)}"
        async for output in self._llm.generate(TokensPrompt(prompt_token_ids=prompt_ids), params, request_id):
            final = output
        assert final is not None, "vLLM finished a request without output"
        completions = []
        for sample in sorted(final.outputs, key=lambda s: s.index):
            ids = list(sample.token_ids)
            logprobs = [
                max(_MIN_LOGPROB, step[tok].logprob)
                for tok, step in zip(ids, sample.logprobs or [], strict=True)
            ]
            completions.append(
                Completion(
                    token_ids=ids,
                    logprobs=logprobs,
                    finish_reason=_finish(sample.finish_reason),
                    text=sample.text,
                )
            )
        return completions

    async def load_weights(self, folder: Path) -> None:
        adapter = read_marker(folder)
        if adapter is None:
            await self._llm.collective_rpc("ghpo_reload_weights", args=(str(folder),))
        else:  # a LoRA adapter: merged into the pristine base (adapters.py)
            await self._llm.collective_rpc(
                "ghpo_merge_adapter", args=(str(self.model), str(folder), adapter.scaling)
            )
        # Cached prefixes hold keys/values computed by the old weights.
        await self._llm.reset_prefix_cache()

    def healthy(self) -> bool:
        return self._failed is None and not self._llm.errored

    async def close(self) -> None:
        # Its output handler waits on the engine core: cancelled first, it does not log the core's exit
        # as an EngineDeadError with a traceback.
        handler = getattr(self._llm, "output_handler", None)
        if handler is not None:
            handler.cancel()
        await asyncio.to_thread(self._llm.shutdown)


def preload() -> Any:
    """Import vLLM's engine (returns `AsyncLLM`). A process that runs the engine in itself (`ghpo eval`)
    calls this first thing, while its stack holds no engine: importing vLLM keeps a traceback of an
    optional import that failed (torchcodec, in vllm.multimodal), and with it every frame on the stack at
    that moment, locals included. Imported from deep inside the engine's start-up, those frames would
    keep the `AsyncLLM` alive until the interpreter tears its modules down, when its `__del__` fails
    ("Exception ignored in: AsyncLLM.__del__ ... TypeError: 'NoneType' object is not callable")."""
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncLLM


def _finish(reason: str | None) -> FinishReason:
    if reason in ("stop", "length"):
        return reason  # type: ignore[return-value]
    return "abort"
