"""How long `ghpo run` gives the trainer to finish its step and checkpoint, and what it says after."""

from __future__ import annotations

from ghpo.local.stopping import Grace, latest_checkpoint, stop_grace, stopped_line


def _step(step: int, seconds: float, checkpoint_s: float | None = None) -> dict:
    return {
        "step": step,
        "wait_s": seconds / 2,
        "train_s": seconds / 2,
        "sync_s": 0.0,
        "checkpoint_s": checkpoint_s,
    }


def test_grace_is_twice_the_median_step_plus_the_last_checkpoint_and_never_below_the_floor():
    steps = [_step(1, 100.0, None), _step(2, 140.0, 25.0), _step(3, 120.0, 25.0), _step(4, 500.0, 30.0)]
    grace = stop_grace(20.0, steps)
    assert grace.seconds == 2 * (130.0 + 30.0) and "median step 130.0 s" in grace.why
    assert stop_grace(60.0, [_step(1, 2.0, 0.5)]).seconds == 60.0  # the floor wins for a tiny model
    assert stop_grace(60.0, []).seconds == 60.0


def test_a_stop_says_which_checkpoint_resume_continues_from_and_what_a_kill_lost(tmp_path):
    grace = Grace(40.0, "2 x (median step 15.0 s, last checkpoint 5.0 s)")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step-000000010\n")
    assert latest_checkpoint(tmp_path) == ("step-000000010", 10)
    clean = stopped_line(tmp_path, 10, killed=False, grace=grace)
    assert "stopped cleanly" in clean and "continues from checkpoint step-000000010 (step 10)" in clean
    killed = stopped_line(tmp_path, 13, killed=True, grace=grace)
    assert "did not stop within 40 s" in killed and "steps 11-13 (trained after it) are lost" in killed
    assert f"ghpo run --resume --run-dir {tmp_path}" in killed
    nothing = stopped_line(tmp_path / "elsewhere", 3, killed=True, grace=grace)
    assert "no checkpoint (it starts over)" in nothing and "steps 1-3" in nothing
