"""Pure pieces of the rollout server: seeds are reproducible, the admission bound, a step's tally, and the
service imports no torch."""

from __future__ import annotations

import subprocess
import sys

from ghpo.services.rollout.cursor import generation_seed
from ghpo.services.rollout.settings import Settings


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
    # NuRL's group: an all-right hinted round beside a kept wrong unhinted rollout has signal
    kept = slot(5, level=1, rewards=[1.0] * 4, kept=[(None, 0.0, 0.0)], plain_accuracy=0.0, generated=8)
    assert not no_signal(kept) and kept.final_rewards() == [0.0, 1.0, 1.0, 1.0]
    assert step_tally([solved, all_right, rescued, hopeless, failed]) == {
        "completions_generated": 40,
        "groups_sampled": 4,
        "difficult_groups": 2,
        "no_signal_groups": 2,
    }


def test_keep_unhinted_must_leave_a_hinted_completion_in_the_group():
    import pytest

    with pytest.raises(ValueError, match=r"keep_unhinted \(4\) must be smaller than group_size \(4\)"):
        Settings(inference_urls=["http://x"], group_size=4, ghpo={"keep_unhinted": 4})
    assert (
        Settings(inference_urls=["http://x"], group_size=4, ghpo={"keep_unhinted": 3}).ghpo.keep_unhinted == 3
    )
