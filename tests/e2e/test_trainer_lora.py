"""LoRA ([model.lora]) end to end on CPU: the tiny model, real batches sampled by the real inference service
(vLLM CPU build), DeepSpeed in one process.

Only the adapters train and are checkpointed (with their optimizer state), a resume restores them exactly,
a push sends the adapters alone and the inference service serves them merged into its pristine base
(log-probs equal to the trainer's, the behaviour-vs-trainer mismatch KL as small as with full updates),
and `ghpo export` writes the adapter as a PEFT folder and, with --merged, the merged model.
"""

from __future__ import annotations

import pytest

pytest.importorskip("vllm")
pytest.importorskip("deepspeed")
pytest.importorskip("peft")

import torch

from ghpo.local.batches import generate, real_batches
from ghpo.trainer.train.batches import trainable
from ghpo.trainer.train.checkpoint import DS_TAG, Checkpointer
from ghpo.trainer.train.engine import build_engine
from ghpo.trainer.train.loop import Trainer
from ghpo.trainer.train.step import train_step
from ghpo.trainer.train.weights import WeightSync, full_state_dict
from tests.e2e.test_trainer import make_config, max_diff
from tests.e2e.trainer_support import TOKEN, ListSource

pytestmark = pytest.mark.slow

LORA = {"rank": 4, "alpha": 8.0}
# the k3 mismatch bound the full-update tests hold (test_trainer.py)
MISMATCH_KL = 1e-4


@pytest.fixture(scope="module")
def batches(inference_url):
    recorded = real_batches(inference_url, n_batches=6, groups=8, group_size=4, max_tokens=48, token=TOKEN)
    assert sum(trainable(b) for b in recorded) >= 4, "the tiny model should give some signal"
    return recorded


def lora_config(model_dir, folder, zero_stage=0, **run):
    return make_config(
        model_dir,
        folder,
        model={"lora": LORA},
        optim={"lr": 5e-2, "warmup_steps": 0, "schedule": "constant", "weight_decay": 0.0},
        deepspeed={"zero_stage": zero_stage},
        run={"steps": 4, **run},
    )


def trainer_logps(train, prompt: list[int], completion: list[int]) -> torch.Tensor:
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = train.module(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion).view(-1, 1)).view(-1)


@pytest.mark.parametrize("zero_stage", [0, 2])
def test_lora_trains_and_checkpoints_only_the_adapters_and_a_resume_restores_them_exactly(
    model_dir, batches, tmp_path, zero_stage
):
    straight = Trainer(
        build_engine(lora_config(model_dir, tmp_path / "a", zero_stage)),
        ListSource(batches),
        Checkpointer(tmp_path / "a"),
    )
    base = {n: p.detach().clone() for n, p in straight.train.module.named_parameters() if "lora_" not in n}
    adapters_at_start = full_state_dict(straight.train, 1 << 20)
    straight.start()
    straight.run()

    module = straight.train.module
    assert {n for n, p in module.named_parameters() if p.requires_grad} == {
        n for n in dict(module.named_parameters()) if ".lora_A." in n or ".lora_B." in n
    }
    assert all(torch.equal(p, base[n]) for n, p in module.named_parameters() if n in base)  # frozen
    adapters = full_state_dict(straight.train, 1 << 20)
    assert max_diff(adapters, adapters_at_start) > 0

    first = Trainer(
        build_engine(lora_config(model_dir, tmp_path / "b", zero_stage, checkpoint_every=2)),
        ListSource(batches),
        Checkpointer(tmp_path / "b"),
    )
    first.start()
    first.run(stop_after=2)
    saved = tmp_path / "b" / "step-000000002" / "deepspeed" / DS_TAG
    states = torch.load(next(saved.glob("*model_states.pt")), map_location="cpu", weights_only=False)
    names = [name for name in states["module"] if name not in states["buffer_names"]]
    assert sum("lora_" in name for name in names) == len(adapters)
    # no base weight but the tied output head: DeepSpeed drops frozen tensors by named_parameters(), which
    # names a tied matrix once (as the embedding), so its lm_head alias stays (docs/architecture.md)
    assert {name for name in names if "lora_" not in name} <= {"base_model.model.lm_head.weight"}
    # the optimizer state: one (exp_avg, exp_avg_sq) per adapter tensor, or ZeRO's flat partition of them
    adapter_numel = sum(t.numel() for t in adapters.values())
    if zero_stage == 0:
        optim = states["optimizer"]["state"]
        assert len(optim) == len(adapters)
        assert sum(s["exp_avg"].numel() for s in optim.values()) == adapter_numel
    else:
        (optim_file,) = saved.glob("*optim_states.pt")
        flat = torch.load(optim_file, map_location="cpu", weights_only=False)["optimizer_state_dict"]
        assert sum(t.numel() for t in flat["single_partition_of_fp32_groups"]) == adapter_numel

    resumed = Trainer(
        build_engine(lora_config(model_dir, tmp_path / "b", zero_stage)),
        ListSource(batches),
        Checkpointer(tmp_path / "b"),
    )
    assert resumed.start() is True and resumed.step == 2
    assert max_diff(full_state_dict(resumed.train, 1 << 20), full_state_dict(first.train, 1 << 20)) == 0
    resumed.run()
    assert [r.loss for r in first.history + resumed.history] == [r.loss for r in straight.history]
    assert max_diff(full_state_dict(resumed.train, 1 << 20), adapters) <= 1e-6


def test_adapter_pushes_are_merged_into_the_pristine_base_and_inference_matches_the_trainer(
    model_dir, batches, inference_url, tmp_path
):
    train = build_engine(lora_config(model_dir, tmp_path))
    sync = WeightSync([inference_url], token=TOKEN, bucket_bytes=256 * 1024)
    prompts = [[{"role": "user", "content": "12 + 34 * 2"}]]
    version = sync.served_versions()[inference_url]
    steps = iter([b for b in batches if trainable(b)])
    for _ in range(2):  # two adapter versions: the second must replace the first, not add to it
        train_step(train, next(steps), policy_version=version)
        version += 1
        assert sync.push(train, version) == 1
        out = generate(inference_url, prompts, n=1, seed=1, max_tokens=24, temperature=0.0, token=TOKEN)
        sample = out.results[0].samples[0]
        assert sample.policy_version == version
        got = trainer_logps(train, out.results[0].prompt_token_ids, sample.token_ids)
        assert torch.allclose(got, torch.tensor(sample.logprobs), atol=1e-3)
    sync.close()

    # samples of the served adapter version: the trainer's log-probs are the behaviour's (mismatch KL)
    fresh = real_batches(inference_url, n_batches=2, groups=8, group_size=4, max_tokens=48, token=TOKEN)
    result = train_step(train, next(b for b in fresh if trainable(b)), policy_version=version)
    assert result.mismatch_kl < MISMATCH_KL


def test_ghpo_export_writes_the_peft_adapter_and_with_merged_the_merged_model(model_dir, batches, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ghpo.cli import main

    trainer = Trainer(
        build_engine(lora_config(model_dir, tmp_path / "ckpt", steps=2)),
        ListSource(batches),
        Checkpointer(tmp_path / "ckpt"),
    )
    trainer.start()
    trainer.run()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "trainer.toml").write_text(
        f'[model]\npath = "{model_dir}"\n\n[model.lora]\nrank = 4\nalpha = 8.0\n\n'
        f'[run]\nsteps = 2\ncheckpoint_dir = "{tmp_path / "ckpt"}"\n'
    )
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    with torch.no_grad():
        want = trainer.train.module(input_ids=ids).logits

    assert main(["export", "--run-dir", str(run_dir), "--out", str(tmp_path / "adapter")]) == 0
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in (tmp_path / "adapter").iterdir()
    }
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        loaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()(input_ids=ids).logits
    assert torch.allclose(loaded, want, atol=1e-5)

    assert main(["export", "--run-dir", str(run_dir), "--out", str(tmp_path / "merged"), "--merged"]) == 0
    assert (tmp_path / "merged" / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()
    with torch.no_grad():
        assert torch.allclose(merged(input_ids=ids).logits, want, atol=1e-4)
