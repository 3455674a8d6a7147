"""`ghpo run` heals: each of its six processes is killed once with SIGKILL during one run, and the run
still reaches its step target, trains no batch twice, loses no acknowledged group, records every restart
and leaves no process behind.

One run on purpose (starting vLLM, DeepSpeed and four services is most of the cost). Small batches, so
the whole run with its six recoveries fits in a few minutes on two cores. The figures of one run are
written to `<tmp>/heal-figures.json` and printed, for docs/operations.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import find, left_behind, new_mark, stop_run, wait_while_running

pytestmark = pytest.mark.slow

STEPS = 36
CHECKPOINT_EVERY = 3
CONFIG = f"""
run = {{ steps = {STEPS}, max_minutes = 30, checkpoint_every = {CHECKPOINT_EVERY}, eval_every = 1000, eval_per_level = 4 }}
data = {{ arith_levels = [1, 2, 3], arith_per_level = 100 }}
rollout = {{ group_size = 4, batch_groups = 4, max_tokens = 48 }}
optim = {{ lr = 1e-4 }}
# vLLM alone took over 300 s (the default) to start on two cores shared with other jobs.
services = {{ start_timeout_s = 900 }}
"""
# What to kill, and how to find its process: every needle must be in its command line (Redis names
# itself by its address, filled in from endpoints.json).
VICTIMS = (
    ("redis", ("127.0.0.1:{redis_port}",)),
    ("verifier", ("ghpo serve verifier",)),
    ("broker", ("ghpo serve broker",)),
    ("inference", ("ghpo serve inference",)),
    ("rollout", ("ghpo serve rollout",)),
    ("trainer", ("ghpo train",)),
)


def _records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# On two busy cores a restart of the inference service alone took 150 s (vLLM's start-up).
@pytest.mark.timeout(2400)
def test_run_survives_a_sigkill_of_each_process_and_trains_every_acknowledged_group_once(
    tmp_path, orphan_watch
):
    config, run_dir, log = tmp_path / "run.toml", tmp_path / "run", tmp_path / "ghpo-run.log"
    config.write_text(CONFIG)
    mark = new_mark()
    run = subprocess.Popen(
        [sys.executable, "-m", "ghpo", "run", "--config", str(config), "--run-dir", str(run_dir)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **mark, "TERM": "dumb"},
    )
    history = run_dir / "history.jsonl"

    def steps_done() -> int:
        return max((r["step"] for r in _records(history) if r["kind"] == "step"), default=0)

    def restarted(name: str) -> bool:
        return any(r["kind"] == "restart" and r["process"] == name for r in _records(history))

    killed_at = {}
    try:
        wait_while_running(lambda: steps_done() >= 2, 1200, "two training steps", run, log)
        redis_port = (
            json.loads((run_dir / "endpoints.json").read_text())["redis"].rsplit(":", 1)[1].split("/")[0]
        )
        for name, needles in VICTIMS:
            needles = tuple(n.format(redis_port=redis_port) for n in needles)
            pid = wait_while_running(
                lambda needles=needles, name=name: find(mark, *needles, unmarked=name == "redis"),
                60,
                f"the {name} process",
                run,
                log,
            )
            if name == "trainer":  # past a checkpoint, so the restarted trainer redoes steps
                wait_while_running(
                    lambda: steps_done() % CHECKPOINT_EVERY, 300, "a step past a checkpoint", run, log
                )
            before = steps_done()
            lines_before = len(_records(run_dir / "trainer-steps.jsonl"))
            killed = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            wait_while_running(lambda name=name: restarted(name), 300, f"{name} restarted", run, log)
            wait_while_running(
                lambda n=lines_before: len(_records(run_dir / "trainer-steps.jsonl")) > n,
                600,
                f"a step after {name}'s restart",
                run,
                log,
            )
            killed_at[name] = {"steps_done": before, "next_step_after_s": round(time.monotonic() - killed, 1)}
            # Training goes on after the restart (the trainer may first redo steps after its checkpoint).
            target = min(STEPS, max(steps_done(), before) + 2)
            wait_while_running(
                lambda target=target: steps_done() >= target, 600, f"steps after {name}'s restart", run, log
            )
        assert run.wait(900) == 0, log.read_text()[-4000:]
    finally:
        stop_run(run)
    redis_address = json.loads((run_dir / "endpoints.json").read_text())["redis"].split("//")[1].split("/")[0]
    orphans = left_behind(mark, 10.0, [redis_address], orphan_watch)
    assert not orphans, f"alive 10 s after ghpo run returned: {orphans}"

    end = json.loads((run_dir / "end.json").read_text())
    records = _records(history)
    steps = [r for r in records if r["kind"] == "step"]
    # The run reaches its target, and each step is in the history file once (a redone step replaced).
    assert end["step"] == STEPS and [s["step"] for s in steps] == list(range(1, STEPS + 1))
    # No batch trained twice: the final model's steps trained distinct batches, and none of the
    # trainer's own lines (a redone step appends again) names a batch twice for different steps.
    assert len({s["batch_id"] for s in steps}) == STEPS
    final = {}
    for line in _records(run_dir / "trainer-steps.jsonl"):
        final[line["step"]] = line["batch_id"]  # the later line of a redone step wins
    assert [final[s] for s in range(1, STEPS + 1)] == [s["batch_id"] for s in steps]
    # No acknowledged group lost: what the rollout server counts as acknowledged is exactly what the
    # final model was trained on, plus the batches acknowledged with nothing to train.
    trained = sum(sum(s["groups_by_level"].values()) for s in steps)
    skipped = sum(s["skipped_groups"] for s in steps)
    assert (end["groups_trained"], end["groups_skipped"]) == (trained, skipped)
    assert end["rollout"]["acked_groups"] == trained + skipped, end
    # Every restart is recorded: end.json, history and the report.
    restarts = [r for r in records if r["kind"] == "restart"]
    assert sorted(r["process"] for r in end["restarts"]) == sorted(name for name, _ in VICTIMS)
    assert sorted(r["process"] for r in restarts) == sorted(name for name, _ in VICTIMS)
    assert all(r["exit"] == "was killed by SIGKILL" for r in restarts), restarts
    report = (run_dir / "report.md").read_text()
    assert "## Restarts (6)" in report
    for name, _ in VICTIMS:
        assert f"| {name} |" in report

    figures = {
        "wall_s": end["elapsed_s"],
        "restarts": [r | killed_at[r["process"]] for r in end["restarts"]],
        "groups_trained": trained,
        "groups_skipped": skipped,
        "acked_groups": end["rollout"]["acked_groups"],
        "dropped": end["rollout"].get("groups_dropped", {}),
        "trainer_lines": len(_records(run_dir / "trainer-steps.jsonl")),
    }
    (tmp_path / "heal-figures.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
