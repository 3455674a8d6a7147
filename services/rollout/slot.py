"""A drawn prompt's state while its GHPO step runs: `Slot`, the generation rounds it went through
(`Round`) and the completions its group trains on (`Row`); and `StepClock`, a step's time split.

Plain data with no I/O: the sampler fills a slot round by round, the producer settles it (queued or
dropped with its reason). A slot holds the latest round's samples, rewards and accuracies; earlier rounds
leave only their `Round` (what the broker learns) and, with `ghpo.keep_unhinted`, the kept unhinted rows.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from ghpo.shared.data.records import PromptRecord
from ghpo.shared.schemas.inference import Sample
from ghpo.shared.schemas.rollout import DropReason

T = TypeVar("T")


@dataclass(frozen=True)
class Round:
    """One generation round of a group: its hint level and how many of its `size` completions were right."""

    level: int
    correct: int
    size: int


@dataclass(frozen=True)
class Row:
    """One completion of a group as trained. `unhinted`: sampled without the hint into a group that ended
    hinted (a kept plain rollout, ghpo.keep_unhinted)."""

    sample: Sample
    reward: float
    accuracy: float
    unhinted: bool = False


@dataclass
class Slot:
    """One drawn prompt's group while its step runs."""

    g: int
    epoch: int
    position: int
    record: PromptRecord
    level: int = 0
    max_level: int = 0
    rounds: list[Round] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)  # the latest round's prompt, as the model saw it
    plain_prompt_ids: list[int] | None = None
    samples: list[Sample] = field(default_factory=list)  # the latest round's, then its scores:
    rewards: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    kept: list[Row] = field(default_factory=list)  # unhinted rows that take the place of hinted ones
    generated: int = 0  # completions generated for this group over all its rounds (the generation budget)
    drop: DropReason | None = None
    final: bool = False

    @property
    def group_id(self) -> str:
        return f"e{self.epoch}-p{self.position}"

    @property
    def plain_accuracy(self) -> float | None:
        """Accuracy of the unhinted round; None when the group started hinted (or has no round yet)."""
        first = self.rounds[0] if self.rounds else None
        return first.correct / first.size if first is not None and first.level == 0 else None

    def rows(self) -> list[Row]:
        """The group as trained: with kept unhinted completions (ghpo.keep_unhinted = k) they come first,
        flagged, then the last G - k of the final round."""
        final = zip(self.samples, self.rewards, self.accuracies, strict=True)
        return self.kept + [Row(*scored) for scored in final][len(self.kept) :]

    def final_rewards(self) -> list[float]:
        """The rewards of `rows()`, in its order."""
        return [row.reward for row in self.kept] + self.rewards[len(self.kept) :]


@dataclass
class StepClock:
    """Wall time of a step and the part of it spent awaiting upstream services."""

    started: float = field(default_factory=time.perf_counter)
    upstream_s: float = 0.0

    async def timed(self, call: Awaitable[T]) -> T:
        """Await `call`, its time counted as upstream."""
        began = time.perf_counter()
        try:
            return await call
        finally:
            self.upstream_s += time.perf_counter() - began

    def overhead_s(self) -> float:
        return max(0.0, time.perf_counter() - self.started - self.upstream_s)
