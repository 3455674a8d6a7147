"""HTTP API of the inference service: `POST /v1/generate`, `POST /v1/tokenize` and the weight-update routes
under `/v1/weights`.

Generation: chat prompts are rendered with the model's chat template here, token-id prompts are used
as-is; prompt length (422) and request size (413) are checked before anything reaches the engine, and
each sample reports the version it was produced under (see engine.UpdateGate). Tokenization renders
prompts the same way, with the same length check, and generates nothing. Weight updates: begin,
chunks (raw safetensors bodies, or raw byte-range slices of one big tensor), commit, abort; validation
lives in weights.py and slices.py. Not here: the engine, the runtime and its guard (runtime.py), the NCCL
update route (nccl_api.py), the app shell (app.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import ValidationError

from ghpo.services.inference import metrics
from ghpo.services.inference.engine import SamplingSpec, UpdateGate
from ghpo.services.inference.runtime import Runtime, loaded_runtime, weights_status_of
from ghpo.services.inference.settings import Settings
from ghpo.services.inference.slices import validate_slice_body
from ghpo.services.inference.weights import WeightUpdates, validate_chunk
from ghpo.shared.errors import Conflict, GhpoError, PayloadTooLarge, Unavailable, Unprocessable
from ghpo.shared.schemas.common import Sha256Hex
from ghpo.shared.schemas.inference import (
    GenerateRequest,
    GenerateResponse,
    Prompt,
    PromptResult,
    Sample,
    TensorSlice,
    TokenizedPrompt,
    TokenizeRequest,
    TokenizeResponse,
    WeightChunkHeader,
    WeightChunkReceipt,
    WeightsStatus,
    WeightUpdateBegin,
    WeightUpdateCommit,
    WeightUpdateSession,
)

router = APIRouter(prefix="/v1", tags=["inference"])


def _prompt_ids(given: list[Prompt], runtime: Runtime, settings: Settings) -> list[list[int]]:
    prompts = []
    for i, prompt in enumerate(given):
        if prompt.token_ids is not None:
            ids = prompt.token_ids
            bad = next((t for t in ids if t >= runtime.vocab_size), None)
            if bad is not None:
                raise Unprocessable(
                    f"token id {bad} is outside the vocabulary (size {runtime.vocab_size})",
                    field=f"prompts.{i}.token_ids",
                )
        else:
            messages = [m.model_dump() for m in prompt.messages or []]
            ids = runtime.render_chat(messages)
        if len(ids) >= settings.max_model_len:
            raise Unprocessable(
                f"prompt has {len(ids)} tokens; max_model_len is {settings.max_model_len} (prompt plus at least one generated token)",
                field=f"prompts.{i}",
            )
        prompts.append(ids)
    return prompts


@router.post("/generate", response_model=GenerateResponse)
async def generate(body: GenerateRequest, request: Request) -> GenerateResponse:
    """`sampling.n` samples per prompt, each with token ids, per-token log-probs and its policy version."""
    settings: Settings = request.app.state.settings
    try:
        runtime = loaded_runtime(request)
        sampling = body.sampling
        if len(body.prompts) > settings.max_prompts_per_request:
            raise PayloadTooLarge(
                f"{len(body.prompts)} prompts; max_prompts_per_request is {settings.max_prompts_per_request}",
                field="prompts",
            )
        if len(body.prompts) * sampling.n > settings.max_samples_per_request:
            raise PayloadTooLarge(
                f"{len(body.prompts)} prompts x n={sampling.n} samples; max_samples_per_request is {settings.max_samples_per_request}",
                field="sampling.n",
            )
        prompts = _prompt_ids(body.prompts, runtime, settings)
        gate: UpdateGate = runtime.gate
        if body.min_policy_version is not None and gate.version < body.min_policy_version:
            raise Conflict(
                f"served version {gate.version} is older than min_policy_version {body.min_policy_version}",
                field="min_policy_version",
            )
        spec = SamplingSpec(
            n=sampling.n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=sampling.max_tokens,
            stop=tuple(sampling.stop),
            seed=sampling.seed,
        )
    except GhpoError:
        metrics.GENERATE_REQUESTS.labels(outcome="rejected").inc()
        raise
    try:
        async with gate.generation() as version:
            started = time.perf_counter()
            completions = await runtime.engine.generate(prompts, spec)
            metrics.GENERATE_DURATION.observe(time.perf_counter() - started)
    except Exception as exc:
        metrics.GENERATE_REQUESTS.labels(outcome="failed").inc()
        if not runtime.engine.healthy():  # readiness now fails too; the orchestrator restarts us
            raise Unavailable(f"engine died: {type(exc).__name__}: {exc}", retry_after=30.0) from exc
        raise
    metrics.GENERATE_REQUESTS.labels(outcome="ok").inc()
    metrics.PROMPT_TOKENS.inc(sum(len(p) for p in prompts))
    results = []
    for prompt, ids, samples in zip(body.prompts, prompts, completions, strict=True):
        for c in samples:
            metrics.GENERATED_TOKENS.inc(len(c.token_ids))
            metrics.SAMPLES.labels(finish_reason=c.finish_reason).inc()
        results.append(
            PromptResult(
                prompt_id=prompt.id,
                prompt_token_ids=ids,
                samples=[
                    Sample(
                        token_ids=c.token_ids,
                        logprobs=c.logprobs,
                        finish_reason=c.finish_reason,
                        policy_version=version,
                        text=c.text,
                    )
                    for c in samples
                ],
            )
        )
    return GenerateResponse(results=results, model=runtime.model_name)


@router.post("/tokenize", response_model=TokenizeResponse)
async def tokenize(body: TokenizeRequest, request: Request) -> TokenizeResponse:
    """Each prompt's token ids as `/v1/generate` would feed them to the model, or its 422 for a prompt too
    long; nothing reaches the engine and the served weights do not matter."""
    prompts = _prompt_ids(body.prompts, loaded_runtime(request), request.app.state.settings)
    return TokenizeResponse(
        results=[
            TokenizedPrompt(prompt_id=prompt.id, prompt_token_ids=ids)
            for prompt, ids in zip(body.prompts, prompts, strict=True)
        ]
    )


@router.get("/weights", response_model=WeightsStatus)
async def weights_status(request: Request) -> WeightsStatus:
    return weights_status_of(loaded_runtime(request))


@router.post("/weights/updates", response_model=WeightUpdateSession, status_code=201)
async def begin_update(body: WeightUpdateBegin, request: Request) -> WeightUpdateSession:
    """Announce version `body.version` with every tensor's spec; replaces any pending update."""
    runtime = loaded_runtime(request)
    pending = runtime.updates.begin(body, runtime.gate.version)
    return WeightUpdateSession(
        update_id=pending.update_id, version=body.version, max_chunk_bytes=runtime.updates.max_chunk_bytes
    )


def _chunk_slice(
    index: int, checksum: str, tensor: str | None, start: int | None, stop: int | None
) -> TensorSlice | None:
    """The slice a chunk's query parameters name (None: a safetensors chunk), or a 422 naming the field."""
    try:
        return WeightChunkHeader(
            index=index, checksum=checksum, tensor=tensor, start=start, stop=stop
        ).slice()
    except ValidationError as exc:
        first = exc.errors()[0]
        default = "stop" if exc.title == "TensorSlice" else "tensor"  # model-level checks have no location
        where = ".".join(str(p) for p in first.get("loc", ())) or default
        raise Unprocessable(f"{where}: {first.get('msg', 'invalid')}", field=where) from None


@router.put("/weights/updates/{update_id}/chunks/{index}", response_model=WeightChunkReceipt)
async def put_chunk(
    update_id: str,
    index: int,
    request: Request,
    checksum: Annotated[Sha256Hex, Query(description="SHA-256 of the body.")],
    tensor: Annotated[str | None, Query(max_length=512, description="Sliced tensor's name.")] = None,
    start: Annotated[int | None, Query(ge=0, description="First byte of the slice.")] = None,
    stop: Annotated[int | None, Query(ge=1, description="End (exclusive) of the slice.")] = None,
) -> WeightChunkReceipt:
    """One chunk: a safetensors file as the raw body, or with `tensor`/`start`/`stop` a slice's raw bytes."""
    runtime = loaded_runtime(request)
    updates: WeightUpdates = runtime.updates
    piece = _chunk_slice(index, checksum, tensor, start, stop)
    body = await request.body()
    pending = updates.precheck_chunk(update_id, index, len(body), checksum, piece)
    repeated = pending is None
    if pending is not None and piece is not None:
        spec = pending.specs[piece.tensor]
        await asyncio.to_thread(validate_slice_body, body, checksum, spec, index)
        updates.store_slice(pending, index, body, checksum, piece)
    elif pending is not None:
        names = await asyncio.to_thread(validate_chunk, body, checksum, pending, index)
        updates.store_chunk(pending, index, body, checksum, names)
    current = updates.get(update_id)
    return WeightChunkReceipt(
        update_id=update_id,
        index=index,
        received_chunks=len(current.chunks),
        received_bytes=sum(current.chunk_bytes.values()),
        repeated=repeated,
    )


@router.post("/weights/updates/{update_id}/commit", response_model=WeightsStatus)
async def commit_update(update_id: str, body: WeightUpdateCommit, request: Request) -> WeightsStatus:
    """Serve the update if complete and verified: drain in-flight generations, load, bump the version."""
    runtime = loaded_runtime(request)
    updates: WeightUpdates = runtime.updates
    settings: Settings = request.app.state.settings
    if updates.last_committed == (update_id, body.version):
        return weights_status_of(runtime)  # a retried commit that already took effect
    pending = updates.get(update_id)
    await asyncio.to_thread(updates.verify_complete, pending, body.version, body.checksum)
    started = time.perf_counter()
    if updates.committing is not None:
        raise Conflict(f"update {updates.committing} is being committed", field="update_id")
    updates.committing = update_id
    try:
        async with runtime.gate.swap(settings.update_drain_timeout_s):
            if updates.pending is not pending or pending.begin.version <= runtime.gate.version:
                raise Conflict(
                    f"update {update_id} was superseded while waiting for the drain", field="update_id"
                )
            try:
                await runtime.engine.load_weights(pending.folder)
            except Exception:
                metrics.UPDATE_FAILURES.labels(reason="engine").inc()
                raise
            runtime.gate.set_version(pending.begin.version)
    except Unavailable:
        metrics.UPDATE_FAILURES.labels(reason="drain_timeout").inc()
        raise
    finally:
        updates.committing = None
    updates.committed(pending, time.perf_counter() - started)
    return weights_status_of(runtime)


@router.delete("/weights/updates/{update_id}", status_code=204)
async def abort_update(update_id: str, request: Request) -> Response:
    runtime = loaded_runtime(request)
    runtime.updates.get(update_id)
    runtime.updates.discard()
    return Response(status_code=204)
