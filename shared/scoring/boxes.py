"""LaTeX answer boxes: the content of the last `\\boxed{...}` (or `\\fbox{...}`) of a text, braces balanced.

How a worked solution states its final answer (MATH, Minerva, the arithmetic task's solutions). Used where
a gold answer is pulled out of a solution (the prompt loaders, the verifier's calibration) and where a
gold text with boxes is parsed (`answers.parse_gold`). Plain string scanning: no math-verify, no LaTeX
parsing, so the loaders can import it without the optional math-verify dependency.
"""

from __future__ import annotations

import re

_BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`) in `text`, braces balanced; None if there is none."""
    matches = list(_BOX_OPEN.finditer(text))
    if not matches:
        return None
    depth = 0
    for pos in range(matches[-1].end() - 1, len(text)):
        if text[pos] == "{":
            depth += 1
        elif text[pos] == "}":
            depth -= 1
            if depth == 0:
                return text[matches[-1].end() : pos].strip() or None
    return None  # unbalanced braces: no usable answer
