"""Policy loss, hand-computed: clipping, normalisation modes, KL, IS weights, masks, empty completions."""

import math

import pytest

torch = pytest.importorskip("torch")

from ghpo.shared.algorithm.config import GHPOConfig  # noqa: E402
from ghpo.trainer.core.loss import importance_weights, policy_loss  # noqa: E402

DEFAULT = GHPOConfig()


def _leaf(values):
    return torch.tensor(values, dtype=torch.float64, requires_grad=True)


def test_on_policy_bnpo_loss_is_minus_token_mean_advantage():
    logps = _leaf([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    advantages = torch.tensor([1.0, -2.0], dtype=torch.float64)
    loss, metrics = policy_loss(logps, None, advantages, mask, DEFAULT)
    assert loss.item() == pytest.approx(-(3 * 1.0 + 1 * -2.0) / 4)
    loss.backward()
    expected_grad = torch.tensor([[-0.25, -0.25, -0.25], [0.5, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(logps.grad, expected_grad)
    assert metrics["tokens"] == 4.0 and metrics["ratio_mean"] == pytest.approx(1.0)


def test_ratio_clipping_both_sides_by_hand():
    old = torch.zeros(1, 3, dtype=torch.float64)
    # ratios 1.5 (A>0: clipped to 1.2), 0.5 (A<0: clipped to 0.8), 0.5 with A>0 (unclipped, min picks 0.5)
    logps = _leaf([[math.log(1.5), math.log(0.5), math.log(0.5)]])
    advantages = torch.tensor([[1.0, -1.0, 1.0]], dtype=torch.float64)
    mask = torch.ones(1, 3)
    loss, metrics = policy_loss(logps, old, advantages, mask, DEFAULT)
    assert loss.item() == pytest.approx((-1.2 + 0.8 - 0.5) / 3)
    loss.backward()
    torch.testing.assert_close(logps.grad, torch.tensor([[0.0, 0.0, -0.5 / 3]], dtype=torch.float64))
    assert metrics["clip_high_fraction"] == pytest.approx(1 / 3)
    assert metrics["clip_low_fraction"] == pytest.approx(1 / 3)


def test_asymmetric_clip_uses_eps_high_above():
    config = GHPOConfig(eps_low=0.2, eps_high=0.28)
    logps = _leaf([[math.log(1.5)]])
    loss, _ = policy_loss(
        logps, torch.zeros(1, 1, dtype=torch.float64), torch.ones(1), torch.ones(1, 1), config
    )
    assert loss.item() == pytest.approx(-1.28)


def test_grpo_averages_per_sequence_then_over_batch():
    logps = _leaf([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
    advantages = torch.tensor([1.0, -1.0], dtype=torch.float64)
    grpo, _ = policy_loss(logps, None, advantages, mask, GHPOConfig(loss_type="grpo"))
    bnpo, _ = policy_loss(logps, None, advantages, mask, GHPOConfig(loss_type="bnpo"))
    assert grpo.item() == pytest.approx((-1.0 + 1.0) / 2)
    assert bnpo.item() == pytest.approx(-(4 - 1) / 5)


def test_dapo_divides_by_the_given_normaliser_and_ignores_micro_batches():
    logps = _leaf([[0.0, 0.0], [0.0, 0.0]])
    mask = torch.ones(2, 2)
    advantages = torch.tensor([1.0, 1.0], dtype=torch.float64)
    config = GHPOConfig(loss_type="dapo")
    loss, _ = policy_loss(logps, None, advantages, mask, config, token_normaliser=10, num_micro_batches=4)
    assert loss.item() == pytest.approx(-4 / 10)
    with pytest.raises(ValueError, match="token_normaliser"):
        policy_loss(logps, None, advantages, mask, config)


def test_bnpo_divides_by_micro_batches():
    logps = _leaf([[0.0]])
    loss, _ = policy_loss(logps, None, torch.ones(1), torch.ones(1, 1), DEFAULT, num_micro_batches=4)
    assert loss.item() == pytest.approx(-0.25)


def test_dr_grpo_divides_by_batch_times_max_length():
    logps = _leaf([[0.0, 0.0, 0.0]])
    config = GHPOConfig(loss_type="dr_grpo")
    loss, _ = policy_loss(
        logps, None, torch.ones(1), torch.tensor([[1, 1, 0]]), config, max_completion_length=8
    )
    assert loss.item() == pytest.approx(-2 / 8)
    with pytest.raises(ValueError, match="max_completion_length"):
        policy_loss(logps, None, torch.ones(1), torch.ones(1, 3), config)


def test_k3_kl_is_added_with_beta():
    logps = _leaf([[-1.0, -2.0]])
    ref = torch.tensor([[-1.5, -1.0]], dtype=torch.float64)
    config = GHPOConfig(beta=0.1)
    loss, metrics = policy_loss(logps, None, torch.zeros(1), torch.ones(1, 2), config, ref_logps=ref)
    k3 = [math.exp(d) - d - 1 for d in (-0.5, 1.0)]
    assert loss.item() == pytest.approx(0.1 * sum(k3) / 2)
    assert metrics["kl"] == pytest.approx(sum(k3) / 2)
    with pytest.raises(ValueError, match="ref_logps"):
        policy_loss(logps, None, torch.zeros(1), torch.ones(1, 2), config)


def test_kl_ratio_correction_keeps_value_changes_gradient_on_policy():
    ref = torch.tensor([[-1.5, -1.0]], dtype=torch.float64)
    grads = []
    for corrected in (False, True):
        logps = _leaf([[-1.0, -2.0]])
        config = GHPOConfig(beta=0.1, kl_ratio_correction=corrected)
        loss, _ = policy_loss(logps, None, torch.zeros(1), torch.ones(1, 2), config, ref_logps=ref)
        loss.backward()
        grads.append((loss.item(), logps.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0])
    assert not torch.allclose(grads[0][1], grads[1][1])


def test_truncated_importance_weights_are_capped_per_token():
    old = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    behaviour = torch.tensor([[-1.0, 0.1]], dtype=torch.float64)  # weights e^1 -> capped 2, e^-0.1
    weights = importance_weights(old, behaviour, torch.ones(1, 2), GHPOConfig(tis_cap=2.0))
    torch.testing.assert_close(weights, torch.tensor([[2.0, math.exp(-0.1)]], dtype=torch.float64))
    sequence = importance_weights(
        old, behaviour, torch.ones(1, 2), GHPOConfig(tis_cap=2.0, tis_level="sequence")
    )
    torch.testing.assert_close(sequence, torch.full((1, 2), 2.0, dtype=torch.float64))  # e^0.9 capped


def test_truncated_is_scales_the_loss_and_needs_behaviour_logps():
    logps = _leaf([[0.0, 0.0]])
    behaviour = torch.tensor([[0.5, 0.0]], dtype=torch.float64)
    config = GHPOConfig(tis_cap=3.0)
    loss, metrics = policy_loss(
        logps, None, torch.ones(1), torch.ones(1, 2), config, behaviour_logps=behaviour
    )
    assert loss.item() == pytest.approx(-(math.exp(-0.5) + 1.0) / 2)
    assert metrics["is_weight_mean"] == pytest.approx((math.exp(-0.5) + 1.0) / 2)
    with pytest.raises(ValueError, match="behaviour_logps is required"):
        policy_loss(logps, None, torch.ones(1), torch.ones(1, 2), config)


def test_plain_conditioning_weights_only_hinted_rows():
    old = torch.zeros(2, 2, dtype=torch.float64)
    behaviour = torch.tensor([[-2.0, 0.5], [-2.0, 0.5]], dtype=torch.float64)  # hinted-context log-probs
    hinted = torch.tensor([True, False])
    config = GHPOConfig(condition_on="plain", plain_is_cap=1.5)
    weights = importance_weights(old, behaviour, torch.ones(2, 2), config, hinted)
    expected = torch.tensor([[1.5, math.exp(-0.5)], [1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(weights, expected)


def test_uncorrected_plain_conditioning_gives_hinted_rows_weight_one_and_keeps_tis_for_the_rest():
    old = torch.zeros(2, 2, dtype=torch.float64)
    behaviour = torch.tensor([[-2.0, 0.5], [-2.0, 0.5]], dtype=torch.float64)
    hinted = torch.tensor([True, False])
    config = GHPOConfig(condition_on="plain", plain_correction="none", tis_cap=3.0)
    weights = importance_weights(old, behaviour, torch.ones(2, 2), config, hinted)
    expected = torch.tensor([[1.0, 1.0], [3.0, math.exp(-0.5)]], dtype=torch.float64)
    torch.testing.assert_close(weights, expected)


def test_plain_conditioning_is_off_in_hinted_mode():
    old = torch.zeros(1, 2)
    weights = importance_weights(old, None, torch.ones(1, 2), DEFAULT, torch.tensor([True]))
    assert weights is None


def test_truncated_completions_are_masked_when_asked():
    logps = _leaf([[0.0, 0.0], [0.0, 0.0]])
    advantages = torch.tensor([1.0, -1.0], dtype=torch.float64)
    truncated = torch.tensor([True, False])
    config = GHPOConfig(mask_truncated_completions=True)
    loss, metrics = policy_loss(logps, None, advantages, torch.ones(2, 2), config, truncated=truncated)
    assert loss.item() == pytest.approx(1.0)
    assert metrics["tokens"] == 2.0
    with pytest.raises(ValueError, match="truncated is required"):
        policy_loss(logps, None, advantages, torch.ones(2, 2), config)


@pytest.mark.parametrize("loss_type", ["bnpo", "grpo", "dapo", "dr_grpo"])
def test_empty_completion_gives_finite_zero_loss_and_zero_gradient(loss_type):
    logps = _leaf([[float("-inf"), 0.0, 0.0]])  # padding may hold anything, even -inf
    config = GHPOConfig(loss_type=loss_type, beta=0.1, tis_cap=2.0)
    loss, metrics = policy_loss(
        logps,
        torch.zeros(1, 3, dtype=torch.float64),
        torch.ones(1),
        torch.zeros(1, 3),
        config,
        ref_logps=torch.zeros(1, 3, dtype=torch.float64),
        behaviour_logps=torch.full((1, 3), float("nan"), dtype=torch.float64),
        token_normaliser=0,
        max_completion_length=3,
    )
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logps.grad, torch.zeros(1, 3, dtype=torch.float64))
    assert all(math.isfinite(value) for value in metrics.values())


def test_zero_length_completions_give_zero_loss():
    logps = torch.zeros(2, 0, requires_grad=True)
    loss, metrics = policy_loss(logps, None, torch.ones(2), torch.zeros(2, 0), DEFAULT)
    loss.backward()
    assert loss.item() == 0.0 and metrics["tokens"] == 0.0


def test_nan_behaviour_logps_on_completion_tokens_is_an_error():
    logps = _leaf([[0.0]])
    with pytest.raises(ValueError, match="NaN or infinite"):
        policy_loss(
            logps,
            None,
            torch.ones(1),
            torch.ones(1, 1),
            GHPOConfig(tis_cap=2.0),
            behaviour_logps=torch.tensor([[float("nan")]]),
        )


def test_shape_mismatch_names_the_tensor():
    logps = _leaf([[0.0, 0.0]])
    with pytest.raises(ValueError, match="completion_mask"):
        policy_loss(logps, None, torch.ones(1), torch.ones(1, 3), DEFAULT)
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(logps, None, torch.ones(3), torch.ones(1, 2), DEFAULT)
    with pytest.raises(ValueError, match="advantages contain NaN"):
        policy_loss(logps, None, torch.tensor([float("nan")]), torch.ones(1, 2), DEFAULT)


def test_row_flags_must_have_one_value_per_row():
    logps = _leaf([[0.0, 0.0]])
    with pytest.raises(ValueError, match="hinted must be"):
        policy_loss(logps, None, torch.ones(1), torch.ones(1, 2), DEFAULT, hinted=torch.tensor([True, False]))
