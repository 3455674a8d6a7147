"""How a prompt record becomes chat messages and an SFT target for the tiny model.

The target is the reference code's output format, so its format reward regex
`^<think>\\n.*?\\n</think>\\n<answer>\\n.*?\\n</answer>$` matches what the model learns to write:

    <think>
    {worked steps}
    </think>
    <answer>
    \\boxed{X}
    </answer>

The hint is GHPO's: the first part of the worked solution appended to the user turn with the exact
string of the algorithm doc (section 3), cut by characters. Not here: any sampling or scoring.
"""

from __future__ import annotations

from ghpo.shared.algorithm.hints import HINT_SEPARATOR, hinted_problem
from ghpo.shared.data.records import PromptRecord

HINT_PREFIX = HINT_SEPARATOR  # the reference hint template's text between the problem and the cut solution
__all__ = ["HINT_PREFIX", "assistant_target", "chat_messages", "hinted_problem"]


def chat_messages(record: PromptRecord, hint_ratio: float = 0.0) -> list[dict[str, str]]:
    content = record.problem
    if hint_ratio > 0.0:
        if not record.solution:
            raise ValueError(f"record {record.id} has no solution to hint from")
        content = hinted_problem(record.problem, record.solution, hint_ratio)
    return [{"role": "user", "content": content}]


def assistant_target(record: PromptRecord) -> str:
    """The completion the SFT teaches: the worked steps in <think>, the boxed answer in <answer>."""
    if not record.solution:
        raise ValueError(f"record {record.id} has no solution to train on")
    steps = record.solution.rsplit("\n\\boxed{", 1)[0]
    return f"<think>\n{steps}\n</think>\n<answer>\n\\boxed{{{record.answer}}}\n</answer>"
