"""The engine interface of the inference service, and the update gate that keeps each sample on one
weights version.

An `Engine` generates `n` samples for each of many token-id prompts and loads a new set of weights from a
folder of safetensors files. Chat templating, validation and versioning live outside it (api.py,
weights.py), so any engine (vLLM on CPU or GPU, a future one) plugs in by implementing `Engine`
(an engine that cannot receive NCCL updates reports `nccl_workers == 0`).

`UpdateGate` is the policy for requests in flight during an update: **they finish on the old weights**.
A commit closes the gate (new generate calls wait, they are paused, not refused), waits until the
in-flight ones drain, loads the weights, bumps the version and reopens. So every sample is produced
entirely under the version it reports. Deliberately not vLLM's `pause_generation`: the gate also tells
each request which version it ran under, which the engine alone cannot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from ghpo.services.inference import metrics
from ghpo.shared.errors import Unavailable

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True, slots=True)
class SamplingSpec:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(slots=True)
class Completion:
    token_ids: list[int]
    logprobs: list[float]  # log-prob of each sampled token
    finish_reason: FinishReason
    text: str | None = None


class Engine(Protocol):
    """What the service needs from a generation engine."""

    async def generate(self, prompts: list[list[int]], spec: SamplingSpec) -> list[list[Completion]]:
        """`spec.n` completions for each prompt, in prompt order."""
        ...

    async def load_weights(self, folder: Path) -> None:
        """Replace the served weights with the safetensors files in `folder` (checkpoint names)."""
        ...

    def healthy(self) -> bool:
        """False once the engine has died or was marked failed (readiness then fails)."""
        ...

    @property
    def nccl_workers(self) -> int:
        """GPU workers that join an NCCL weight update; 0 when the engine cannot receive one (CPU)."""
        ...

    async def receive_nccl(self, init_info: dict, update_info: dict) -> None:
        """Join trainer rank 0's NCCL group and load the weights it broadcasts (vLLM weight-transfer API)."""
        ...

    def fail(self, reason: str) -> None:
        """Mark the engine unusable (e.g. stuck in an NCCL call, or holding half-loaded weights)."""
        ...

    async def close(self) -> None: ...


@dataclass
class UpdateGate:
    """Counts generations in flight; a weights swap waits for zero and holds new ones back meanwhile."""

    version: int = 0
    _inflight: int = 0
    _open: asyncio.Event = field(default_factory=asyncio.Event)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _swap: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self._open.set()
        self._idle.set()
        metrics.WEIGHTS_VERSION.set(self.version)

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def swapping(self) -> bool:
        return not self._open.is_set()

    @contextlib.asynccontextmanager
    async def generation(self) -> AsyncIterator[int]:
        """Hold the current version for one generate call; yields the version."""
        await self._open.wait()
        self._inflight += 1
        self._idle.clear()
        metrics.INFLIGHT.set(self._inflight)
        try:
            yield self.version
        finally:
            self._inflight -= 1
            metrics.INFLIGHT.set(self._inflight)
            if self._inflight == 0:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def swap(self, drain_timeout_s: float) -> AsyncIterator[None]:
        """Close the gate, wait for in-flight calls to drain, run the block, reopen.

        A drain that times out reopens the gate untouched and raises `Unavailable` (503).
        """
        async with self._swap:
            self._open.clear()
            try:
                try:
                    await asyncio.wait_for(self._idle.wait(), drain_timeout_s)
                except TimeoutError:
                    raise Unavailable(
                        f"{self._inflight} generation(s) still running after {drain_timeout_s} s "
                        "(update_drain_timeout_s); the update stays pending, commit again",
                        retry_after=5.0,
                    ) from None
                yield
            finally:
                self._open.set()

    def set_version(self, version: int) -> None:
        self.version = version
        metrics.WEIGHTS_VERSION.set(version)
