"""Unit tests of the verifier's scoring functions (real math-verify, in the test process's main thread)."""

from __future__ import annotations

import threading
import time

from ghpo.shared.scoring import rewards
from ghpo.shared.scoring.answers import FORMAT_PATTERN, format_reward, parse_gold, score

WELL_FORMED = "<think>\nLet me think.\n</think>\n<answer>\n\\boxed{\\frac{1}{2}}\n</answer>"


def test_boxed_answer_equal_to_gold_in_another_form_scores_1():
    result = score("so the answer is \\boxed{\\frac{1}{2}}", "0.5")
    assert (result.status, result.accuracy, result.extracted) == ("ok", 1.0, "\\frac{1}{2}")


def test_wrong_boxed_answer_scores_0_with_status_ok():
    result = score("\\boxed{4}", "5")
    assert (result.status, result.accuracy, result.extracted) == ("ok", 0.0, "4")


def test_answer_tag_is_used_when_there_is_no_boxed_answer():
    result = score("<think>\nadd\n</think>\n<answer>\n7\n</answer>", "7")
    assert (result.status, result.accuracy, result.format) == ("ok", 1.0, 1.0)


def test_answer_section_wins_over_a_box_after_it():
    result = score("<answer>\n3\n</answer> then \\boxed{4}", "4")
    assert (result.accuracy, result.extracted) == (0.0, "3")


def test_completion_without_any_answer_is_no_answer_but_format_is_still_scored():
    result = score("<think>\nhmm\n</think>\n<answer>\n\n</answer>", "3")
    assert result.status == "no_answer"
    assert result.accuracy == 0.0
    assert score("I do not know", "3").status == "no_answer"


def test_gold_that_does_not_parse_is_unparsable_gold():
    assert score("\\boxed{3}", "").status == "unparsable_gold"
    assert parse_gold("") is None


def test_malformed_math_latex_like_frac43_is_parsed_on_both_sides():
    assert score("the ratio is \\boxed{\\frac43}", "\\frac43").accuracy == 1.0
    assert score("\\boxed{11\\sqrt2}", "11\\sqrt{2}").accuracy == 1.0


def test_minerva_style_gold_uses_the_last_box_of_the_text():
    gold = "First \\boxed{2}, corrected: \\boxed{3}"
    assert score("\\boxed{3}", gold).accuracy == 1.0


def test_sets_and_equations_compare_as_math():
    assert score("\\boxed{x=3}", "3").accuracy == 1.0
    assert score("\\boxed{3, 1, 2}", "1,2,3").accuracy == 1.0


def test_reference_format_regex_accepts_only_the_think_then_answer_layout():
    assert format_reward(WELL_FORMED) == 1.0
    assert format_reward("<think>x</think><answer>1</answer>") == 0.0  # the reference needs newlines
    assert format_reward("preamble\n" + WELL_FORMED) == 0.0
    assert FORMAT_PATTERN.pattern == r"^<think>\n.*?\n</think>\n<answer>\n.*?\n</answer>$"


def test_total_is_reference_weighted_sum():
    result = score(WELL_FORMED, "1/2")
    assert (result.accuracy, result.format, result.total) == (1.0, 1.0, 1.5)


def test_gold_is_parsed_once_and_cached():
    assert parse_gold("\\frac{22}{7}") is parse_gold("\\frac{22}{7}")


def test_parse_gold_works_off_the_main_thread_but_score_refuses():
    out: dict[str, object] = {}

    def run() -> None:
        out["gold"] = parse_gold("42")
        try:
            score("\\boxed{42}", "42")
        except RuntimeError as exc:
            out["error"] = str(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert out["gold"] is not None
    assert "main thread" in str(out["error"])


def test_a_power_tower_times_out_instead_of_hanging():
    result = score("\\boxed{9^{9^{9^9}}}", "3", timeout_s=1)
    assert result.status == "timeout"
    assert result.accuracy == 0.0


def test_deeply_nested_latex_times_out_with_zero_reward_within_its_time_limits():
    # 50 nested fractions parse quickly, but comparing them with the gold takes math-verify far longer than
    # any limit (over 100 s on the 2-core development machine, whose 1-s limits fire in about 2 s): the
    # answer must be reported as unchecked (timeout), never as wrong (ok with 0) or after a hang. Deeper
    # nesting is not harder: 300 levels score ok/0 in about 5 s, so under a 1-s limit their outcome depended
    # on the machine.
    started = time.monotonic()
    result = score("\\boxed{" + "\\frac{" * 50 + "1}{2}" * 50 + "}", "3", timeout_s=1)
    assert result.status == "timeout", result
    assert result.accuracy == 0.0
    assert time.monotonic() - started < 30  # each parse and comparison has its own 1-s limit


def test_rewards_registry_computes_named_rewards_and_weighted_total():
    result = score(WELL_FORMED, "0.5")
    values, total = rewards.compute(WELL_FORMED, result, {"accuracy": 2.0, "format": 1.0, "tag_count": 1.0})
    assert values == {"accuracy": 1.0, "format": 1.0, "tag_count": 1.0}
    assert total == 4.0


def test_rewards_are_zero_for_items_that_could_not_be_checked():
    result = score("\\boxed{3}", "")
    values, total = rewards.compute("\\boxed{3}", result, {"accuracy": 1.0, "format": 0.5})
    assert values == {"accuracy": 0.0, "format": 0.0}
    assert total == 0.0


def test_unknown_reward_name_is_reported_with_the_known_ones():
    problem = rewards.weights_problem({"accuracy": 1.0, "lenght": 1.0})
    assert problem is not None and "lenght" in problem and "format" in problem
    assert rewards.weights_problem({"accuracy": 1.0}) is None
    assert rewards.weights_problem({}) is not None
