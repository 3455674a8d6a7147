"""The training loop over two data-parallel processes (tests/e2e/dist_loop_worker.py under
torch.distributed.run, gloo on CPU, ZeRO-2): rank 0 alone pulls, pushes, announces and acknowledges,
both ranks train their share of each batch, and the result equals a one-process run on the same batches;
a NaN on one rank only stops both, with the non-finite message and a checkpoint of the last good state.

The batches are real (the tiny model in the real inference service samples them, tests/e2e/
ghpo.local.batches) and the weights are pushed to that same service over HTTP. The loss is "dapo"
(token mean over the whole step, all ranks): the one loss whose value does not depend on how rows are
split into micro-batches and ranks, so one and two processes compute the same update.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

pytest.importorskip("vllm")
pytest.importorskip("deepspeed")

from safetensors.torch import load_file

from ghpo.local.batches import real_batches
from ghpo.trainer.train.batches import trainable
from ghpo.trainer.train.checkpoint import Checkpointer
from ghpo.trainer.train.config import parse_config
from ghpo.trainer.train.engine import build_engine
from ghpo.trainer.train.loop import Trainer
from ghpo.trainer.train.weights import full_state_dict
from tests.e2e.trainer_support import TOKEN, ListSource

pytestmark = pytest.mark.slow

STEPS = 3
LR = 1e-3
# One process vs two: the same maths, gradients summed in another order (gloo's all-reduce of two
# halves). Adam scales every update to about lr, so a rounding difference on a near-zero gradient
# coordinate moves it by a visible share of lr (as tests/e2e/test_trainer.py's DeepSpeed-vs-torch bound):
# 5% of lr per step.
PARAMS_TOLERANCE = 0.05 * LR * STEPS
# The step's loss: the mean of the two ranks' (each normalised by the step's tokens / 2) is the
# one-process loss, up to float summation order.
LOSS_REL_TOLERANCE = 1e-5
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def batches(inference_url):
    recorded = real_batches(inference_url, n_batches=6, groups=8, group_size=4, max_tokens=64, token=TOKEN)
    useful = [b for b in recorded if trainable(b)]
    assert len(useful) >= STEPS, "the tiny model should give some signal"
    return useful[:STEPS]


def make_config(model_dir, checkpoint_dir, *, tis_cap: float | None = None):
    return parse_config(
        {
            "model": {"path": str(model_dir)},
            "ghpo": {"loss_type": "dapo", "tis_cap": tis_cap},
            "optim": {"lr": LR, "schedule": "cosine", "warmup_steps": 1, "weight_decay": 0.01},
            "deepspeed": {"zero_stage": 2, "precision": "fp32", "micro_batch_size": 8},
            "run": {
                "steps": STEPS,
                "checkpoint_dir": str(checkpoint_dir),
                "checkpoint_every": 100,
                "num_threads": 1,
                "port": 0,
            },
        }
    )


def run_two_processes(config, batches, tmp_path, *, inference_url=None, nan_at=None) -> list[dict]:
    """dist_loop_worker.py on 2 ranks; each rank's record (rank 0 first)."""
    recorded = tmp_path / "batches.jsonl"
    recorded.write_text("".join(b.model_dump_json() + "\n" for b in batches))
    out = tmp_path / "out"
    out.mkdir()
    worker = Path(__file__).with_name("dist_loop_worker.py")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(worker), config.model_dump_json(), str(recorded), str(out)]
    cmd += [inference_url or "-", nan_at or "-"]
    # the workers' own rendezvous, not this process's one-rank group
    env = {
        k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    }
    env["GHPO_TRAINER_TOKEN"] = TOKEN
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-6000:]
    return [json.loads((out / f"rank-{rank}.json").read_text()) for rank in (0, 1)]


def served_version(inference_url) -> int:
    import httpx

    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.get(f"{inference_url}/v1/weights", headers=headers, timeout=10).json()["policy_version"]


def test_two_ranks_train_like_one_process_with_rank0_alone_pulling_pushing_and_acking(
    model_dir, batches, inference_url, tmp_path
):
    # the reference: one process, same config and batches, no weight push
    one = Trainer(
        build_engine(make_config(model_dir, tmp_path / "one")),
        ListSource(batches),
        Checkpointer(tmp_path / "one"),
    )
    one.start()
    one.run()
    reference = full_state_dict(one.train, bucket_bytes=1 << 20)

    assert served_version(inference_url) == 0  # the versions below start from a fresh replica
    updates = REGISTRY.get_sample_value("ghpo_inference_weight_updates_total") or 0.0
    rank0, rank1 = run_two_processes(
        make_config(model_dir, tmp_path / "two"), batches, tmp_path, inference_url=inference_url
    )

    ids = [b.batch_id for b in batches]
    assert rank0["acked"] == [[batch_id, v] for v, batch_id in enumerate(ids, start=1)]  # each once
    assert rank0["pulled"] == STEPS and rank0["announced"] == [0, 1, 2, 3]
    assert rank1["pulled"] == 0 and rank1["acked"] == [] and rank1["announced"] == []
    # one push per step, by one rank: the replica committed exactly STEPS updates and serves the last
    assert REGISTRY.get_sample_value("ghpo_inference_weight_updates_total") == updates + STEPS
    assert served_version(inference_url) == STEPS
    assert rank0["step"] == rank1["step"] == STEPS and rank0["policy_version"] == rank1["policy_version"]

    for r0, r1, single in zip(rank0["losses"], rank1["losses"], [r.loss for r in one.history], strict=True):
        assert (r0 + r1) / 2 == pytest.approx(single, rel=LOSS_REL_TOLERANCE, abs=1e-7)
    two = load_file(tmp_path / "out" / "params.safetensors")
    assert two.keys() == reference.keys()
    diff = max(float((two[k] - reference[k]).abs().max()) for k in reference)
    assert diff <= PARAMS_TOLERANCE, f"two-process parameters differ from one process by {diff}"
    initial = load_file(Path(model_dir) / "model.safetensors")
    moved = max(float((reference[k] - initial[k].float()).abs().max()) for k in reference)
    assert moved > 10 * PARAMS_TOLERANCE  # the comparison is not vacuous: training moved the weights


def test_a_nan_on_one_rank_stops_every_rank_with_the_message_and_a_checkpoint(model_dir, batches, tmp_path):
    # with truncated IS on, the core loss itself refuses NaN log-probs: the rank that has them must not
    # reach it, yet still take part in the gradient collectives
    config = make_config(model_dir, tmp_path / "ckpt", tis_cap=2.0)
    rank0, rank1 = run_two_processes(config, batches, tmp_path, nan_at="1:1")  # rank 1, second step
    assert rank0["step"] == rank1["step"] == 1
    assert "non-finite log-probs or loss on rank 1 of 2" in rank0["message"]
    assert "non-finite log-probs" in rank1["message"] and "(rank 1 of 2)" in rank1["message"]
    for record in (rank0, rank1):
        assert "last good state" in record["message"] and "step 1" in record["message"]
        assert record["latest"] == "step-000000001"
    assert rank0["acked"] == [[batches[0].batch_id, 1]]  # the batch that failed was not acknowledged
    assert Checkpointer(tmp_path / "ckpt").latest() == tmp_path / "ckpt" / "step-000000001"
