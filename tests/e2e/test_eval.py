"""`ghpo eval` end to end on the tiny model: in-process vLLM, and against running inference and verifier
services over real HTTP. Each starts a real vLLM engine (~30-60 s on 2 busy cores), so both are slow.

The tiny model answers about 14 of 15 held-out level-1 problems greedily; level 2 is harder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import httpx
import pytest

pytest.importorskip("vllm")

from ghpo.shared.serving import running_app
from tests.support.benchmarks import needs_benchmarks

pytestmark = [pytest.mark.slow, needs_benchmarks]

METRICS = {
    "n",
    "k",
    "pass@1",
    "avg@k",
    "pass@k",
    "pass_k",
    "format_rate",
    "answered_rate",
    "truncated_rate",
    "mean_length",
    "prompt_too_long",
}
TOKEN = "eval-test-token"


def ghpo_eval(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "ghpo", "eval", *argv], capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def tiny_model():
    from ghpo.trainer.tiny import ensure_tiny_model

    return ensure_tiny_model()


def test_in_process_eval_writes_per_level_metrics_in_the_reference_format(tiny_model, tmp_path):
    out, samples = tmp_path / "r.json", tmp_path / "s.jsonl"

    proc = ghpo_eval(
        "--model", str(tiny_model), "--benchmarks", "arith,math500", "--arith-levels", "2,3",
        "--arith-per-level", "15", "--limit", "5", "--max-tokens", "96",
        "--out", str(out), "--samples-out", str(samples),
    )  # fmt: skip

    report = json.loads(out.read_text())
    arith, math500 = report["results"]["arith"], report["results"]["math500"]
    assert set(report["results"]) == {"arith", "math500"}
    assert set(arith["levels"]) == {"2", "3"}
    for metrics in (arith["all"], arith["levels"]["2"], math500["all"], *math500["levels"].values()):
        assert set(metrics) == METRICS
    assert arith["levels"]["2"]["n"] == 15 and arith["all"]["n"] == 30 and math500["all"]["n"] == 5
    # the shipped model writes the reference format and boxes an answer nearly always; greedy, it prefers
    # its noisy teacher's slip, so its accuracy is low by design (docs/tiny-world.md)
    assert arith["levels"]["2"]["format_rate"] >= 0.8 and arith["levels"]["2"]["answered_rate"] >= 0.8
    assert report["config"]["k"] == 1 and report["config"]["temperature"] == 0.0
    assert report["command"].startswith("ghpo eval")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(rows) == 35 and all(r["completion"] is not None for r in rows)
    _assert_figures_score_the_recorded_completions(report["results"], rows)
    assert "arith" in proc.stdout and "pass@1" in proc.stdout  # the table
    # vLLM's own output (its logger, its engine core and workers) is in the log beside the report, and
    # the interpreter exits without an engine left for teardown (AsyncLLM.__del__ failing there).
    console = proc.stdout + proc.stderr
    for leak in ("(EngineCore", "(MainProcess", "Loading safetensors", "Exception ignored", "Traceback"):
        assert leak not in console, console[-3000:]
    # What the console lacks is in the log: the engine's loading lines (its engine-core lines and the
    # shutdown line are there too on a quiet machine, but under load a run's log was seen to end before them).
    # (Its weight-loading bar is off outside a terminal; under load the file was seen to hold only vLLM's
    # import-time lines, its INFO lines not yet written when the command returned, so only its presence
    # and the vLLM lines' absence from the console are held.)
    engine_log = (tmp_path / "r.json.vllm.log").read_text()
    assert "vllm" in engine_log.lower() or "(MainProcess" in engine_log, engine_log[-2000:]


def _assert_figures_score_the_recorded_completions(results: dict, rows: list[dict]) -> None:
    """Each recorded completion is correct exactly when the verifier's scoring says so, and every pass@1
    (k = 1) is the share of correct completions among its benchmark's, or its level's, rows."""
    from ghpo.shared.scoring.answers import score

    for row in rows:
        assert row["correct"] == (score(row["completion"], row["gold"]).accuracy == 1.0), row
    for name, result in results.items():
        mine = [r for r in rows if r["benchmark"] == name]
        by_level = {level: [r for r in mine if str(r["level"]) == level] for level in result["levels"]}
        assert sum(len(at) for at in by_level.values()) in (0, len(mine))  # every row has a level, or none
        for metrics, at in [
            (result["all"], mine),
            *((result["levels"][lv], by_level[lv]) for lv in by_level),
        ]:
            assert metrics["n"] == len(at) > 0
            assert metrics["pass@1"] == pytest.approx(sum(r["correct"] for r in at) / len(at))


def test_eval_against_running_services_samples_k_and_scores_too_long_prompts_zero(tiny_model, tmp_path):
    from ghpo.services.inference.app import create_app as inference_app
    from ghpo.services.inference.settings import Settings as InferenceSettings
    from ghpo.services.verifier.app import create_app as verifier_app
    from ghpo.services.verifier.settings import Settings as VerifierSettings

    # A short context: two of MATH-500's first six prompts (206 and 679 tokens) do not fit.
    inference = inference_app(
        InferenceSettings(model=str(tiny_model), token=TOKEN, max_model_len=160, kv_cache_gib=1)
    )
    verifier = verifier_app(VerifierSettings(token=TOKEN, workers=1))
    out = tmp_path / "r.json"
    with running_app(inference) as inference_url, running_app(verifier) as verifier_url:
        deadline = time.monotonic() + 600
        while httpx.get(f"{inference_url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "inference engine did not load"
            time.sleep(0.5)

        ghpo_eval(
            "--inference-url", inference_url, "--verifier-url", verifier_url, "--token", TOKEN,
            "--benchmarks", "arith,math500", "--arith-levels", "2", "--arith-per-level", "15", "--limit", "6",
            "--k", "4", "--pass-k", "2", "--temperature", "1.0", "--seed", "3", "--max-tokens", "64",
            "--out", str(out),
        )  # fmt: skip

    report = json.loads(out.read_text())
    level2, math500 = report["results"]["arith"]["levels"]["2"], report["results"]["math500"]["all"]
    assert level2["k"] == 4 and level2["pass_k"] == 2 and level2["n"] == 15
    # sampled at temperature 1 the shipped model is right on about 13% of level 2 (docs/tiny-world.md): of
    # 60 samples some are right (all wrong has a chance of about 2e-4), and pass@2 is at least avg@4
    assert level2["pass@k"] >= level2["avg@k"] > 0
    assert math500["n"] == 6 and math500["prompt_too_long"] == 2
    assert report["config"]["token"] is None  # the secret is not written out
