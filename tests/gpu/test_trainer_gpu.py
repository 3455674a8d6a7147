"""The trainer on GPUs: ZeRO-3 with bf16 on CUDA, and the NCCL weight path (bucketed ZeRO-3 gathers
broadcast over NCCL to a receiving rank). Skipped without a CUDA GPU (tests/conftest.py); the two-process
NCCL test needs two GPUs. Batches come from the tiny model's own sampling with transformers on the GPU
(the CUDA vLLM build is not assumed here), log-probs from the sampler's scores.
"""

from __future__ import annotations

import math
import time

import pytest

pytestmark = pytest.mark.gpu

torch = pytest.importorskip("torch")


def sampled_batch(model_dir, groups: int = 4, group_size: int = 4, max_tokens: int = 48):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ghpo.shared.algorithm.advantages import group_advantages
    from ghpo.shared.schemas.rollout import Batch, Completion, ScoredGroup
    from ghpo.shared.scoring.answers import score
    from ghpo.shared.tasks import arith
    from ghpo.trainer.tiny.prompts import chat_messages

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).cuda().eval()
    out_groups = []
    for record in arith.make_split("train", groups, [2], seed=5)[:groups]:
        prompt = tokenizer.apply_chat_template(
            chat_messages(record), add_generation_prompt=True, tokenize=True
        )
        prompt = list(prompt["input_ids"] if hasattr(prompt, "keys") else prompt)
        ids = torch.tensor([prompt] * group_size, device="cuda")
        gen = model.generate(
            ids, do_sample=True, max_new_tokens=max_tokens, output_scores=True, return_dict_in_generate=True
        )
        completions = []
        texts = []
        for row in range(group_size):
            tokens, logps = [], []
            for t, scores in enumerate(gen.scores):
                token = int(gen.sequences[row, len(prompt) + t])
                tokens.append(token)
                logps.append(min(0.0, float(torch.log_softmax(scores[row].float(), -1)[token])))
                if token == tokenizer.eos_token_id:
                    break
            texts.append(tokenizer.decode(tokens, skip_special_tokens=True))
            completions.append((tokens, logps))
        scored = [score(text, record.answer) for text in texts]
        advantages = group_advantages([s.total for s in scored], eps=1e-4, scale=True)
        out_groups.append(
            ScoredGroup(
                group_id=f"{record.id}-gpu",
                prompt_id=record.id,
                epoch=0,
                hint_level=0,
                hint_ratio=0.0,
                prompt_token_ids=prompt,
                completions=[
                    Completion(
                        token_ids=tokens,
                        behaviour_logprobs=logps,
                        finish_reason="stop" if tokens and tokens[-1] == tokenizer.eos_token_id else "length",
                        reward=s.total,
                        accuracy=s.accuracy,
                        advantage=a,
                        policy_version=0,
                    )
                    for (tokens, logps), s, a in zip(completions, scored, advantages, strict=True)
                ],
                created_at=time.time(),
            )
        )
    return Batch(batch_id="gpu-batch", groups=out_groups, created_at=time.time())


@pytest.fixture(scope="module")
def model_dir():
    from ghpo.trainer.tiny import ensure_tiny_model

    return ensure_tiny_model()


def test_zero3_bf16_step_on_gpu_and_bucketed_gather_gives_fp32_master_weights(model_dir, tmp_path):
    from ghpo.trainer.train.config import parse_config
    from ghpo.trainer.train.engine import build_engine
    from ghpo.trainer.train.step import train_step
    from ghpo.trainer.train.weights import full_state_dict

    batch = sampled_batch(model_dir)
    config = parse_config(
        {
            "model": {"path": str(model_dir)},
            "deepspeed": {"zero_stage": 3, "precision": "bf16", "micro_batch_size": 8},
            "optim": {"lr": 1e-3, "warmup_steps": 0},
            "run": {"steps": 2, "checkpoint_dir": str(tmp_path)},
            "ghpo": {"tis_cap": 2.0},
        }
    )
    train = build_engine(config)
    result = train_step(train, batch, policy_version=1)
    assert math.isfinite(result.loss) and math.isfinite(result.grad_norm)
    tensors = full_state_dict(train, bucket_bytes=256 * 1024)
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors.values())
    assert "lm_head.weight" not in tensors  # tied: the checkpoint does not store it


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_nccl_broadcast_of_zero3_buckets_reaches_the_receiver_intact(model_dir, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    batch = sampled_batch(model_dir)
    recorded = tmp_path / "batches.jsonl"
    recorded.write_text(batch.model_dump_json() + "\n")
    root = Path(__file__).resolve().parents[2]
    worker = root / "tests" / "e2e" / "trainer_dist_worker.py"
    out = tmp_path / "result.json"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += [str(worker), str(model_dir), str(recorded), "cuda", str(out)]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["sharded"] and result["mismatched"] == 0 and 1 < result["buckets"] < result["params"]
