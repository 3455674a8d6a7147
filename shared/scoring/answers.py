"""Scoring one completion against one gold answer: the accuracy and format rewards of the reference code.

Pure functions over math-verify, importable anywhere (no torch, no service code):

- `parse_gold(text)`: the gold answer parsed once (LRU-cached per process). A bare answer ("\\frac12")
  is parsed as if it were `\\boxed{...}`; a text that already holds a `\\boxed{}` (a worked solution,
  Minerva's gold) is parsed as is, so its last box wins.
- `extract_answer(completion)`: the completion's answer, `\\boxed{}` first (open-r1's configuration:
  boxed at top priority, then anchored LaTeX), then the content of the last `<answer>...</answer>` tags.
- `score(completion, gold)`: accuracy (math-verify `verify`), format (the open-r1 regex), the extracted
  answer string and a status: ok / no_answer / unparsable_gold / timeout / error.

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

# The reference (open-r1) format reward. open-r1 matches it with re.DOTALL | re.MULTILINE; MULTILINE
# makes `$` also match before any newline, so text after a line ending in "</answer>" still passes.
# We keep the reference flags for fidelity (see the algorithm doc, section 4). Unlike open-r1, an
# unparsable gold is not rewarded 1 ("skip"): it gets status unparsable_gold and the caller decides.
FORMAT_PATTERN = re.compile(r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$", re.DOTALL | re.MULTILINE)
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)

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
# open-r1's accuracy_reward configuration for completions: boxed first, no anchor-less LaTeX.
_COMPLETION_CONFIG = (
    LatexExtractionConfig(
        normalization_config=_NORMALIZATION, boxed_match_priority=0, try_extract_without_anchor=False
    ),
)
# Inside <answer> tags the content is the answer itself: anchor-less LaTeX and plain expressions allowed.
_TAG_CONFIG = (LatexExtractionConfig(normalization_config=_NORMALIZATION), ExprExtractionConfig())


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
    return 1.0 if FORMAT_PATTERN.match(completion) else 0.0


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


def extract_answer(completion: str, *, timeout_s: int = DEFAULT_MATH_TIMEOUT_S) -> list[Any]:
    """The completion's parsed answer: boxed/anchored LaTeX first, then the last <answer> tag's content."""
    _require_main_thread()
    parsed = parse(
        completion,
        extraction_config=_COMPLETION_CONFIG,
        extraction_mode="first_match",
        parsing_timeout=timeout_s,
        raise_on_error=True,
    )
    if parsed:
        return parsed
    tags = _ANSWER_TAG.findall(completion)
    content = tags[-1].strip() if tags else ""
    if not content:
        return []
    parsed = parse(content, extraction_config=_TAG_CONFIG, parsing_timeout=timeout_s, raise_on_error=True)
    if not parsed:
        parsed = parse(
            "\\boxed{" + content + "}",
            extraction_config=_TAG_CONFIG,
            parsing_timeout=timeout_s,
            raise_on_error=True,
        )
    return parsed


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
        answer = extract_answer(completion, timeout_s=timeout_s)
        if not answer:
            return Score(status="no_answer", format=fmt, detail="no \\boxed{} or <answer> found")
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
