"""Sampling k completions per evaluation problem: from an inference service, or in this process.

Two backends, one contract (`generate(problems, spec) -> one list of samples per problem, or None when
the prompt does not fit the model's context`):

- `HttpGenerator`: `POST /v1/generate` of a running inference service, chat messages in chunks of
  `CHUNK_PROMPTS`; the service renders the chat template and decodes.
- `LocalGenerator`: the inference service's own engine class (`VllmEngine`, vLLM's AsyncLLM) started
  here on a model folder, prompts rendered with the folder's chat template the way the service does.
  What vLLM prints (its logger, and everything its engine core and workers write) goes to a log file
  (`output_to`), not among the caller's own lines.

Both give problem i the sampling seed `spec.seed + i` (the engine derives one seed per prompt from the
request seed plus the prompt's index), so a run is reproducible and the two backends draw alike.
A prompt at least as long as the context is not sent: it comes back as None and is scored 0.
Not here: scoring, metrics.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ghpo.services.inference.engine import SamplingSpec
from ghpo.shared.errors import Unprocessable
from ghpo.shared.http import ServiceClient
from ghpo.shared.schemas.inference import GenerateRequest, GenerateResponse
from ghpo.trainer.eval.problems import EvalProblem

CHUNK_PROMPTS = 64
# The largest context the in-process engine is given when the model's config names a larger one: an
# evaluation never needs more, and vLLM sizes buffers by it.
MAX_LOCAL_CONTEXT = 32_768


@dataclass(frozen=True, slots=True)
class Generated:
    text: str
    length: int  # completion tokens
    truncated: bool  # stopped by the token budget, not by the model


Samples = list[Generated] | None  # None: the prompt did not fit the context


class Generator(Protocol):
    async def generate(self, problems: Sequence[EvalProblem], spec: SamplingSpec) -> list[Samples]: ...

    async def close(self) -> None: ...


class HttpGenerator:
    """Generation through a running inference service's `/v1/generate`."""

    def __init__(self, url: str, *, token: str | None = None, timeout_s: float = 1800.0):
        self._client = ServiceClient(url, token=token, timeout=timeout_s, total_budget=timeout_s * 2)
        self._run = uuid.uuid4().hex[:12]

    async def _request(self, problems: Sequence[EvalProblem], spec: SamplingSpec, seed: int | None):
        body = GenerateRequest.model_validate(
            {
                "prompts": [{"messages": p.chat()} for p in problems],
                "sampling": {
                    "n": spec.n,
                    "temperature": spec.temperature,
                    "max_tokens": spec.max_tokens,
                    "seed": seed,
                },
            }
        )
        # Same body, same samples (seeded): retrying the POST after a transport error is safe.
        key = f"eval-{self._run}-{seed}-{len(problems)}"
        response = await self._client.request_json(
            "POST", "/v1/generate", json=body, response_model=GenerateResponse, idempotency_key=key
        )
        return [
            [_sample(s.text, len(s.token_ids), s.finish_reason) for s in r.samples] for r in response.results
        ]

    async def generate(self, problems: Sequence[EvalProblem], spec: SamplingSpec) -> list[Samples]:
        out: list[Samples] = []
        for start in range(0, len(problems), CHUNK_PROMPTS):
            chunk = problems[start : start + CHUNK_PROMPTS]
            seed = None if spec.seed is None else spec.seed + start
            try:
                out.extend(await self._request(chunk, spec, seed))
            except Unprocessable as exc:
                if not (exc.field or "").startswith("prompts."):
                    raise
                # Some prompt is too long for the served context: ask one by one (same seeds), so only
                # the prompts that do not fit are left out.
                for offset, problem in enumerate(chunk):
                    one_seed = None if seed is None else seed + offset
                    try:
                        out.extend(await self._request([problem], spec, one_seed))
                    except Unprocessable as one:
                        if not (one.field or "").startswith("prompts."):
                            raise
                        out.append(None)
        return out

    async def close(self) -> None:
        await self._client.aclose()


@contextlib.contextmanager
def output_to(path: Path | None) -> Iterator[None]:
    """While inside, this process's stdout and stderr file descriptors point at `path` (so do those of
    the processes it starts meanwhile: vLLM's engine core and workers inherit them); on the way out,
    vLLM's logger (configured by then) is pointed there for good. None: nothing changes."""
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    with path.open("ab") as log_file:
        os.dup2(log_file.fileno(), 1)
        os.dup2(log_file.fileno(), 2)
        try:
            yield
        finally:
            _vllm_logger_to(path)
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def _vllm_logger_to(path: Path) -> None:
    """vLLM's logger writes to `path` instead of the stream it configured (same format)."""
    logger = logging.getLogger("vllm")
    if any(getattr(h, "baseFilename", None) == str(path.resolve()) for h in logger.handlers):
        return
    handler = logging.FileHandler(path)
    if logger.handlers:
        handler.setFormatter(logger.handlers[0].formatter)
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)


class LocalGenerator:
    """The inference service's vLLM engine class, started in this process on a model folder."""

    def __init__(self, engine: Any, tokenizer: Any, max_model_len: int, log_path: Path | None = None):
        self._engine = engine
        self._tokenizer = tokenizer
        self.max_model_len = max_model_len
        self.log_path = log_path

    @classmethod
    async def start(
        cls,
        model: Path,
        *,
        device: str = "cpu",
        dtype: str = "float32",
        max_model_len: int | None = None,
        kv_cache_gib: int = 2,
        max_num_seqs: int = 256,
        seed: int = 0,
        log_path: Path | None = None,
    ) -> LocalGenerator:
        from transformers import AutoTokenizer

        from ghpo.services.inference.vllm_engine import VllmEngine

        config = json.loads((Path(model) / "config.json").read_text())
        context = max_model_len or min(int(config.get("max_position_embeddings", 2048)), MAX_LOCAL_CONTEXT)
        starting = VllmEngine.start(  # a coroutine: it runs when awaited, inside output_to
            model=str(model),
            device=device,
            dtype=dtype,
            max_model_len=context,
            kv_cache_gib=kv_cache_gib,
            gpu_memory_utilization=0.85,
            max_num_seqs=max_num_seqs,
            seed=seed,
            logprobs_mode="raw_logprobs",
        )
        with output_to(log_path):
            engine = await starting
        return cls(engine, AutoTokenizer.from_pretrained(model), context, log_path)

    def _render(self, problem: EvalProblem) -> list[int]:
        # As the inference service renders chat prompts (services/inference/app.py Runtime.render_chat).
        rendered = self._tokenizer.apply_chat_template(
            problem.chat(), add_generation_prompt=True, tokenize=True
        )
        if isinstance(rendered, dict) or hasattr(rendered, "input_ids"):
            rendered = rendered["input_ids"]
        return list(rendered)

    async def generate(self, problems: Sequence[EvalProblem], spec: SamplingSpec) -> list[Samples]:
        import asyncio

        async def one(index: int, problem: EvalProblem) -> Samples:
            ids = self._render(problem)
            if len(ids) >= self.max_model_len:  # the service's rule: room for at least one new token
                return None
            seed = None if spec.seed is None else spec.seed + index
            [completions] = await self._engine.generate([ids], dataclasses.replace(spec, seed=seed))
            return [
                _sample(
                    c.text
                    if c.text is not None
                    else self._tokenizer.decode(c.token_ids, skip_special_tokens=True),
                    len(c.token_ids),
                    c.finish_reason,
                )
                for c in completions
            ]

        # One engine request per problem, all at once: vLLM batches them continuously.
        return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(problems))))

    async def close(self) -> None:
        with output_to(self.log_path):
            await self._engine.close()


def _sample(text: str | None, length: int, finish_reason: str) -> Generated:
    if text is None:
        raise ValueError("the inference service returned a sample without text; it must decode completions")
    return Generated(text=text, length=length, truncated=finish_reason == "length")
