"""The accuracy reward reads the final answer only, and the format reward the whole completion.

An adversarial set: each completion is scored by the real scorer (math-verify in this process) against
its gold, and must get the accuracy and format written beside it. A policy under RL finds any completion
shape that scores without being right (an answer hidden in the reasoning, a second answer after the
closing tag, a set that holds the gold), so each such shape is here with the score it must *not* get, next
to the equivalent forms of a right answer that must keep scoring 1.
"""

from __future__ import annotations

import pytest

from ghpo.shared.scoring.answers import final_answer, format_reward, score

T = "<think>\nlet me work it out\n</think>\n"  # a well-formed reasoning section


def answer(body: str) -> str:
    return f"{T}<answer>\n{body}\n</answer>"


# (id, completion, gold, accuracy, format)
CASES = [
    # --- the answer in the wrong section: only the final answer counts
    ("box-in-think-other-answer", "<think>\nmaybe \\boxed{3}\n</think>\n<answer>\n5\n</answer>", "3", 0, 1),
    ("box-after-answer", "<answer>\n5\n</answer>\n\\boxed{3}", "3", 0, 0),
    ("dollar-after-answer", "<answer>\n5\n</answer>\n$3$", "3", 0, 0),
    ("second-box-after-answer", "<answer>\n\\boxed{5}\n</answer>\nActually \\boxed{3}", "3", 0, 0),
    ("answer-tags-inside-think", "<think>\n<answer>3</answer>\n</think>\n<answer>\n5\n</answer>", "3", 0, 0),
    ("box-before-think", "\\boxed{3}\n" + answer("5"), "3", 0, 0),
    ("think-never-closed", "<think>\nso it is \\boxed{3}", "3", 0, 0),
    ("box-only-in-think", "<think>\n\\boxed{3}\n</think>\nno idea", "3", 0, 0),
    ("answer-before-think", "<answer>\n3\n</answer>\n<think>\nhmm\n</think>", "3", 0, 0),
    ("closing-tag-without-opening", "\\boxed{3}\n</answer>", "3", 0, 0),
    ("answer-never-closed", T + "<answer>\n\\boxed{3}", "3", 0, 0),
    ("answer-tags-reversed", T + "</answer>\n\\boxed{3}\n<answer>", "3", 0, 0),
    # --- several conflicting answers: one final answer, or none
    ("two-sections-wrong-then-right", answer("5") + "\n<answer>\n3\n</answer>", "3", 0, 0),
    ("two-sections-right-then-wrong", answer("3") + "\n<answer>\n5\n</answer>", "3", 0, 0),
    ("two-sections-both-right", answer("3") + "\n<answer>\n3\n</answer>", "3", 0, 0),
    ("last-box-of-the-section-right", answer("\\boxed{5} no, \\boxed{3}"), "3", 1, 1),
    ("last-box-of-the-section-wrong", answer("\\boxed{3} no, \\boxed{5}"), "3", 0, 1),
    ("plain-last-box-wrong", "first \\boxed{3}, then \\boxed{5}", "3", 0, 0),
    ("plain-last-box-right", "first \\boxed{5}, then \\boxed{3}", "3", 1, 0),
    ("section-says-5-or-3", answer("5 or 3"), "3", 0, 1),
    ("section-hedges-in-words", answer("I think 5, but maybe 3"), "3", 0, 1),
    ("section-anchor-inside", answer("the final answer is $3$, no, 5"), "3", 0, 1),
    # --- lists and sets holding the gold
    ("boxed-list", answer("\\boxed{3, 5}"), "3", 0, 1),
    ("boxed-set", answer("\\boxed{\\{3, 5\\}}"), "3", 0, 1),
    ("boxed-interval", answer("\\boxed{[3, 5]}"), "3", 0, 1),
    ("boxed-tuple", answer("\\boxed{(3, 5)}"), "3", 0, 1),
    ("boxed-text-or", answer("\\boxed{3 \\text{ or } 5}"), "3", 0, 1),
    ("boxed-two-solutions", answer("\\boxed{x = 3 \\text{ or } x = 5}"), "3", 0, 1),
    ("boxed-plus-minus", answer("\\boxed{3 \\pm 2}"), "5", 0, 1),
    ("section-list", answer("3, 5"), "3", 0, 1),
    ("plain-boxed-list", "the roots are \\boxed{3, 5}", "3", 0, 0),
    # --- near misses
    ("negative", answer("\\boxed{-3}"), "3", 0, 1),
    ("close-decimal", answer("\\boxed{2.9999}"), "3", 0, 1),
    ("extra-digit", answer("\\boxed{33}"), "3", 0, 1),
    ("times-ten", answer("\\boxed{30}"), "3", 0, 1),
    ("with-a-variable", answer("\\boxed{3x}"), "3", 0, 1),
    ("reciprocal", answer("\\boxed{\\frac{1}{3}}"), "3", 0, 1),
    ("trailing-newline-after-answer", answer("\\boxed{3}") + "\n", "3", 1, 0),
    ("trailing-space-after-answer", answer("\\boxed{3}") + " ", "3", 1, 0),
    ("no-newlines-around-tags", "<think>x</think><answer>\\boxed{3}</answer>", "3", 1, 0),
    # --- equivalent forms of the right answer: still 1
    ("tiny-model-form", "<think>\n1 + 2 = 3\n</think>\n<answer>\n\\boxed{3}\n</answer>", "3", 1, 1),
    ("bare-number", answer("3"), "3", 1, 1),
    ("inline-math", answer("$3$"), "3", 1, 1),
    ("paren-math", answer("\\(3\\)"), "3", 1, 1),
    ("fraction-equal", answer("\\boxed{\\frac{6}{2}}"), "3", 1, 1),
    ("decimal-equal", answer("\\boxed{3.0}"), "3", 1, 1),
    ("equation", answer("\\boxed{x = 3}"), "3", 1, 1),
    ("half-as-decimal", answer("\\boxed{0.5}"), "\\frac{1}{2}", 1, 1),
    ("half-as-dfrac", answer("\\boxed{\\dfrac12}"), "\\frac{1}{2}", 1, 1),
    ("half-as-slash", answer("1/2"), "\\frac{1}{2}", 1, 1),
    ("set-in-another-order", answer("\\boxed{3, 2, 1}"), "1,2,3", 1, 1),
    ("sentence-around-the-box", answer("The answer is \\boxed{3}."), "3", 1, 1),
    ("worked-solution-no-tags", "We add: $1 + 2 = 3$. So the sum is $\\boxed{3}$.", "3", 1, 0),
    ("fbox-no-tags", "so \\fbox{3}", "3", 1, 0),
    ("think-opened-by-the-prompt", "reasoning\n</think>\n<answer>\n3\n</answer>", "3", 1, 0),
]


@pytest.mark.parametrize(
    ("completion", "gold", "accuracy", "fmt"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_only_the_final_answer_scores_and_only_the_exact_layout_gets_the_format_reward(
    completion, gold, accuracy, fmt
):
    result = score(completion, gold)
    assert (result.accuracy, result.format) == (accuracy, fmt), result


def test_the_adversarial_set_is_large_and_mixes_both_outcomes():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)
    assert {c[3] for c in CASES} == {0, 1}


def test_the_four_completions_that_gamed_the_reference_reward_now_score_at_most_the_format():
    # Each scored accuracy 1 and format 1 (total 1.5) with gold 3 under the reference's extraction.
    for completion in (
        "<think>\nmaybe \\boxed{3}\n</think>\n<answer>\n5\n</answer>",
        "<answer>\n5\n</answer>\n\\boxed{3}",
        "<answer>\n5\n</answer>\n$3$",
        "<answer>\n\\boxed{5}\n</answer>\nActually \\boxed{3}",
    ):
        assert score(completion, "3").total <= 0.5, completion


def test_ambiguous_completions_have_no_answer_and_say_why():
    for completion, why in (
        (answer("5") + "\n<answer>\n3\n</answer>", "2 <answer>"),
        ("<think>\nso \\boxed{3}", "never closed"),
        (T + "<answer>\n\\boxed{3}", "1 <answer> / 0 </answer>"),
        ("I do not know", "no \\boxed{}"),
    ):
        result = score(completion, "3")
        assert result.status == "no_answer" and why in (result.detail or ""), result
        assert final_answer(completion)[0] is None


def test_nothing_after_the_closing_tag_passes_the_format_reward():
    well_formed = answer("\\boxed{3}")
    assert format_reward(well_formed) == 1.0
    for tail in ("\n", " ", "\n\n", "x", "\n\\boxed{3}", "\n</answer>"):
        assert format_reward(well_formed + tail) == 0.0, repr(tail)
