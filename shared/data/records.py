"""The one record type every prompt source is mapped onto.

GHPO needs three fields per prompt (algorithm doc, section 3): the problem, the gold answer and a
worked solution (used for hints). Sources without worked solutions (AMC23) keep `solution=None`:
such prompts are evaluated but never hinted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PromptRecord:
    id: str
    problem: str
    answer: str
    solution: str | None = None
    source: str = ""
    level: int | None = None
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def hintable(self) -> bool:
        return bool(self.solution)


def content_id(problem: str, answer: str) -> str:
    """Stable id for sources without one: a hash of the content, independent of row order."""
    digest = hashlib.sha256(f"{problem}\x1f{answer}".encode()).hexdigest()
    return digest[:16]
