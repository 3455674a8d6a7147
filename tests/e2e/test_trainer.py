"""The trainer on CPU against real batches: the tiny model served by the real inference service (vLLM CPU
build) samples them, the verifier's scoring rewards them (ghpo.local.batches).

One inference service and one set of recorded batches per module (vLLM takes tens of seconds to start).
Every engine here is single-process DeepSpeed (gloo), fp32, one torch thread, so runs are reproducible.
"""

from __future__ import annotations

import json
import math
import threading
import time

import pytest
from prometheus_client import REGISTRY

pytest.importorskip("vllm")
pytest.importorskip("deepspeed")

import torch

from ghpo.local.batches import generate, real_batches
from ghpo.trainer.core.loss import policy_loss
from ghpo.trainer.train.batches import micro_batches, trainable
from ghpo.trainer.train.checkpoint import Checkpointer
from ghpo.trainer.train.config import parse_config
from ghpo.trainer.train.engine import build_engine, make_optimizer, make_scheduler
from ghpo.trainer.train.loop import Trainer, TrainingStopped
from ghpo.trainer.train.step import completion_logps, train_step
from ghpo.trainer.train.weights import WeightSync, full_state_dict
from tests.e2e.trainer_support import TOKEN, ListSource

pytestmark = pytest.mark.slow

# fp32, one thread, same op order: resumed and straight runs agree to the last bit in practice; the
# bound leaves room for a different reduction order after a reload, no more.
RESUME_TOLERANCE = 1e-6
# DeepSpeed vs plain torch: same maths; ZeRO reduces gradients in flattened buffers in another order.
# Loss and gradient norm agree to ~1e-6 relative. Parameters: Adam scales every update to about lr, so a
# rounding difference on a near-zero gradient coordinate moves it by a visible share of lr; observed
# 0 (stages 0-2) after 2 steps at lr 1e-3, and at stage 3 (parameters partitioned, gradients reduced in
# another order) 3e-5 on the clean-teacher tiny model's batches and the full log_softmax, 1.2e-4 on the
# noisy-teacher model's batches and the chunked log-probs (which of the two moved it is not isolated).
# Bound: 5% of lr per step, 10% at stage 3.
EQUIVALENCE_LR_SHARE = {0: 0.05, 1: 0.05, 2: 0.05, 3: 0.10}


@pytest.fixture(scope="module")
def batches(inference_url):
    recorded = real_batches(inference_url, n_batches=6, groups=8, group_size=4, max_tokens=64, token=TOKEN)
    assert sum(trainable(b) for b in recorded) >= 4, "the tiny model should give some signal"
    return recorded


@pytest.fixture(scope="module")
def straight(model_dir, batches, tmp_path_factory):
    """4 steps without a stop: what both resume tests must reproduce."""
    folder = tmp_path_factory.mktemp("straight")
    trainer = Trainer(
        build_engine(make_config(model_dir, folder, run={"steps": 4})),
        ListSource(batches),
        Checkpointer(folder),
    )
    trainer.start()
    trainer.run()
    return trainer


def make_config(model_dir, checkpoint_dir, **sections):
    data = {
        "model": {"path": str(model_dir)},
        "optim": {"lr": 1e-3, "schedule": "cosine", "warmup_steps": 1, "weight_decay": 0.01},
        "deepspeed": {"zero_stage": 0, "precision": "fp32", "micro_batch_size": 8},
        "run": {"steps": 4, "checkpoint_dir": str(checkpoint_dir), "checkpoint_every": 100, "num_threads": 1},
        "ghpo": {"tis_cap": 2.0},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return parse_config(data)


def params(train) -> dict[str, torch.Tensor]:
    return full_state_dict(train, bucket_bytes=1 << 20)


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("zero_stage", [0, 1, 2, 3])
def test_deepspeed_step_equals_plain_pytorch_on_the_same_batches(model_dir, batches, tmp_path, zero_stage):
    from transformers import AutoModelForCausalLM

    config = make_config(model_dir, tmp_path, deepspeed={"zero_stage": zero_stage, "micro_batch_size": 6})
    train = build_engine(config)
    steps = [b for b in batches if trainable(b)][:2]
    ds_results = [train_step(train, b, policy_version=i) for i, b in enumerate(steps)]
    # padded micro-batches see what inference saw: on the sampling weights, log-probs agree with vLLM's
    assert ds_results[0].mismatch_kl < 1e-4

    torch.manual_seed(config.run.seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    optimizer = make_optimizer(model, config.optim)
    scheduler = make_scheduler(optimizer, config.optim, config.run.steps)
    for version, (batch, ds) in enumerate(zip(steps, ds_results, strict=True)):
        mbs = micro_batches(batch, 6, train.pad_token_id)
        total = 0.0
        for mb in mbs:
            logps, _ = completion_logps(model, mb)
            stale = (mb.policy_versions < version).view(-1, 1)
            behaviour = torch.where(stale, mb.behaviour_logps, logps.detach())
            loss, _ = policy_loss(
                logps,
                None,
                mb.advantages,
                mb.completion_mask,
                config.ghpo,
                behaviour_logps=behaviour,
                hinted=mb.hinted,
                truncated=mb.truncated,
                num_micro_batches=len(mbs),
            )
            loss.backward()
            total += float(loss.detach())
        norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.max_grad_norm))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        assert math.isclose(ds.loss, total, rel_tol=1e-5, abs_tol=1e-7)
        assert math.isclose(ds.grad_norm, norm, rel_tol=1e-4)
    plain = {n: p.detach() for n, p in model.named_parameters()}
    assert max_diff(params(train), plain) <= EQUIVALENCE_LR_SHARE[zero_stage] * config.optim.lr * len(steps)


def test_bf16_zero2_step_trains_and_pushes_the_fp32_master_weights(model_dir, batches, tmp_path):
    config = make_config(model_dir, tmp_path, deepspeed={"zero_stage": 2, "precision": "bf16"})
    train = build_engine(config)
    result = train_step(train, next(b for b in batches if trainable(b)), policy_version=0)
    assert math.isfinite(result.loss) and math.isfinite(result.grad_norm) and result.grad_norm > 0
    pushed = params(train)
    compute = {n: p.detach() for n, p in train.module.named_parameters()}
    assert all(t.dtype == torch.float32 for t in pushed.values())
    assert all(compute[n].dtype == torch.bfloat16 for n in pushed)
    # the fp32 masters, not the bf16 compute copies cast up
    assert max(float((pushed[n] - compute[n].float()).abs().max()) for n in pushed) > 0


def test_resume_after_a_stop_gives_the_parameters_of_a_straight_run(model_dir, batches, straight, tmp_path):
    steps = straight.step

    source = ListSource(batches)
    first = Trainer(
        build_engine(make_config(model_dir, tmp_path / "b", run={"steps": steps})),
        source,
        Checkpointer(tmp_path / "b"),
    )
    first.start()
    first.run(stop_after=steps // 2)

    # a fresh engine, and a fresh source (the rollout server restarted too), resumes from `latest`
    resumed_source = ListSource(batches)
    resumed = Trainer(
        build_engine(make_config(model_dir, tmp_path / "b", run={"steps": steps})),
        resumed_source,
        Checkpointer(tmp_path / "b"),
    )
    assert resumed.start() is True
    assert resumed.step == steps // 2
    assert resumed_source.cursor_sets == [{"epoch": 0, "position": source.position}]
    resumed.run()

    assert resumed.step == steps and resumed.policy_version == straight.policy_version
    assert resumed_source.position == straight.source.position  # same cursor at the end
    assert [r.loss for r in first.history + resumed.history] == [r.loss for r in straight.history]
    diff = max_diff(params(straight.train), params(resumed.train))
    assert diff <= RESUME_TOLERANCE, f"resumed run differs from the straight run by {diff}"


def test_resume_in_a_fresh_process_gives_the_parameters_of_a_straight_run(
    model_dir, batches, straight, tmp_path
):
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    steps = straight.step
    config = make_config(model_dir, tmp_path / "b", run={"steps": steps})
    first = Trainer(build_engine(config), ListSource(batches), Checkpointer(tmp_path / "b"))
    first.start()
    first.run(stop_after=steps // 2)

    recorded = tmp_path / "batches.jsonl"
    recorded.write_text("".join(b.model_dump_json() + "\n" for b in batches))
    out = tmp_path / "resumed.safetensors"
    worker = Path(__file__).with_name("trainer_resume_worker.py")
    cmd = [sys.executable, str(worker), config.model_dump_json(), str(recorded), str(out)]
    # a process of its own: not this one's process-group rendezvous (MASTER_PORT is in use here)
    env = {
        k: v for k, v in os.environ.items() if k not in ("MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    }
    done = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2], env=env
    )
    assert done.returncode == 0, done.stderr[-4000:]
    losses = json.loads(Path(f"{out}.json").read_text())
    assert [r.loss for r in first.history] + losses == [r.loss for r in straight.history]
    diff = max_diff(params(straight.train), load_file(out))
    assert diff <= RESUME_TOLERANCE, f"resumed run differs from the straight run by {diff}"


class SlowSource(ListSource):
    """Each batch is ready `delay_s` after the trainer asks for it (generation not done yet)."""

    def __init__(self, batches, delay_s: float):
        super().__init__(batches)
        self.delay_s = delay_s

    def next_batch(self, wait_s: float):
        time.sleep(self.delay_s)
        return super().next_batch(wait_s)


class SlowPush:
    """A weight sync whose every push takes `delay_s` (a replica's upload) and serves nothing at start."""

    def __init__(self, delay_s: float):
        self.delay_s = delay_s
        self.pushed: list[int] = []

    def served_versions(self) -> dict[str, int | None]:
        return {}

    def push(self, train, version: int, *, only_behind: bool = False) -> int:
        time.sleep(self.delay_s)
        self.pushed.append(version)
        return 1


def test_each_steps_history_line_says_how_long_it_waited_trained_and_pushed(model_dir, batches, tmp_path):
    # Distinct delays, so a timing written to the wrong field (or not measured: 0) fails too.
    wait, push = 0.6, 0.25
    history = tmp_path / "steps.jsonl"
    config = make_config(model_dir, tmp_path, run={"steps": 3, "history_file": str(history)})
    sync = SlowPush(push)
    trainer = Trainer(
        build_engine(config), SlowSource(batches, wait), Checkpointer(tmp_path), weight_sync=sync
    )
    trainer.start()
    trainer.run()

    lines = [json.loads(line) for line in history.read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3]
    assert sync.pushed == [1, 2, 3]  # one push per step, inside the step's sync time
    for line in lines:
        assert line["train_s"] > 0  # a forward and backward pass took place
        assert wait <= line["wait_s"] < wait + 10, line
        assert push <= line["sync_s"] < wait, line


def test_a_step_on_samples_drawn_below_temperature_one_agrees_with_inference_on_their_log_probs(
    model_dir, inference_url, tmp_path
):
    """Samples at T = 0.6 came from softmax(logits / 0.6): the trainer must take its log-probs (and the
    inference service report its behaviour log-probs) from that distribution, not the model's own."""
    tempered = real_batches(
        inference_url, n_batches=3, groups=8, group_size=4, max_tokens=64, token=TOKEN, temperature=0.6
    )
    batch = next(b for b in tempered if trainable(b))
    result = train_step(build_engine(make_config(model_dir, tmp_path)), batch, policy_version=0)
    assert result.mismatch_kl < 1e-4


@pytest.mark.parametrize("stage", ["deepspeed", "state", "renamed"])
def test_crash_while_writing_a_checkpoint_leaves_the_previous_one_usable(model_dir, batches, tmp_path, stage):
    config = make_config(model_dir, tmp_path, run={"steps": 3, "checkpoint_every": 1, "keep_checkpoints": 1})

    def crash(name, folder):
        if name == stage and folder.name.endswith("step-000000002"):
            raise RuntimeError(f"injected crash after stage {name}")

    trainer = Trainer(
        build_engine(config), ListSource(batches), Checkpointer(tmp_path, keep=1, on_stage=crash)
    )
    trainer.start()
    with pytest.raises(RuntimeError, match="injected crash"):
        trainer.run()
    checkpointer = Checkpointer(tmp_path, keep=1)
    assert checkpointer.latest() == tmp_path / "step-000000001"
    assert (tmp_path / "step-000000002").is_dir() == (stage == "renamed")  # complete, but not `latest`

    fresh = Trainer(build_engine(config), ListSource(batches), checkpointer)
    assert fresh.start() is True and fresh.step == 1
    fresh.run()
    assert checkpointer.latest() == tmp_path / "step-000000003"
    assert not list(tmp_path.glob(".tmp-*"))
    assert [p.name for p in checkpointer.complete()] == ["step-000000003"]


def test_weight_push_after_a_step_changes_what_inference_samples(model_dir, batches, inference_url, tmp_path):
    config = make_config(model_dir, tmp_path, optim={"lr": 5e-2, "warmup_steps": 0, "schedule": "constant"})
    train = build_engine(config)
    sync = WeightSync([inference_url], token=TOKEN, bucket_bytes=256 * 1024)
    prompts = [[{"role": "user", "content": "12 + 34 * 2"}]]
    before = generate(inference_url, prompts, n=1, seed=1, max_tokens=24, temperature=0.0, token=TOKEN)
    served = sync.served_versions()[inference_url]
    for batch in [b for b in batches if trainable(b)][:2]:
        train_step(train, batch, policy_version=served)
    assert sync.push(train, served + 1) == 1
    sync.close()
    after = generate(inference_url, prompts, n=1, seed=1, max_tokens=24, temperature=0.0, token=TOKEN)
    sample = after.results[0].samples[0]
    assert sample.policy_version == served + 1
    assert sample.token_ids != before.results[0].samples[0].token_ids
    # inference now samples from the trainer's weights: its log-probs are the trainer's
    prompt = after.results[0].prompt_token_ids
    ids = torch.tensor([prompt + sample.token_ids])
    with torch.no_grad():
        logits = train.module(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    trainer_logps = (
        torch.log_softmax(logits, -1).gather(-1, torch.tensor(sample.token_ids).view(-1, 1)).view(-1)
    )
    assert torch.allclose(trainer_logps, torch.tensor(sample.logprobs), atol=1e-3)


def test_start_pushes_past_a_rollout_version_left_ahead_by_an_inference_restart(
    model_dir, inference_url, tmp_path
):
    # Redis (and so the rollout server's version, which never goes back) outlived a restart of inference:
    # the trainer must serve a version past it, or the rollout server waits for it forever.
    sync = WeightSync([inference_url], token=TOKEN)
    served = sync.served_versions()[inference_url]
    source = ListSource([])
    source.announced.append(served + 5)
    trainer = Trainer(
        build_engine(make_config(model_dir, tmp_path)), source, Checkpointer(tmp_path), weight_sync=sync
    )
    trainer.start()
    assert trainer.policy_version == served + 6
    assert sync.served_versions()[inference_url] == served + 6
    assert source.announced[-1] == served + 6
    sync.close()


def test_nccl_push_to_a_cpu_replica_is_a_counted_failure_and_the_served_version_stays(
    model_dir, inference_url, tmp_path
):
    config = make_config(model_dir, tmp_path)
    train = build_engine(config)
    sync = WeightSync([inference_url], token=TOKEN, transport="nccl")
    served = sync.served_versions()[inference_url]
    failures = REGISTRY.get_sample_value("ghpo_trainer_weight_sync_failures_total") or 0.0
    assert sync.push(train, served + 1) == 0
    assert REGISTRY.get_sample_value("ghpo_trainer_weight_sync_failures_total") == failures + 1
    assert sync.served_versions()[inference_url] == served
    sync.close()


def test_nonfinite_loss_stops_the_run_with_a_checkpoint_of_the_last_good_state(model_dir, batches, tmp_path):
    config = make_config(model_dir, tmp_path, run={"steps": 4})
    trainer = Trainer(build_engine(config), ListSource(batches), Checkpointer(tmp_path))
    trainer.start()
    after_first_step: dict[str, torch.Tensor] = {}

    def glitch(module, inputs, output):  # a numeric fault in the forward of the second step
        if trainer.step == 1:
            if not after_first_step:
                after_first_step.update(params(trainer.train))
            output.logits = output.logits * float("nan")
        return output

    handle = trainer.train.module.register_forward_hook(glitch)
    with pytest.raises(TrainingStopped, match="non-finite log-probs") as stopped:
        trainer.run()
    handle.remove()
    assert "last good state" in str(stopped.value) and "step 1" in str(stopped.value)
    assert Checkpointer(tmp_path).latest() == tmp_path / "step-000000001"
    fresh = Trainer(build_engine(config), ListSource(batches), Checkpointer(tmp_path))
    fresh.start()
    assert max_diff(params(fresh.train), after_first_step) == 0.0
    assert all(torch.isfinite(t).all() for t in after_first_step.values())


def test_consecutive_empty_batches_stop_the_run(model_dir, batches, tmp_path):
    # A recorded batch with every advantage zeroed: what a step whose groups are all right or all wrong
    # sends (whether a recorded batch happens to be one depends on the model and the machine).
    real = batches[0]
    groups = [
        g.model_copy(update={"completions": [c.model_copy(update={"advantage": 0.0}) for c in g.completions]})
        for g in real.groups
    ]
    empty = real.model_copy(update={"groups": groups})
    assert not trainable(empty)
    config = make_config(model_dir, tmp_path, run={"max_empty_batches": 3})
    source = ListSource([empty.model_copy(update={"batch_id": f"empty-{i}"}) for i in range(5)])
    trainer = Trainer(build_engine(config), source, Checkpointer(tmp_path))
    with pytest.raises(TrainingStopped, match="3 consecutive batches had nothing trainable"):
        trainer.run()
    assert trainer.step == 0 and [a[0] for a in source.acked] == ["empty-0", "empty-1", "empty-2"]


def test_a_batch_conditioned_otherwise_than_the_trainer_stops_it_untrained_and_unacked(
    model_dir, batches, tmp_path
):
    batch = next(b for b in batches if trainable(b))
    rescued = batch.groups[0].model_copy(
        update={"hint_level": 1, "hint_ratio": 0.25, "condition_on": "plain"}
    )
    plain = batch.model_copy(update={"groups": [rescued, *batch.groups[1:]]})
    source = ListSource([plain])
    trainer = Trainer(build_engine(make_config(model_dir, tmp_path)), source, Checkpointer(tmp_path))
    with pytest.raises(TrainingStopped, match=r"conditioned on plain .* ghpo\.condition_on = hinted"):
        trainer.run()
    assert trainer.step == 0 and source.acked == []


def run_two_process_worker(model_dir, batches, tmp_path, device: str) -> dict:
    """tests/e2e/trainer_dist_worker.py under torch.distributed.run with 2 processes; its JSON result."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    recorded = tmp_path / "batches.jsonl"
    recorded.write_text("".join(b.model_dump_json() + "\n" for b in batches if trainable(b)))
    out = tmp_path / "result.json"
    worker = Path(__file__).with_name("trainer_dist_worker.py")
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(worker), str(model_dir), str(recorded), device, str(out)]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(out.read_text())


def test_zero3_over_two_processes_gathers_in_buckets_and_broadcasts_them_whole(model_dir, batches, tmp_path):
    result = run_two_process_worker(model_dir, batches, tmp_path, "cpu")
    assert result["sharded"], "ZeRO-3 did not partition the parameters over the two ranks"
    assert math.isfinite(result["loss"]) and result["grad_norm"] > 0
    assert 1 < result["buckets"] < result["params"]  # gathered per bucket, not one parameter at a time
    assert result["mismatched"] == 0  # every broadcast bucket equals the receiver's own gathered copy


def test_a_stop_during_an_upstream_outage_ends_the_wait_with_a_checkpoint(model_dir, tmp_path):
    from ghpo.shared.redis_local import free_port
    from ghpo.trainer.train.source import RolloutClient

    down = RolloutClient(f"http://127.0.0.1:{free_port()}", timeout_s=1.0)  # the rollout server is down
    trainer = Trainer(build_engine(make_config(model_dir, tmp_path)), down, Checkpointer(tmp_path))
    stopper = threading.Timer(3.0, trainer.request_stop)  # what SIGTERM does in `ghpo train`
    stopper.start()
    started = time.monotonic()
    trainer.start()
    assert trainer.run() == []
    assert time.monotonic() - started < 60  # not the 600 s outage budget
    assert Checkpointer(tmp_path).latest() == tmp_path / "step-000000000"


def test_an_outage_past_its_budget_stops_the_run_with_a_checkpoint(model_dir, batches, tmp_path):
    from ghpo.shared.redis_local import free_port
    from ghpo.trainer.train.source import RolloutClient

    class GoesDown(ListSource):
        """Delivers one batch, then the rollout server is gone for good."""

        def __init__(self, batches):
            super().__init__(batches)
            self.down = RolloutClient(f"http://127.0.0.1:{free_port()}", timeout_s=1.0)

        def next_batch(self, wait_s):
            return super().next_batch(wait_s) if self.position == 0 else self.down.next_batch(wait_s)

    source = GoesDown([b for b in batches if trainable(b)])
    config = make_config(model_dir, tmp_path, services={"outage_budget_s": 3.0})
    trainer = Trainer(build_engine(config), source, Checkpointer(tmp_path))
    trainer.start()
    with pytest.raises(TrainingStopped, match=r"outage budget \(services\.outage_budget_s = 3\)"):
        trainer.run()
    assert trainer.step == 1
    assert Checkpointer(tmp_path).latest() == tmp_path / "step-000000001"
