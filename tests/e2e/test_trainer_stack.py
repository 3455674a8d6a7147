"""`ghpo train`'s whole run against the real stack on CPU: the rollout server (this repo's), the tiny model
in the inference service (vLLM CPU build), the verifier, the broker and a real Redis server, all over
HTTP. The trainer pulls batches, trains, pushes weights, announces versions, acks, checkpoints (with the
rollout cursor and a broker snapshot), and a second run resumes from its checkpoint.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

pytest.importorskip("vllm")
pytest.importorskip("deepspeed")

from ghpo.local.batches import inference_service
from ghpo.services.broker.app import create_app as create_broker
from ghpo.services.broker.settings import Settings as BrokerSettings
from ghpo.services.rollout.app import create_app as create_rollout
from ghpo.services.rollout.settings import Settings as RolloutSettings
from ghpo.services.verifier.app import create_app as create_verifier
from ghpo.services.verifier.settings import Settings as VerifierSettings
from ghpo.shared.algorithm.config import GHPOConfig
from ghpo.shared.serving import running_app
from ghpo.trainer.train.checkpoint import Checkpointer, read_state
from ghpo.trainer.train.config import parse_config
from ghpo.trainer.train.session import run_training
from tests.e2e.trainer_support import TOKEN

pytestmark = pytest.mark.slow

G = 4
BATCH = 4
GHPO = GHPOConfig(tis_cap=2.0, cold_start_steps=0)  # the broker's, the rollout server's and the trainer's


def test_training_run_pulls_trains_pushes_acks_checkpoints_and_resumes(model_dir, redis_url, tmp_path):
    prefix = f"t{uuid.uuid4().hex[:8]}:"
    broker_settings = BrokerSettings(
        redis_url=redis_url,
        key_prefix=f"{prefix}b:",
        policy="ghpo",
        ghpo=GHPO,
        group_size=G,
        token=TOKEN,
    )
    with (
        inference_service(model_dir, token=TOKEN) as inference,
        running_app(create_verifier(VerifierSettings(workers=1, math_timeout_s=1, token=TOKEN))) as verifier,
        running_app(create_broker(broker_settings)) as broker,
    ):
        rollout_settings = RolloutSettings(
            inference_urls=[inference],
            verifier_url=verifier,
            broker_url=broker,
            upstream_token=TOKEN,
            token=TOKEN,
            redis_url=redis_url,
            key_prefix=f"{prefix}r:",
            group_size=G,
            batch_groups=BATCH,
            prompts_per_step=BATCH,
            max_tokens=96,
            ghpo=GHPO,
            arith_levels=[1, 7],
            arith_per_level=8,
            max_policy_lag=1,
        )
        with running_app(create_rollout(rollout_settings)) as rollout:
            data = {
                "model": {"path": str(model_dir)},
                "optim": {"lr": 1e-3, "warmup_steps": 0},
                "deepspeed": {"micro_batch_size": 16},
                "run": {
                    "steps": 2,
                    "checkpoint_dir": str(tmp_path / "ck"),
                    "checkpoint_every": 1,
                    "num_threads": 1,
                    "port": 0,
                    "batch_wait_s": 10,
                },
                "services": {
                    "rollout_url": rollout,
                    "inference_urls": [inference],
                    "broker_url": broker,
                    "token": TOKEN,
                    "weight_bucket_bytes": 512 * 1024,
                },
                "ghpo": GHPO.model_dump(),
            }
            headers = {"Authorization": f"Bearer {TOKEN}"}
            history = run_training(parse_config(data))
            assert len(history) == 2 and all(r.tokens > 0 for r in history)
            served = httpx.get(f"{inference}/v1/weights", headers=headers).json()["policy_version"]
            status = httpx.get(f"{rollout}/v1/status", headers=headers).json()
            assert served == 2 and status["policy_version"] == 2
            assert status["acked_groups"] >= 2 * BATCH and status["unacked_batches"] == 0

            checkpoints = Checkpointer(tmp_path / "ck")
            latest = checkpoints.latest()
            state = read_state(latest)
            assert (state.step, state.policy_version) == (2, 2)
            assert state.cursor["position"] >= 2 * BATCH
            header = json.loads((latest / "broker.ndjson").read_text().splitlines()[0])
            assert header["format"].startswith("ghpo-broker-snapshot")

            # resume: the restored weights go to inference (as a newer version) before any training
            data["run"]["steps"] = 3
            history = run_training(parse_config(data))
            assert len(history) == 1
            served = httpx.get(f"{inference}/v1/weights", headers=headers).json()["policy_version"]
            assert served == 4  # 2 restored -> pushed as 3 (inference already served 2) -> 4 after a step
            assert read_state(checkpoints.latest()).step == 3
