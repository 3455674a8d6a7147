"""Wire schemas of the inference service API (`/v1`): generation and versioned weight updates.

Generation: `POST /v1/generate` takes many prompts (chat messages, rendered with the model's chat template
by the service, or token ids used as-is) and sampling parameters, and returns `n` samples per prompt with
the sampled token ids, the log-prob of each sampled token under the sampling policy (the "behaviour"
log-probs), the finish reason and the policy version the sample was produced under. `POST /v1/tokenize`
takes prompts in the same form and returns only their token ids, as generation would see them.

Weight updates (HTTP path, CPU and multi-host): `begin` announces a version with its tensor specs and the
SHA-256 of all chunk bytes in order; `chunk`s carry safetensors bytes as the raw request body (metadata in
`WeightChunkHeader` query parameters), each with its own SHA-256; a tensor larger than a chunk travels
instead as byte-range slices (`TensorSlice`: the chunk's raw body is those bytes of the tensor); `commit`
makes the version served only if every announced tensor (every byte of a sliced one) arrived and the
checksum matches. On GPU the trainer can instead broadcast the weights over NCCL
(`NcclUpdateRequest`, vLLM's weight-transfer API). Versions are monotonic: a version not greater
than the served one is refused (409). Tensor names are the checkpoint's (Hugging Face) names as
stored in the served model's safetensors files; an update carries every one of them (a tied `lm_head`
is not stored, so it is not sent), or, for a LoRA run, is an adapter (`AdapterSpec`). Requests in
flight during a commit finish on the old weights; new ones wait for the swap.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from ghpo.shared.schemas.common import (
    Id,
    LogProb,
    Name,
    PolicyVersion,
    Sha256Hex,
    ShortStr,
    Text,
    TokenIds,
    WireModel,
)

MAX_PROMPTS_PER_REQUEST = 4096
MAX_SAMPLES_PER_PROMPT = 256
MAX_MESSAGES = 64
MAX_TENSORS = 100_000
MAX_TENSOR_DIMS = 8
MAX_WEIGHTS_BYTES = 2**40  # 1 TiB
# NCCL updates: packed broadcast buckets in flight. Not on the wire, but both sides of the broadcast must use
# the same number (the trainer's sender and the service's vLLM workers, which get it in their init info).
NCCL_NUM_BUFFERS = 2

# A pushed weights version: always >= 1 (0 is the initial policy, never pushed).
UpdateVersion = Annotated[int, Field(ge=1, le=2**53)]
FinishReason = Literal["stop", "length", "abort"]
TensorDtype = Literal["float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool"]


class ChatMessage(WireModel):
    role: Literal["system", "user", "assistant"]
    content: Text


class Prompt(WireModel):
    """Exactly one of `messages` (chat, templated by the service) or `token_ids` (used verbatim)."""

    id: Id | None = Field(None, description="Caller's id, echoed in the result.")
    messages: list[ChatMessage] | None = Field(None, min_length=1, max_length=MAX_MESSAGES)
    token_ids: TokenIds | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Prompt:
        if (self.messages is None) == (self.token_ids is None):
            raise ValueError("give exactly one of 'messages' or 'token_ids'")
        if self.token_ids is not None and not self.token_ids:
            raise ValueError("token_ids must not be empty")
        return self


class SamplingParams(WireModel):
    n: int = Field(1, ge=1, le=MAX_SAMPLES_PER_PROMPT, description="Samples per prompt (G).")
    temperature: float = Field(1.0, ge=0.0, le=10.0, description="0 means greedy.")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(-1, ge=-1, le=1_000_000, description="-1 disables top-k.")
    max_tokens: int = Field(256, ge=1, le=131_072, description="Most completion tokens per sample.")
    stop: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=16
    )
    seed: int | None = Field(
        None, ge=0, le=2**63 - 1, description="Same seed, prompts and weights: same samples."
    )

    @model_validator(mode="after")
    def _greedy_is_one_sample(self) -> SamplingParams:
        # vLLM refuses it deep in the engine (a 500 that looks transient and is retried); say it here.
        if self.temperature == 0.0 and self.n > 1:
            raise ValueError(f"n must be 1 when temperature is 0 (greedy gives one sample); got n={self.n}")
        return self


class GenerateRequest(WireModel):
    prompts: list[Prompt] = Field(min_length=1, max_length=MAX_PROMPTS_PER_REQUEST)
    sampling: SamplingParams = Field(default_factory=SamplingParams)
    min_policy_version: PolicyVersion | None = Field(
        None, description="Refuse (409) if the served weights are older than this version."
    )


class Sample(WireModel):
    token_ids: TokenIds
    logprobs: list[LogProb] = Field(max_length=131_072, description="Log-prob of each sampled token.")
    finish_reason: FinishReason
    policy_version: PolicyVersion = Field(description="Weights version the sample was generated under.")
    text: Text | None = Field(None, description="Decoded completion, when the service decodes.")

    @model_validator(mode="after")
    def _aligned(self) -> Sample:
        if len(self.logprobs) != len(self.token_ids):
            raise ValueError(f"logprobs has {len(self.logprobs)} entries for {len(self.token_ids)} tokens")
        return self


class PromptResult(WireModel):
    prompt_id: Id | None = None
    prompt_token_ids: TokenIds = Field(description="The prompt as the model saw it (after templating).")
    samples: list[Sample] = Field(max_length=MAX_SAMPLES_PER_PROMPT)


class GenerateResponse(WireModel):
    results: list[PromptResult] = Field(max_length=MAX_PROMPTS_PER_REQUEST, description="In request order.")
    model: Name


class TokenizeRequest(WireModel):
    """`POST /v1/tokenize`: prompts in `/v1/generate`'s form; nothing is generated."""

    prompts: list[Prompt] = Field(min_length=1, max_length=MAX_PROMPTS_PER_REQUEST)


class TokenizedPrompt(WireModel):
    prompt_id: Id | None = None
    prompt_token_ids: TokenIds = Field(description="The prompt as /v1/generate would feed it to the model.")


class TokenizeResponse(WireModel):
    results: list[TokenizedPrompt] = Field(
        max_length=MAX_PROMPTS_PER_REQUEST, description="In request order."
    )


class TensorSpec(WireModel):
    name: Annotated[str, Field(min_length=1, max_length=512)]
    dtype: TensorDtype
    shape: list[Annotated[int, Field(ge=0, le=2**40)]] = Field(max_length=MAX_TENSOR_DIMS)


class AdapterSpec(WireModel):
    """A weight update that is a LoRA adapter: every tensor is `<layer>.lora_A.weight` (rank x in) or
    `<layer>.lora_B.weight` (out x rank) for a `<layer>.weight` of the served checkpoint; the service
    serves base + scaling * B @ A, always from its pristine base weights (a new adapter version replaces
    the previous one; layers it does not carry serve the base)."""

    kind: Literal["lora"] = "lora"
    scaling: float = Field(gt=0.0, le=1e6, description="alpha / rank of the adapter.")


class WeightUpdateBegin(WireModel):
    """`POST /v1/weights/updates`: announce version `version` (> served version)."""

    version: UpdateVersion
    tensors: list[TensorSpec] = Field(min_length=1, max_length=MAX_TENSORS)
    total_bytes: int = Field(ge=1, le=MAX_WEIGHTS_BYTES, description="Sum of all chunk body sizes.")
    num_chunks: int = Field(ge=1, le=1_000_000)
    checksum: Sha256Hex = Field(description="SHA-256 of all chunk bodies concatenated in index order.")
    adapter: AdapterSpec | None = Field(None, description="Set: the tensors are a LoRA adapter, not weights.")


class WeightUpdateSession(WireModel):
    update_id: Id
    version: PolicyVersion
    max_chunk_bytes: int = Field(ge=1, le=MAX_WEIGHTS_BYTES)


class TensorSlice(WireModel):
    """Bytes `[start, stop)` of one announced tensor (C order, its announced dtype, little-endian).

    Bounds are multiples of the dtype's size; the slices of a tensor cover it exactly once.
    """

    tensor: Annotated[str, Field(min_length=1, max_length=512)]
    start: int = Field(ge=0, le=MAX_WEIGHTS_BYTES)
    stop: int = Field(ge=1, le=MAX_WEIGHTS_BYTES)

    @model_validator(mode="after")
    def _ordered(self) -> TensorSlice:
        if self.stop <= self.start:
            raise ValueError(f"stop ({self.stop}) must be greater than start ({self.start})")
        return self


class WeightChunkHeader(WireModel):
    """`PUT /v1/weights/updates/{update_id}/chunks/{index}?checksum=...[&tensor=&start=&stop=]`.

    Body: one safetensors file holding whole tensors, or, when `tensor`, `start` and `stop` are given
    (all three or none), the raw bytes of that `TensorSlice`. `index` (path) is 0..num_chunks-1; each
    announced tensor is either in exactly one chunk or split over slice chunks covering all its bytes
    exactly once. A chunk re-sent with identical bytes is accepted again (a retry); with different bytes
    it is a 409.
    """

    index: int = Field(ge=0, le=999_999)
    checksum: Sha256Hex = Field(description="SHA-256 of this chunk's body.")
    tensor: Annotated[str, Field(min_length=1, max_length=512)] | None = None
    start: int | None = Field(None, ge=0, le=MAX_WEIGHTS_BYTES)
    stop: int | None = Field(None, ge=1, le=MAX_WEIGHTS_BYTES)

    @model_validator(mode="after")
    def _all_or_none(self) -> WeightChunkHeader:
        given = [v is not None for v in (self.tensor, self.start, self.stop)]
        if any(given) and not all(given):
            raise ValueError("a slice chunk needs all of 'tensor', 'start' and 'stop'")
        return self

    def slice(self) -> TensorSlice | None:
        if self.tensor is None or self.start is None or self.stop is None:
            return None
        return TensorSlice(tensor=self.tensor, start=self.start, stop=self.stop)


class WeightChunkReceipt(WireModel):
    update_id: Id
    index: int = Field(ge=0, le=999_999)
    received_chunks: int = Field(ge=0, le=1_000_000)
    received_bytes: int = Field(ge=0, le=MAX_WEIGHTS_BYTES)
    repeated: bool = Field(False, description="True when this exact chunk had already arrived (no-op).")


class WeightUpdateCommit(WireModel):
    """`POST /v1/weights/updates/{update_id}/commit`: serve the version if complete and verified."""

    version: UpdateVersion
    checksum: Sha256Hex


class NcclUpdateRequest(WireModel):
    """`POST /v1/weights/nccl`: receive version `version` by NCCL broadcast from trainer rank 0 (GPU only).

    The trainer posts this, then joins the NCCL group it names (it hosts the rendezvous at
    `master_address:master_port` as rank 0; the service's workers are ranks 1..world_size-1) and
    broadcasts `tensors` in this order, packed into buckets of `bucket_bytes`. The response comes once
    the new version is served; past `timeout_s` (rendezvous, drain and transfer together) the served
    version stays as it was and the service answers 503.
    """

    version: UpdateVersion
    master_address: Annotated[str, Field(min_length=1, max_length=253)]
    master_port: int = Field(ge=1, le=65535)
    world_size: int = Field(ge=2, le=4096, description="1 (trainer rank 0) + the service's GPU workers.")
    tensors: list[TensorSpec] = Field(min_length=1, max_length=MAX_TENSORS)
    bucket_bytes: int = Field(ge=1 << 20, le=1 << 36, description="Size of one packed broadcast bucket.")
    timeout_s: float | None = Field(
        None, gt=0.0, le=3600.0, description="Whole-transfer timeout; default: the service's setting."
    )


class WeightsStatus(WireModel):
    """`GET /v1/weights`: what is served now."""

    policy_version: PolicyVersion
    model: Name
    pending_update: Id | None = None
    max_chunk_bytes: int = Field(
        ge=1, le=MAX_WEIGHTS_BYTES, description="Largest chunk body the service accepts (pack below it)."
    )
    last_update_seconds: float | None = Field(None, ge=0.0, le=1e6)
    nccl_workers: int = Field(
        0,
        ge=0,
        le=4095,
        description="GPU workers joining an NCCL update (its world_size is 1 + this); 0: no NCCL updates.",
    )
    notes: ShortStr | None = None
