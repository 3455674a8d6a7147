"""Pure pieces of the rollout server: advantages in plain Python match the trainer's torch ones, seeds
are reproducible, the admission bound, and the service imports no torch."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import torch

from ghpo.services.rollout.cursor import generation_seed
from ghpo.services.rollout.sampler import group_advantages
from ghpo.services.rollout.settings import Settings
from ghpo.trainer.core.advantages import group_advantages as torch_group_advantages


@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("size", [1, 2, 8])
def test_plain_python_advantages_match_the_trainer_convention(scale, size):
    rng = random.Random(size)
    for _ in range(20):
        rewards = [rng.choice([0.0, 0.5, 1.0, 1.5]) for _ in range(size)]
        expected = torch_group_advantages(
            torch.tensor(rewards, dtype=torch.float64), size, eps=1e-4, scale=scale
        )
        assert group_advantages(rewards, eps=1e-4, scale=scale) == pytest.approx(expected.tolist(), abs=1e-9)


def test_advantages_refuse_non_finite_rewards():
    with pytest.raises(ValueError, match="finite"):
        group_advantages([1.0, float("nan")], eps=1e-4, scale=True)


def test_generation_seeds_are_reproducible_and_differ_by_position_and_level():
    assert generation_seed(0, 1, 2, 3) == generation_seed(0, 1, 2, 3)
    seeds = {generation_seed(0, 0, p, lv) for p in range(50) for lv in range(4)}
    assert len(seeds) == 200 and all(0 <= s < 2**62 for s in seeds)


def test_admission_bound_is_lag_plus_one_batches():
    settings = Settings(inference_urls=["http://x"], max_policy_lag=2, batch_groups=8)
    assert settings.admission_groups == 24


def test_the_rollout_service_imports_no_torch():
    code = "import sys, ghpo.services.rollout.app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_steps_generation_tally_counts_every_round_and_every_group_without_signal():
    from ghpo.services.rollout.producer import no_signal, step_tally
    from ghpo.services.rollout.sampler import Slot
    from ghpo.shared.data.records import PromptRecord
    from ghpo.shared.schemas.rollout import DropReason

    record = PromptRecord(id="p", problem="1+1", answer="2", solution="2")

    def slot(g: int, **fields) -> Slot:
        return Slot(g=g, epoch=0, position=g, record=record, **fields)

    solved = slot(0, rewards=[1.0, 0.0, 1.0, 1.0], plain_accuracy=0.75, generated=4)
    all_right = slot(1, rewards=[1.1] * 4, plain_accuracy=1.0, generated=4)
    rescued = slot(2, level=2, rewards=[0.0, 1.0, 0.0, 0.0], plain_accuracy=0.0, generated=12)
    hopeless = slot(3, level=3, rewards=[0.0] * 4, plain_accuracy=0.0, generated=16)
    failed = slot(4, generated=4, drop=DropReason.verifier_failed)  # generated, then lost: still spent
    assert [no_signal(s) for s in (solved, all_right, rescued, hopeless)] == [False, True, False, True]
    assert step_tally([solved, all_right, rescued, hopeless, failed]) == {
        "completions_generated": 40,
        "groups_sampled": 4,
        "difficult_groups": 2,
        "no_signal_groups": 2,
    }
