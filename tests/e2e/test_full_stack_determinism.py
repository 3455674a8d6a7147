"""Determinism of a whole training run through the real stack on CPU: 2N steps straight end in the same
place as N steps, a stop, a restart of everything and N more.

Stack: real Redis, the verifier, the guidance broker and the rollout server (this repo's apps under real
uvicorn), the tiny model in the inference service (`ghpo serve inference`, vLLM CPU build, its own
process), the trainer. With `max_policy_lag = 0` and `prompts_per_step = batch_groups` every batch is
drawn, planned and sampled under the weights of the step before it, so the run is a function of the
seeds. Three runs share nothing but the (pure, stateless) verifier:
  * straight: 2N steps (in this process);
  * first half: the same config stopped at step N by `Trainer.run(stop_after=N)` (it checkpoints);
  * second half: an operator restart. Fresh Redis (nothing survives), fresh broker and rollout apps, a
    freshly started inference process (still serving the initial weights, version 0), and the trainer
    as a fresh `ghpo train --config` process. Its resume pushes the checkpoint's weights (as version N),
    announces N, restores the broker snapshot and rewinds the rollout cursor, then trains to 2N.
Compared at the end (the rollout server has queued the next step's groups and waits: lag 0 admission):
  1. parameters of the final checkpoints: max |diff| <= PARAM_TOLERANCE. Generation is token-identical
     (asserted through the per-step history below), so the only legitimate difference is float
     round-off between a resumed DeepSpeed engine and a continuing one; the recorded-batch resume test
     (test_trainer.py) sees <= 1e-6, 1e-5 leaves room without hiding a wrong batch (one step of
     lr 1e-3 moves parameters by ~1e-3);
  2. the broker's snapshot as data: stats and every prompt's record (visits, per-level counts, last
     start/final level, last step/version). Everything in it is deterministic: update-id records
     (idempotency, TTL'd) and the key prefix are not part of the compared data;
  3. the rollout cursor: trained position and next draw position, and the served policy version;
  4. each step's history line (loss, grad norm, tokens, rewards, sparsity): the same batches were trained.
Not compared: the rollout's all-time counters (acked/dropped groups: the second half's Redis is new, and
its start-up groups sampled at version 0 are dropped as `rewound` by the resume), batch ids.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("vllm")
pytest.importorskip("deepspeed")

from ghpo.services.broker.app import create_app as create_broker
from ghpo.services.broker.settings import Settings as BrokerSettings
from ghpo.services.rollout.app import create_app as create_rollout
from ghpo.services.rollout.settings import Settings as RolloutSettings
from ghpo.services.verifier.app import create_app as create_verifier
from ghpo.services.verifier.settings import Settings as VerifierSettings
from ghpo.shared.algorithm.config import GHPOConfig
from ghpo.shared.redis_local import free_port
from ghpo.shared.schemas.rollout import Batch
from ghpo.shared.serving import running_app
from ghpo.trainer.train.checkpoint import Checkpointer, read_state
from ghpo.trainer.train.config import parse_config
from ghpo.trainer.train.engine import build_engine
from ghpo.trainer.train.loop import Trainer
from ghpo.trainer.train.source import BrokerClient, RolloutClient
from ghpo.trainer.train.weights import WeightSync
from tests.support.redis import redis_server_at

pytestmark = pytest.mark.slow

N = 2  # steps before the stop; the runs take 2N
G = 4
BATCH = 4
GHPO = GHPOConfig(tis_cap=2.0, cold_start_steps=0)  # the broker's, the rollout server's and the trainer's
PER_LEVEL = 6  # 12 prompts: the resume lands mid-epoch 0, step 4 crosses into epoch 1 (memory plans)
PARAM_TOLERANCE = 1e-5
TOKEN = "determinism-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
ROOT = Path(__file__).resolve().parents[2]
# The verifier's time limits are wall-clock: on a loaded machine a 1-2 s limit can time an item out in
# one run and not the other (its group is then dropped). Arithmetic answers parse in milliseconds.
VERIFIER = VerifierSettings(workers=1, math_timeout_s=30, item_deadline_s=120, token=TOKEN)


@contextlib.contextmanager
def inference_process(model_dir: Path, log: Path) -> Iterator[str]:
    """`ghpo serve inference` in a process of its own; yields its URL at once (see wait_ready)."""
    port = free_port()
    env = {**os.environ, "GHPO_INFERENCE_MODEL": str(model_dir), "GHPO_INFERENCE_PORT": str(port)}
    env |= {"GHPO_INFERENCE_TOKEN": TOKEN, "GHPO_INFERENCE_MAX_MODEL_LEN": "512"}
    env |= {"GHPO_INFERENCE_KV_CACHE_GIB": "1", "GHPO_INFERENCE_MAX_NUM_SEQS": "64"}
    cmd = [sys.executable, "-m", "ghpo", "serve", "inference"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def wait_ready(urls: list[str], logs: list[Path], timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    for url, log in zip(urls, logs, strict=True):
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"{url} not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)


@contextlib.contextmanager
def services(folder: Path, inference: str, verifier: str) -> Iterator[tuple[str, str]]:
    """A fresh Redis, broker and rollout server over `inference`; yields (rollout URL, broker URL)."""
    with redis_server_at(folder / "redis") as redis:
        broker_settings = BrokerSettings(
            redis_url=redis.url,
            key_prefix="b:",
            policy="ghpo-memory",
            ghpo=GHPO,
            group_size=G,
            token=TOKEN,
        )
        with running_app(create_broker(broker_settings)) as broker:
            rollout_settings = RolloutSettings(
                inference_urls=[inference],
                verifier_url=verifier,
                broker_url=broker,
                upstream_token=TOKEN,
                token=TOKEN,
                redis_url=redis.url,
                key_prefix="r:",
                group_size=G,
                batch_groups=BATCH,
                prompts_per_step=BATCH,  # one step is one batch: the same prompts are always drawn together
                max_policy_lag=0,
                max_tokens=48,
                ghpo=GHPO,
                arith_levels=[1, 7],
                arith_per_level=PER_LEVEL,
                seed=3,
            )
            with running_app(create_rollout(rollout_settings)) as rollout:
                yield rollout, broker


def config_data(model_dir: Path, checkpoints: Path, history: Path, rollout: str, broker: str, inference: str):
    return {
        "model": {"path": str(model_dir)},
        "optim": {"lr": 1e-3, "warmup_steps": 0},
        "deepspeed": {"micro_batch_size": 16},
        "ghpo": GHPO.model_dump(),
        "run": {
            "steps": 2 * N,
            "seed": 7,
            "checkpoint_dir": str(checkpoints),
            "checkpoint_every": 1000,  # only the stop's and the end's checkpoints
            "num_threads": 1,
            "port": 0,
            "batch_wait_s": 10,
            "history_file": str(history),
        },
        "services": {
            "rollout_url": rollout,
            "inference_urls": [inference],
            "broker_url": broker,
            "token": TOKEN,
            "weight_bucket_bytes": 512 * 1024,
        },
    }


class RecordingClient(RolloutClient):
    """The trainer's HTTP client of the rollout server, keeping every batch it was delivered."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.delivered: list[Batch] = []

    def next_batch(self, wait_s: float) -> Batch | None:
        batch = super().next_batch(wait_s)
        if batch is not None:
            self.delivered.append(batch)
        return batch


def sampled(batches: list[Batch]) -> list[dict]:
    """What generation produced (prompts, hint levels, tokens, behaviour log-probs, rewards, versions),
    without batch ids and creation times (ids name the Redis state, times are wall clock)."""
    return [
        b.model_dump(
            mode="json", exclude={"batch_id": True, "created_at": True, "groups": {"__all__": {"created_at"}}}
        )
        for b in batches
    ]


def train_here(data: dict, stop_after: int | None = None) -> list[Batch]:
    """The trainer in this process, wired as `session.run_training` does, with a planned stop; returns
    the batches it was delivered."""
    config = parse_config(data)
    services_ = config.services
    source = RecordingClient(services_.rollout_url, token=TOKEN)
    sync = WeightSync(services_.inference_urls, token=TOKEN, bucket_bytes=services_.weight_bucket_bytes)
    broker = BrokerClient(services_.broker_url, token=TOKEN)
    try:
        trainer = Trainer(
            build_engine(config),
            source,
            Checkpointer(config.run.checkpoint_dir),
            weight_sync=sync,
            broker=broker,
        )
        trainer.start()
        trainer.run(stop_after=stop_after)
        return source.delivered
    finally:
        source.close()
        sync.close()
        broker.close()


def toml(data: dict) -> str:
    """Our config (tables of strings, numbers and lists) as TOML; JSON literals are valid TOML values."""
    lines = []
    for table, values in data.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def train_in_fresh_process(data: dict, folder: Path) -> None:
    """`ghpo train --config` as an operator restarts it (a process of its own, resuming `latest`)."""
    config = folder / "train.toml"
    config.write_text(toml(data))
    # not this process's DeepSpeed rendezvous (MASTER_PORT is in use here)
    env = {
        k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    }
    cmd = [sys.executable, "-m", "ghpo", "train", "--config", str(config)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]


def settled_state(rollout: str, broker: str) -> dict:
    """Once the rollout server has queued the next step and waits (lag 0: admission is full): its
    cursor and version, and the broker's whole state as data."""
    deadline = time.monotonic() + 300
    while True:
        status = httpx.get(f"{rollout}/v1/status", headers=HEADERS, timeout=30).json()
        if status["queued_groups"] == BATCH and status["in_flight_groups"] == 0:
            break
        assert time.monotonic() < deadline, f"the rollout server did not settle: {status}"
        time.sleep(0.2)
    lines = httpx.get(f"{broker}/v1/snapshot", headers=HEADERS, timeout=30).text.splitlines()
    header = json.loads(lines[0])
    prompts = {row["prompt_id"]: row["fields"] for row in map(json.loads, lines[1:])}
    return {
        "trained_cursor": status["trained_cursor"],
        "draw_cursor": status["draw_cursor"],
        "policy_version": status["policy_version"],
        "unacked_batches": status["unacked_batches"],
        "broker_stats": header["stats"],
        "broker_prompts": prompts,
    }


def final_params(checkpoints: Path) -> dict:
    import torch

    folder = Checkpointer(checkpoints).latest()
    assert folder is not None and read_state(folder).step == 2 * N
    states = torch.load(folder / "deepspeed" / "ds" / "mp_rank_00_model_states.pt", weights_only=False)
    return states["module"]


PHASE_SECONDS = ("wait_s", "train_s", "sync_s")  # wall-clock: the one thing a resumed run may change


# Not compared either: the batch id (it names the Redis state, new in the restarted half) and the time the
# last checkpoint took (wall clock; the resumed trainer wrote one at the stop).
IDENTITY_AND_CLOCK = (*PHASE_SECONDS, "checkpoint_s", "batch_id")


def history(path: Path) -> list[dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(line[key] >= 0 for line in lines for key in PHASE_SECONDS)
    return [{k: v for k, v in line.items() if k not in IDENTITY_AND_CLOCK} for line in lines]


@pytest.mark.timeout(1500)  # three vLLM start-ups: ~1 min on a quiet machine, far more on a loaded one
def test_resumed_run_through_restarted_services_ends_where_the_straight_run_does(model_dir, tmp_path):
    for name in ("straight", "first", "second"):
        (tmp_path / name).mkdir()
    logs = [tmp_path / f"inference-{name}.log" for name in ("straight", "first", "second")]
    with contextlib.ExitStack() as stack:
        # three engines that never served anything: started together (their start-up is the slow part)
        engines = [stack.enter_context(inference_process(model_dir, log)) for log in logs]
        verifier = stack.enter_context(running_app(create_verifier(VERIFIER)))
        wait_ready(engines, logs)
        straight_ck, resumed_ck = tmp_path / "straight" / "ck", tmp_path / "resumed-ck"

        with services(tmp_path / "straight", engines[0], verifier) as (rollout, broker):
            data = config_data(
                model_dir, straight_ck, tmp_path / "straight.jsonl", rollout, broker, engines[0]
            )
            straight_batches = train_here(data)
            straight = settled_state(rollout, broker)

        with services(tmp_path / "first", engines[1], verifier) as (rollout, broker):
            data = config_data(model_dir, resumed_ck, tmp_path / "resumed.jsonl", rollout, broker, engines[1])
            first_batches = train_here(data, stop_after=N)
        stopped = read_state(Checkpointer(resumed_ck).latest())
        assert (stopped.step, stopped.policy_version) == (N, N)
        assert stopped.cursor is not None and stopped.has_broker_snapshot
        # Two engines that never met sampled the same tokens with the same log-probs, to the bit (though
        # vLLM's engine loop may split one round's requests over its first steps differently each time).
        assert sampled(first_batches) == sampled(straight_batches[: len(first_batches)])

        with services(tmp_path / "second", engines[2], verifier) as (rollout, broker):
            # The new rollout server samples its first step under the engine's initial weights at once;
            # let it finish (queued, reported to the broker) so the resume below discards it whole:
            # the snapshot restore replaces the broker state, the cursor rewind drops the groups.
            settled_state(rollout, broker)
            data = config_data(model_dir, resumed_ck, tmp_path / "resumed.jsonl", rollout, broker, engines[2])
            train_in_fresh_process(data, tmp_path / "second")
            resumed = settled_state(rollout, broker)

    assert history(tmp_path / "resumed.jsonl") == history(tmp_path / "straight.jsonl")
    assert resumed == straight
    trained = straight["trained_cursor"]
    assert trained["epoch"] * 2 * PER_LEVEL + trained["position"] >= 2 * N * BATCH  # (batches of no signal
    # are acknowledged without a step, so 2N steps may take more than 2N batches)
    assert straight["policy_version"] == 2 * N and straight["unacked_batches"] == 0
    straight_params, resumed_params = final_params(straight_ck), final_params(resumed_ck)
    assert straight_params.keys() == resumed_params.keys()
    diff = max(
        (straight_params[k].float() - resumed_params[k].float()).abs().max().item() for k in straight_params
    )
    assert diff <= PARAM_TOLERANCE, f"resumed parameters differ from the straight run's by {diff}"
