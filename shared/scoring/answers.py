"""Scoring one completion against one gold answer: accuracy and format rewards that read the final answer only.

Pure functions over math-verify, importable anywhere (no torch, no service code):

- `parse_gold(text)`: the gold answer parsed once (LRU-cached per process). A bare answer ("\\frac12")
  is parsed as if it were `\\boxed{...}`; a text that already holds a `\\boxed{}` (a worked solution,
  Minerva's gold) is parsed as is, so its last box wins.
- `final_answer(completion)`: the one text the accuracy reward reads (see below), or why there is none.
- `extract_answer(completion)`: that text parsed by math-verify.
- `score(completion, gold)`: accuracy (math-verify `verify`), format (the reference regex, matched whole),
  the extracted answer string and a status: ok / no_answer / unparsable_gold / timeout / error.

Which text counts (a deliberate departure from the reference code, which runs math-verify over the whole
completion, so that a `\\boxed{}` in the reasoning or after `</answer>` scores; a policy under RL finds
that and the reward then measures the hack):
- Reasoning never counts: everything up to the last `</think>` is skipped, and a `<think>` left open
  means there is no answer.
- With answer tags, exactly one `<answer>...</answer>` section must follow; its last `\\boxed{}` is the
  answer, else its whole content (one expression: "5 or 3" is the set {3, 5}, not 3). Text after
  `</answer>` is never read. Several sections, or a tag without its partner: no answer (ambiguous; the
  safe rule is that none counts, not the last, so that a policy gains nothing from writing more).
- Without answer tags, the last `\\boxed{}` (or `\\fbox{}`) is the answer; no box, no answer.
The format reward is 1 only when the reference regex matches the *whole* completion (nothing, not even
a newline, after `</answer>`) and each of the four tags appears exactly once.

math-verify's own timeouts use SIGALRM, so these functions must run in the main thread of a process
(a worker process, a script, a test). They do NOT protect against computations that never return to
the interpreter (a C-level bignum power): only killing the process does, which is the verifier
service's worker pool's job (services/verifier/engine.py). This module deliberately knows nothing about
processes or HTTP.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from latex2sympy2_extended import NormalizationConfig
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from math_verify.errors import TimeoutException

from ghpo.shared.scoring.boxes import last_boxed

Status = Literal["ok", "no_answer", "unparsable_gold", "timeout", "error"]
STATUSES: tuple[Status, ...] = ("ok", "no_answer", "unparsable_gold", "timeout", "error")

# The reference (open-r1) format pattern. open-r1 matches it with re.DOTALL | re.MULTILINE, where `$`
# also matches before any newline, so text after a line ending in "</answer>" passes; we match it whole
# (fullmatch, no MULTILINE) and require each tag once, so nothing may follow `</answer>` and `.*?` cannot
# swallow a second section. Unlike open-r1, an unparsable gold is not rewarded 1 ("skip"): it gets
# status unparsable_gold and the caller decides.
FORMAT_PATTERN = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.DOTALL)
FORMAT_TAGS = ("<think>", "</think>", "<answer>", "</answer>")
_MATH_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))

# Reference weights: total R = 1.0 * accuracy + 0.5 * format.
REFERENCE_WEIGHTS: dict[str, float] = {"accuracy": 1.0, "format": 0.5}

# math-verify's per-call limit in whole seconds (signal.alarm resolution).
DEFAULT_MATH_TIMEOUT_S = 3
GOLD_CACHE_SIZE = 8192

# open-r1's normalization, except malformed_operators=True: MATH writes `\frac43` and `11\sqrt2`, which
# otherwise fail to parse on one side and score a right answer 0 (8 of MATH-500's 500 rows).
_NORMALIZATION = NormalizationConfig(
    nits=False, malformed_operators=True, basic_latex=True, boxed="all", units=True
)
_GOLD_CONFIG = (LatexExtractionConfig(normalization_config=_NORMALIZATION), ExprExtractionConfig())
# The answer text is always parsed as `\\boxed{<text>}`: boxed at top priority, no anchor-less LaTeX, and
# only that one match tried (extraction_mode="first_match"), so nothing inside the text but the whole
# expression can be taken for the answer.
_ANSWER_CONFIG = (
    LatexExtractionConfig(
        normalization_config=_NORMALIZATION, boxed_match_priority=0, try_extract_without_anchor=False
    ),
)


class GoldTimeout(TimeoutError):
    """Parsing a gold answer ran past its timeout."""


@dataclass(frozen=True, slots=True)
class Score:
    status: Status
    accuracy: float = 0.0
    format: float = 0.0
    extracted: str | None = None
    detail: str | None = None

    @property
    def total(self) -> float:
        """The reference total, 1.0 * accuracy + 0.5 * format."""
        return REFERENCE_WEIGHTS["accuracy"] * self.accuracy + REFERENCE_WEIGHTS["format"] * self.format


def _require_main_thread() -> None:
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError(
            "math-verify uses SIGALRM timeouts and only works in a process's main thread; "
            "call scoring from a worker process (the verifier service) instead of a thread"
        )


def format_reward(completion: str) -> float:
    """1.0 iff the whole completion is `<think>\\n...\\n</think>\\n<answer>\\n...\\n</answer>`, each tag once."""
    whole = FORMAT_PATTERN.fullmatch(completion) is not None
    return 1.0 if whole and all(completion.count(tag) == 1 for tag in FORMAT_TAGS) else 0.0


@lru_cache(maxsize=GOLD_CACHE_SIZE)
def _parse_gold_cached(text: str, timeout_s: int | None) -> tuple[Any, ...]:
    # A text with boxes (a worked solution, Minerva's gold): its last box is the answer; parsing the whole
    # text would let normalization merge every box into one set. A bare answer is wrapped in \boxed{},
    # which keeps "1,2,3" a set and "x=3" an equation where the bare parse would split or drop a side.
    boxed = last_boxed(text) if ("\\boxed" in text or "\\fbox" in text) else None
    candidates = ["\\boxed{" + boxed + "}"] if boxed is not None else ["\\boxed{" + text + "}", text]
    for candidate in candidates:
        parsed = parse(
            candidate, extraction_config=_GOLD_CONFIG, parsing_timeout=timeout_s, raise_on_error=True
        )
        if parsed:
            return tuple(parsed)
    return ()


def parse_gold(text: str, *, timeout_s: int | None = DEFAULT_MATH_TIMEOUT_S) -> tuple[Any, ...] | None:
    """The parsed gold (math-verify's list of candidates), or None when nothing parses.

    Raises GoldTimeout (a TimeoutError) when parsing exceeds `timeout_s`; failures are not cached.
    Off the main thread it runs without a timeout (SIGALRM is unavailable there): acceptable for gold
    answers, which come from curated data sets, never for model output (see `score`).
    """
    if threading.current_thread() is not threading.main_thread():
        timeout_s = None
    try:
        parsed = _parse_gold_cached(text.strip(), timeout_s)
    except TimeoutException as exc:  # a BaseException in math-verify; callers expect an Exception
        raise GoldTimeout(f"parsing the gold answer took over {timeout_s}s") from exc
    return parsed or None


def _answer_text(parsed: list[Any]) -> str:
    # parse(..., fallback_mode="first_match") appends the matched string after the sympy object.
    for item in reversed(parsed):
        if isinstance(item, str):
            return item
    return str(parsed[0])


def final_answer(completion: str) -> tuple[str | None, str | None]:
    """(the text the accuracy reward reads, None), or (None, why there is none); see the module docstring."""
    text = completion
    if "</think>" in text:
        text = text.rpartition("</think>")[2]
    if "<think>" in text:
        return None, "a <think> section is never closed"
    opens, closes = text.count("<answer>"), text.count("</answer>")
    if opens or closes:
        if opens != 1 or closes != 1:
            return None, f"{opens} <answer> / {closes} </answer> tags: one section must hold the answer"
        start, end = text.index("<answer>") + len("<answer>"), text.index("</answer>")
        if end < start:
            return None, "</answer> comes before <answer>"
        section = text[start:end]
        boxed = last_boxed(section) if ("\\boxed" in section or "\\fbox" in section) else None
        answer = boxed if boxed is not None else _strip_delimiters(section.strip())
        return (answer, None) if answer else (None, "the <answer> section is empty")
    boxed = last_boxed(text)
    return (boxed, None) if boxed else (None, "no \\boxed{} and no <answer> section")


def _strip_delimiters(text: str) -> str:
    for left, right in _MATH_DELIMITERS:
        if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
            return text[len(left) : -len(right)].strip()
    return text


def extract_answer(completion: str, *, timeout_s: int = DEFAULT_MATH_TIMEOUT_S) -> list[Any]:
    """The completion's final answer (`final_answer`) parsed by math-verify; [] when there is none."""
    _require_main_thread()
    answer, _why = final_answer(completion)
    return [] if answer is None else _parse_answer(answer, timeout_s)


def _parse_answer(answer: str, timeout_s: int) -> list[Any]:
    return parse(
        "\\boxed{" + answer + "}",
        extraction_config=_ANSWER_CONFIG,
        extraction_mode="first_match",
        parsing_timeout=timeout_s,
        raise_on_error=True,
    )


def _equal(gold: tuple[Any, ...], answer: list[Any], timeout_s: int) -> tuple[bool, bool]:
    """(any gold/answer pair equal, a comparison timed out). Errors count as 'not equal', as in
    math-verify's own default; timeouts are reported so the caller can say 'timeout' not 'wrong'."""
    timed_out = False
    for g in gold:
        for a in answer:
            try:
                if verify(g, a, timeout_seconds=timeout_s, raise_on_error=True):
                    return True, False
            except TimeoutException:
                timed_out = True
            except Exception:
                continue
    return False, timed_out


def score(completion: str, gold: str, *, timeout_s: int = DEFAULT_MATH_TIMEOUT_S) -> Score:
    """Score one completion against one gold answer text. Never raises for bad math; raises only when
    called off the main thread."""
    _require_main_thread()
    fmt = format_reward(completion)
    try:
        parsed_gold = parse_gold(gold, timeout_s=timeout_s)
        if parsed_gold is None:
            return Score(status="unparsable_gold", format=fmt, detail="gold answer does not parse")
        text, why = final_answer(completion)
        answer = _parse_answer(text, timeout_s) if text is not None else []
        if not answer:
            return Score(status="no_answer", format=fmt, detail=why or f"answer {text[:80]!r} does not parse")
        extracted = _answer_text(answer)
        equal, timed_out = _equal(parsed_gold, answer, timeout_s)
    except (TimeoutException, GoldTimeout):
        return Score(status="timeout", format=fmt, detail=f"math-verify exceeded {timeout_s}s")
    except RecursionError:
        return Score(status="error", format=fmt, detail="expression nested too deeply")
    except Exception as exc:
        return Score(status="error", format=fmt, detail=f"{type(exc).__name__}: {str(exc)[:200]}")
    if timed_out:
        return Score(status="timeout", format=fmt, extracted=extracted, detail="comparison timed out")
    return Score(status="ok", accuracy=1.0 if equal else 0.0, format=fmt, extracted=extracted)
