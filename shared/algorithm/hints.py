"""The GHPO hint: the first part of a worked solution appended to the problem (torch-free).

The template is the reference code's, byte for byte:

    problem + HINT_SEPARATOR + solution[:round(len(solution) * ratio)]

`round` is Python's round-half-to-even ("banker's rounding"): a 10-character solution at ratio 0.25 keeps
round(2.5) = 2 characters, a 14-character one keeps round(3.5) = 4. The character cut is the default
because it is what the paper trained with (it can cut mid-word or mid-LaTeX). Two other cuts are offered:
- "line":  the longest prefix that ends at a line break and is no longer than the character cut (the
           break itself is not kept). When the first line alone is longer than the character cut, there
           is no such prefix and the character cut is used, so a hint with ratio > 0 is never emptier
           than the reference one.
- "token": the solution is tokenised and round(n_tokens * ratio) tokens are kept (same rounding).

Hint levels: level 0 means no hint; level k (1-based) means ratio ladder[k-1]. A prompt without a worked
solution can never be hinted: asking for it is an error, not a silent no-op.

The separator text can be replaced (a run config's `[prompt] hint_separator`); the reference's is the
default.

What this module deliberately does not do: chat templating (the hint goes into the user turn, after the
problem, before any template is applied; ghpo.shared.data.template builds the turns) or deciding *whether*
to hint (see `difficulty`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

HINT_SEPARATOR = (
    "\n The following text is the beginning part of the answer, "
    "which you can refer to for solving the problem:\n"
)


@runtime_checkable
class TokenCodec(Protocol):
    """Tokenizer-like object: `encode` must not add special tokens (see `hf_codec`)."""

    def encode(self, text: str) -> Sequence[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...


# A callable tokeniser returns the pieces of the text; their concatenation must be the text itself.
Tokenizer = TokenCodec | Callable[[str], Sequence[str]]


class hf_codec:  # lower case: it reads as a function at call sites, hf_codec(tokenizer)
    """Adapts a Hugging Face tokenizer to TokenCodec: no special tokens added or decoded."""

    def __init__(self, tokenizer: object) -> None:
        self._tokenizer = tokenizer

    def encode(self, text: str) -> Sequence[int]:
        return self._tokenizer.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=True)  # type: ignore[attr-defined]


def has_solution(solution: str | None) -> bool:
    """Whether a worked solution exists that a hint could be cut from."""
    return solution is not None and solution.strip() != ""


def ratio_for_level(level: int, ladder: Sequence[float]) -> float:
    """Hint ratio of a level: 0 -> 0.0 (no hint), k -> ladder[k-1]."""
    if not 0 <= level <= len(ladder):
        raise ValueError(
            f"hint level must be in 0..{len(ladder)} for a ladder of {len(ladder)} ratios, got {level}"
        )
    return 0.0 if level == 0 else float(ladder[level - 1])


def level_for_ratio(ratio: float, ladder: Sequence[float]) -> int:
    """Inverse of `ratio_for_level`; the ratio must be 0.0 or exactly one of the ladder's ratios."""
    if ratio == 0.0:
        return 0
    for index, candidate in enumerate(ladder):
        if candidate == ratio:
            return index + 1
    raise ValueError(f"hint ratio {ratio} is not 0.0 and not on the ladder {list(ladder)}")


def cut_solution(
    solution: str, ratio: float, *, cut: str = "char", tokenizer: Tokenizer | None = None
) -> str:
    """The beginning of `solution` that a hint at `ratio` shows (see the module docstring per cut)."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"hint ratio must be in [0, 1], got {ratio}")
    char_end = round(len(solution) * ratio)  # Python's round: half to even, as the reference code
    if cut == "char":
        return solution[:char_end]
    if cut == "line":
        line_end = solution.rfind("\n", 0, char_end + 1)
        return solution[:line_end] if line_end > 0 else solution[:char_end]
    if cut == "token":
        if tokenizer is None:
            raise ValueError(
                "hint_cut='token' needs a tokenizer (a TokenCodec or a callable returning pieces)"
            )
        return _token_prefix(solution, ratio, tokenizer)
    raise ValueError(f"hint_cut must be one of char | token | line, got {cut!r}")


def _token_prefix(solution: str, ratio: float, tokenizer: Tokenizer) -> str:
    if isinstance(tokenizer, TokenCodec):
        ids = list(tokenizer.encode(solution))
        return tokenizer.decode(ids[: round(len(ids) * ratio)])
    pieces = list(tokenizer(solution))
    if "".join(pieces) != solution:
        raise ValueError("the tokenizer callable must return pieces whose concatenation is the solution")
    return "".join(pieces[: round(len(pieces) * ratio)])


def hinted_problem(
    problem: str,
    solution: str | None,
    ratio: float,
    *,
    cut: str = "char",
    tokenizer: Tokenizer | None = None,
    separator: str = HINT_SEPARATOR,
) -> str:
    """The problem text a group is (re)generated from at `ratio`; ratio 0.0 returns the problem unchanged.
    `separator` is the text between the problem and the hint (the reference code's by default)."""
    if ratio == 0.0:
        return problem
    if not has_solution(solution):
        raise ValueError("cannot hint a prompt that has no worked solution (solution is empty or missing)")
    assert solution is not None  # for the type checker; has_solution() checked it
    return problem + separator + cut_solution(solution, ratio, cut=cut, tokenizer=tokenizer)


def hinted_problem_at_level(
    problem: str,
    solution: str | None,
    level: int,
    ladder: Sequence[float],
    *,
    cut: str = "char",
    tokenizer: Tokenizer | None = None,
    separator: str = HINT_SEPARATOR,
) -> str:
    """`hinted_problem` addressed by hint level (0 = plain problem)."""
    return hinted_problem(
        problem, solution, ratio_for_level(level, ladder), cut=cut, tokenizer=tokenizer, separator=separator
    )
