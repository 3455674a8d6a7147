"""`ghpo run` end to end: the whole local system trains, Prometheus reads its reward-sparsity series,
Ctrl-C stops it cleanly with a checkpoint, `--resume` finishes the run, and the report is written; after
each exit nothing the run started is still alive 10 s later.

One test on purpose: starting vLLM, DeepSpeed and four services costs most of its time, and the
interrupt/resume path needs a run in progress anyway.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest

from tests.support.processes import left_behind, new_mark, stop_run, wait_while_running
from tests.support.prometheus import prometheus_binary, running_prometheus

pytestmark = pytest.mark.slow

CONFIG = """
[run]
# Enough steps that the run is still training when the Prometheus checks are done and Ctrl-C is sent
# (a tiny step takes ~1.5 s; five of them were over before Prometheus had started once).
steps = 20
checkpoint_every = 100   # only the stop on Ctrl-C writes a checkpoint before the end
eval_every = 100
eval_per_level = 4
eval_levels = [1, 2]

[data]
arith_levels = [1, 2, 3]
arith_per_level = 50

[rollout]
group_size = 4
batch_groups = 4
max_tokens = 64

[optim]
lr = 1e-4
"""


def _records(run_dir: Path) -> list[dict]:
    """The trainer's per-step records (step, batch figures, loss...)."""
    path = run_dir / "trainer-steps.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _steps(run_dir: Path) -> list[int]:
    return [record["step"] for record in _records(run_dir)]


DIFFICULT = "ghpo_trainer_batch_difficult_fraction"
TRAINER_SERIES = f'{{__name__=~"{DIFFICULT}|ghpo_trainer_steps_total|ghpo_trainer_empty_batches_total"}}[1h]'


def _after_first_step(result: list[dict]) -> dict[str, list[float]]:
    """Each trainer series of a range query, its values from the scrapes that came after a trained step
    (before it, the gauge holds its initial 0, not a batch's figure)."""
    by_name = {series["metric"]["__name__"]: dict(series["values"]) for series in result}
    steps = by_name.get("ghpo_trainer_steps_total", {})
    trained = {at for at, value in steps.items() if float(value) >= 1}
    return {name: [float(v) for at, v in values.items() if at in trained] for name, values in by_name.items()}


MARK = new_mark()  # every process a run below starts carries it


def _ghpo_run(run_dir: Path, log: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "ghpo", "run", "--run-dir", str(run_dir), *extra],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **MARK, "TERM": "dumb"},
        # As a shell starts `ghpo run &` or `nohup ghpo run`: SIGINT ignored. The stop below must still work.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


# Two runs and a Prometheus: about 7 minutes on two quiet cores, past the default 600 s on busy ones.
@pytest.mark.timeout(1800)
def test_run_trains_is_scraped_stops_on_ctrl_c_and_resumes_to_a_report(tmp_path, orphan_watch):
    if prometheus_binary() is None:
        pytest.skip("no prometheus binary (deploy/tools/install-validators.sh installs it)")
    config = tmp_path / "run.toml"
    config.write_text(CONFIG)
    run_dir, log = tmp_path / "run", tmp_path / "ghpo-run.log"

    first = _ghpo_run(run_dir, log, "--config", str(config))
    try:
        endpoints = wait_while_running(
            lambda: (
                (run_dir / "endpoints.json").exists() and json.loads((run_dir / "endpoints.json").read_text())
            ),
            300,
            "the endpoints file",
            first,
            log,
        )
        jobs = {"ghpo-rollout": [endpoints["rollout"]], "ghpo-trainer": [endpoints["trainer"]]}
        with running_prometheus(jobs, work_dir=tmp_path / "prometheus") as prom:
            wait_while_running(lambda: len(_steps(run_dir)) >= 2, 600, "two training steps", first, log)
            started = prom.wait_for(
                "sum(ghpo_rollout_groups_started_total)", lambda r: r and float(r[0]["value"][1]) > 0
            )
            difficult = prom.wait_for("sum(ghpo_rollout_difficult_groups_total)")
            by_level = prom.wait_for("sum by (final_level) (ghpo_rollout_groups_enqueued_total)")
            trainer = prom.wait_for(TRAINER_SERIES, lambda r: _after_first_step(r).get(DIFFICULT))
        assert float(difficult[0]["value"][1]) <= float(started[0]["value"][1])
        assert {series["metric"]["final_level"] for series in by_level} <= {"0", "1", "2", "3"}

        first.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        assert first.wait(120) == 130
    finally:
        stop_run(first)
    # The scraped gauge is the difficult share of one batch's groups and, unless a batch was skipped as
    # untrainable (it sets the gauge but trains no step), the difficult fraction of a step the trainer recorded.
    scraped = _after_first_step(trainer)
    groups = tomllib.loads(CONFIG)["rollout"]["batch_groups"]
    assert all((fraction * groups).is_integer() for fraction in scraped[DIFFICULT]), scraped
    if not any(scraped["ghpo_trainer_empty_batches_total"]):
        assert set(scraped[DIFFICULT]) <= {step["difficult_fraction"] for step in _records(run_dir)}, scraped
    stopped_at = _steps(run_dir)[-1]
    assert stopped_at < 20, "the run finished before Ctrl-C: the interruption was not exercised"
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    assert latest.endswith(f"{stopped_at:09d}"), (
        f"the stop checkpointed step {stopped_at}: latest is {latest}"
    )
    with pytest.raises(httpx.TransportError):  # every service was stopped with the run
        httpx.get(endpoints["rollout"] + "/healthz", timeout=2)
    redis = endpoints["redis"].split("//")[1].split("/")[0]  # Redis is found by its address
    assert not (orphans := left_behind(MARK, 10.0, [redis], orphan_watch)), f"alive after Ctrl-C: {orphans}"
    log_text = log.read_text()
    assert "stopping: giving the trainer up to" in log_text and "the trainer stopped cleanly" in log_text

    second = _ghpo_run(run_dir, log, "--resume")
    assert second.wait(900) == 0, log.read_text()[-3000:]
    redis = json.loads((run_dir / "endpoints.json").read_text())["redis"].split("//")[1].split("/")[0]
    assert not (orphans := left_behind(MARK, 10.0, [redis], orphan_watch)), f"alive after the run: {orphans}"

    steps = _steps(run_dir)
    assert steps == list(range(1, 21)), f"every step exactly once across the interruption: {steps}"
    report = (run_dir / "report.md").read_text()
    assert "step 0 and step 20:" in report and "| level | greedy | change (points) | sampled |" in report
    for plot in ("accuracy_per_level", "reward_sparsity", "hint_levels"):
        assert (run_dir / f"{plot}.png").stat().st_size > 0
