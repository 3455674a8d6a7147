"""Difficulty detection on raw accuracy, cold start and the hint ladder decision."""

import math

import pytest

from ghpo.shared.algorithm.difficulty import (
    detection_enabled,
    difficult_groups,
    is_difficult,
    next_hint_level,
    plan_next_level,
)

LADDER = (0.25, 0.5, 0.75)


def test_all_wrong_group_is_difficult():
    assert is_difficult([0.0] * 8)


def test_all_correct_group_is_not_difficult():
    assert not is_difficult([1.0] * 8)


def test_one_correct_rollout_makes_the_group_not_difficult():
    assert not is_difficult([0.0] * 7 + [1.0])


def test_single_rollout_group():
    assert is_difficult([0.0])
    assert not is_difficult([1.0])


def test_detection_reads_accuracy_not_the_shaped_total():
    # Total reward 1.0 * accuracy + 0.5 * format: an all-wrong but well-formatted group totals 0.5 each.
    accuracy = [0.0] * 4
    shaped_total = [1.0 * a + 0.5 for a in accuracy]
    assert is_difficult(accuracy)
    assert not is_difficult(shaped_total)  # which is why only accuracy must be passed in


def test_nan_accuracy_is_rejected_with_its_position():
    with pytest.raises(ValueError, match="rollout 2 has a NaN accuracy reward"):
        is_difficult([0.0, 0.0, math.nan, 0.0])


def test_infinite_accuracy_is_rejected():
    with pytest.raises(ValueError, match="infinite"):
        is_difficult([0.0, math.inf])


def test_empty_group_is_rejected():
    with pytest.raises(ValueError, match="empty group"):
        is_difficult([])


def test_difficult_groups_per_batch():
    assert difficult_groups([[0, 0], [0, 1], [1, 1]]) == [True, False, False]


def test_cold_start_boundary():
    assert not detection_enabled(step=19, cold_start_steps=20)
    assert detection_enabled(step=20, cold_start_steps=20)
    assert detection_enabled(step=0, cold_start_steps=0)


def test_negative_step_is_rejected():
    with pytest.raises(ValueError, match="step must be >= 0"):
        detection_enabled(step=-1, cold_start_steps=0)


def test_difficult_group_climbs_one_level_at_a_time():
    assert next_hint_level(0, LADDER, difficult=True) == 1
    assert next_hint_level(1, LADDER, difficult=True) == 2
    assert next_hint_level(2, LADDER, difficult=True) == 3


def test_ladder_exhaustion_keeps_the_group_as_final():
    assert next_hint_level(3, LADDER, difficult=True) is None


def test_solved_group_is_final_at_its_level():
    assert next_hint_level(0, LADDER, difficult=False) is None
    assert next_hint_level(2, LADDER, difficult=False) is None


def test_prompt_without_solution_is_never_escalated():
    assert next_hint_level(0, LADDER, difficult=True, solvable=False) is None


def test_level_outside_ladder_is_rejected():
    with pytest.raises(ValueError, match=r"0\.\.3"):
        next_hint_level(4, LADDER, difficult=True)


def test_plan_respects_cold_start_and_then_escalates():
    wrong = [0.0] * 8
    assert plan_next_level(wrong, 0, LADDER, step=19, cold_start_steps=20) is None
    assert plan_next_level(wrong, 0, LADDER, step=20, cold_start_steps=20) == 1
    assert plan_next_level([1.0, *wrong[1:]], 0, LADDER, step=20, cold_start_steps=20) is None


def test_plan_validates_rewards_even_during_cold_start():
    with pytest.raises(ValueError, match="NaN"):
        plan_next_level([math.nan], 0, LADDER, step=0, cold_start_steps=20)


def test_plan_walks_the_whole_ladder_then_stops():
    levels = [0]
    while (nxt := plan_next_level([0.0] * 4, levels[-1], LADDER, step=100, cold_start_steps=20)) is not None:
        levels.append(nxt)
    assert levels == [0, 1, 2, 3]
