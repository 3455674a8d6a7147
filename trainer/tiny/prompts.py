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

from ghpo.shared.data.records import PromptRecord

HINT_PREFIX = "\n The following text is the beginning part of the answer, which you can refer to for solving the problem:\n"


def hinted_problem(problem: str, solution: str, ratio: float) -> str:
    """The problem text with the first `ratio` of `solution` (by characters) appended as a hint."""
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must be in [0, 1], got {ratio}")
    return problem + HINT_PREFIX + solution[: round(len(solution) * ratio)]


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
