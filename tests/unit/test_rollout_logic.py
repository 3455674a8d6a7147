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
    from ghpo.services.rollout.slot import Round, Row, Slot
    from ghpo.shared.data.records import PromptRecord
    from ghpo.shared.schemas.inference import Sample
    from ghpo.shared.schemas.rollout import DropReason

    record = PromptRecord(id="p", problem="1+1", answer="2", solution="2")
    wrong = Sample(token_ids=[3], logprobs=[-0.5], finish_reason="stop", policy_version=0)

    def slot(g: int, plain_correct: int | None = None, **fields) -> Slot:
        """A slot whose first round was unhinted with `plain_correct` of 4 right (None: started hinted)."""
        rounds = [Round(level=0, correct=plain_correct, size=4)] if plain_correct is not None else []
        return Slot(g=g, epoch=0, position=g, record=record, rounds=rounds, **fields)

    solved = slot(0, 3, rewards=[1.0, 0.0, 1.0, 1.0], generated=4)
    all_right = slot(1, 4, rewards=[1.1] * 4, generated=4)
    rescued = slot(2, 0, level=2, rewards=[0.0, 1.0, 0.0, 0.0], generated=12)
    hopeless = slot(3, 0, level=3, rewards=[0.0] * 4, generated=16)
    failed = slot(4, generated=4, drop=DropReason.verifier_failed)  # generated, then lost: still spent
    assert [s.plain_accuracy for s in (solved, all_right, rescued, failed)] == [0.75, 1.0, 0.0, None]
    assert [no_signal(s) for s in (solved, all_right, rescued, hopeless)] == [False, True, False, True]
    # NuRL's group: an all-right hinted round beside a kept wrong unhinted rollout has signal
    kept = slot(5, 0, level=1, rewards=[1.0] * 4, kept=[Row(wrong, 0.0, 0.0, unhinted=True)], generated=8)
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


def test_a_rescued_group_trains_its_kept_unhinted_rows_first_then_the_last_hinted_ones():
    from ghpo.services.rollout.slot import Row, Slot
    from ghpo.shared.data.records import PromptRecord
    from ghpo.shared.schemas.inference import Sample

    def sample(token: int) -> Sample:
        return Sample(token_ids=[token], logprobs=[-0.1], finish_reason="stop", policy_version=0)

    record = PromptRecord(id="p", problem="1+1", answer="2", solution="1+1=2")
    kept = Row(sample(99), reward=0.0, accuracy=0.0, unhinted=True)
    hinted = [sample(t) for t in range(4)]
    s = Slot(
        0,
        0,
        0,
        record,
        level=1,
        samples=hinted,
        rewards=[1.5, 0.0, 1.0, 1.5],
        accuracies=[1.0, 0.0, 1.0, 1.0],
    )
    s.kept = [kept]
    rows = s.rows()
    assert [(r.sample.token_ids[0], r.reward, r.unhinted) for r in rows] == [
        (99, 0.0, True),
        (1, 0.0, False),
        (2, 1.0, False),
        (3, 1.5, False),
    ]
    assert s.final_rewards() == [r.reward for r in rows]
