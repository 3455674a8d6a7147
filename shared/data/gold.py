"""Gold answers: a dataset's answer cell as text, and checking that math-verify can parse it.

A prompt whose gold answer math-verify cannot parse can never be rewarded, so the loaders drop it at load
time instead of letting it poison a training step. The check calls the verifier's own
`ghpo.shared.scoring.answers.parse_gold` (the scoring the verifier service runs), so load time and reward
time agree on what parses: a bare answer is parsed as `\\boxed{answer}`.

Threads: math-verify enforces its timeouts with SIGALRM, which only works in a process's main thread
(`parse` raises ValueError elsewhere). `parse_gold` keeps its timeout in the main thread and drops it
(parsing_timeout=None) in any other; that is acceptable here because gold answers come from curated
datasets, not from a model, and we cap them at MAX_ANSWER_CHARS. Not here: comparing a model's answer
with the gold one (the verifier does that), or pulling the boxed answer out of a solution
(ghpo.shared.scoring.boxes).
"""

from __future__ import annotations

from typing import Any

# Longer "answers" are almost always a whole solution pasted into the answer column.
MAX_ANSWER_CHARS = 1_000


def normalize_answer(value: Any) -> str | None:
    """A dataset's answer cell as text: numbers without a spurious `.0`, one enclosing `$...$` removed,
    a list (OlympiadBench) joined with ", "."""
    if isinstance(value, list | tuple):
        items = [text for item in value if (text := normalize_answer(item))]
        return ", ".join(items) or None
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() else repr(value)
    else:
        text = str(value).strip()
    if len(text) >= 2 and text[0] == "$" and text[-1] == "$" and "$" not in text[1:-1]:
        text = text[1:-1].strip()
    return text or None


def gold_parse_error(answer: str) -> str | None:
    """Why math-verify cannot parse this gold answer (so it could never be rewarded), or None when it can.

    Uses the verifier's own `parse_gold`, so a prompt kept here is one the reward function can score.
    """
    if len(answer) > MAX_ANSWER_CHARS:
        return f"longer than {MAX_ANSWER_CHARS} characters"
    # math-verify (imported by answers.py) is an optional dependency, loaded only when a load checks golds
    from ghpo.shared.scoring.answers import parse_gold

    try:
        parsed = parse_gold(answer)
    except Exception as exc:  # a timeout or a parser crash both mean "cannot be scored"
        return f"{type(exc).__name__}: {str(exc)[:100]}"
    return None if parsed else "math-verify found no expression"
