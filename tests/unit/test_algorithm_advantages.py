"""Group advantages (plain Python): unbiased std as TRL, eps, no-std option, G = 1, NaN rejection."""

import math

import pytest

from ghpo.shared.algorithm.advantages import group_advantages, group_std


def test_advantages_by_hand_with_unbiased_std():
    mean = 0.25
    std = math.sqrt(((0.75**2) + 3 * (0.25**2)) / 3)  # divide by G - 1
    expected = [(r - mean) / (std + 1e-4) for r in (1.0, 0.0, 0.0, 0.0)]
    assert group_advantages([1.0, 0.0, 0.0, 0.0], eps=1e-4, scale=True) == pytest.approx(expected, abs=1e-12)


def test_all_correct_group_gives_zero_advantages():
    assert group_advantages([1.0] * 8, eps=1e-4, scale=True) == [0.0] * 8


def test_all_wrong_group_gives_zero_advantages():
    assert group_advantages([0.0] * 8, eps=1e-4, scale=True) == [0.0] * 8


def test_group_of_one_gives_zero_advantage_and_std():
    assert group_advantages([1.5], eps=1e-4, scale=True) == [0.0]
    assert group_std([1.5]) == 0.0


def test_without_std_scaling_advantages_are_mean_centred():
    assert group_advantages([1.5, 0.5, 0.0, 0.0], eps=1e-4, scale=False) == [1.0, 0.0, -0.5, -0.5]


def test_eps_is_added_to_the_std():
    std = math.sqrt(0.5)
    assert group_advantages([1.0, 0.0], eps=0.5, scale=True) == pytest.approx(
        [0.5 / (std + 0.5), -0.5 / (std + 0.5)], abs=1e-12
    )


@pytest.mark.parametrize("rewards", [[1.0, float("nan")], [float("inf"), 0.0], []])
def test_non_finite_rewards_and_empty_groups_are_rejected(rewards):
    with pytest.raises(ValueError, match="finite"):
        group_advantages(rewards, eps=1e-4, scale=True)
