"""How a prompt record becomes chat messages: an optional system turn, then one user turn.

The user turn is the problem, then the instruction (text appended to every problem, such as "Please
reason step by step, and put your final answer within \\boxed{}."), then, for a hinted group, the hint
separator and the beginning of the worked solution (ghpo.shared.algorithm.hints). So the plain prompt is
a prefix of every hinted one, as in the reference code, where the hint follows the whole question. The
rollout server builds its prompts and the evaluation its problems with the same template, so a model is
scored on the prompts it was trained on. The empty template (no system turn, no instruction) is the tiny
model's format.

What it deliberately does not do: apply the model's chat template (the inference service does, or the
in-process evaluator with the same tokenizer call), or decide the hint level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ghpo.shared.algorithm.hints import HINT_SEPARATOR, hinted_problem_at_level

# The instruction of Qwen2.5-Math's and DeepSeek-R1's evaluations, which the SmolLM2 config uses.
BOXED_INSTRUCTION = "\nPlease reason step by step, and put your final answer within \\boxed{}."


@dataclass(frozen=True)
class PromptTemplate:
    system: str = ""
    instruction: str = ""
    hint_separator: str = HINT_SEPARATOR

    def user_text(self, problem: str) -> str:
        """The unhinted user turn."""
        return problem + self.instruction

    def messages(
        self,
        problem: str,
        *,
        solution: str | None = None,
        level: int = 0,
        ladder: Sequence[float] = (),
        cut: str = "char",
    ) -> list[dict[str, str]]:
        """The chat turns of `problem` at hint `level` (0: no hint; then `solution` and `ladder` unused)."""
        user = hinted_problem_at_level(
            self.user_text(problem), solution, level, ladder, cut=cut, separator=self.hint_separator
        )
        turns = [{"role": "system", "content": self.system}] if self.system else []
        return [*turns, {"role": "user", "content": user}]
