"""Settings of the inference service (environment variables `GHPO_INFERENCE_*`).

The model folder and the engine's sizing (dtype, context length, KV cache), the request limits, and the
weight-update limits. Nothing here builds an engine or touches HTTP.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from ghpo.shared.schemas.inference import MAX_PROMPTS_PER_REQUEST, MAX_WEIGHTS_BYTES
from ghpo.shared.settings import MiB, ServiceSettings

GiB = 1024 * MiB


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GHPO_INFERENCE_", extra="forbid", validate_default=True)

    port: int = Field(8103, ge=1, le=65535, description="TCP port to listen on.")
    model: str = Field(
        min_length=1,
        max_length=4096,
        description="Hugging Face model folder (config, safetensors, tokenizer).",
    )
    served_model_name: str = Field(
        "", max_length=128, description="Name reported in responses; empty: the model folder's name."
    )
    device: Literal["cpu", "cuda"] = Field("cpu", description="Where vLLM runs (its CPU or CUDA build).")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights/activation dtype; float32 on CPU (several times faster than bf16)."
    )
    max_model_len: int = Field(
        2048, ge=16, le=131_072, description="Longest prompt + completion in tokens; longer prompts get 422."
    )
    kv_cache_gib: int = Field(
        2, ge=1, le=1024, description="CPU only: KV cache size in GiB (sets VLLM_CPU_KVCACHE_SPACE)."
    )
    gpu_memory_utilization: float = Field(
        0.85, ge=0.05, le=0.99, description="CUDA only: share of GPU memory vLLM may take."
    )
    max_num_seqs: int = Field(256, ge=1, le=8192, description="Most sequences vLLM runs in one batch.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Engine seed (requests without a seed).")
    logprobs_mode: Literal["raw_logprobs", "processed_logprobs"] = Field(
        "processed_logprobs",
        description="Which log-probs samples report: those of the distribution sampled from (after "
        "temperature/top-p/top-k; the behaviour policy the trainer's importance weights need), or the "
        "model's own (temperature 1, before top-p/k).",
    )
    max_prompts_per_request: int = Field(
        1024, ge=1, le=MAX_PROMPTS_PER_REQUEST, description="Most prompts in one /v1/generate; more: 413."
    )
    max_samples_per_request: int = Field(
        16384, ge=1, le=1_048_576, description="Most prompts x n in one /v1/generate; more: 413."
    )
    max_chunk_bytes: int = Field(
        8 * MiB, ge=1024, le=4096 * MiB, description="Largest weight-update chunk body (<= max_body_bytes)."
    )
    max_update_bytes: int = Field(
        64 * GiB, ge=1024, le=MAX_WEIGHTS_BYTES, description="Largest announced weight update, all chunks."
    )
    staging_dir: str = Field(
        "", max_length=4096, description="Where update chunks are staged on disk; empty: a temp folder."
    )
    update_drain_timeout_s: float = Field(
        600.0,
        ge=1.0,
        le=7200.0,
        description="How long a commit waits for in-flight generations to finish on the old weights; past "
        "it the commit gets 503 and the update stays pending.",
    )

    nccl_timeout_s: float = Field(
        300.0,
        ge=1.0,
        le=3600.0,
        description="CUDA only: default time limit of a whole NCCL weight update (rendezvous with the trainer, "
        "drain, broadcast); past it the served version stays and the engine is restarted.",
    )

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.max_chunk_bytes > self.max_body_bytes:
            raise ValueError(
                f"max_chunk_bytes ({self.max_chunk_bytes}) must not exceed max_body_bytes ({self.max_body_bytes})"
            )
        if self.max_samples_per_request < self.max_prompts_per_request:
            raise ValueError("max_samples_per_request must be at least max_prompts_per_request")
        return self
