"""The training-memory estimate that sizes `micro_batch_size = "auto"` holds to a measured step: a full
optimizer step (forward, backward, AdamW) of a random Qwen2 on CPU, in a child process capped at 8 GiB,
peak resident memory above the RSS before the model was loaded (libraries imported), within 25% of the
estimate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ghpo.local import memory

pytestmark = pytest.mark.slow  # a child process that loads torch and trains a step (~20 s)

ROWS, TOKENS, PROMPT = 4, 512, 8
REPO = Path(__file__).resolve().parents[2]

STEP = """
import json, resource, sys
cap = 8 * 1024**3
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
import torch
torch.set_num_threads(1)

def status(field):
    return next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith(field + ":"))

from transformers import AutoModelForCausalLM
from ghpo.trainer.train.batches import MicroBatch
from ghpo.trainer.train.step import completion_logps
base = status("VmRSS")
open("/proc/self/clear_refs", "w").write("5")

folder, rows, tokens, prompt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
model.train()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
ids = torch.randint(0, model.config.vocab_size, (rows, tokens))
width = tokens - prompt
mb = MicroBatch(ids, torch.ones_like(ids), torch.arange(tokens).expand(rows, -1), prompt, ids[:, prompt:],
    torch.ones(rows, width), torch.zeros(rows, width), torch.linspace(-1, 1, rows),
    torch.zeros(rows, dtype=torch.bool), torch.zeros(rows, dtype=torch.bool),
    torch.zeros(rows, dtype=torch.long), torch.ones(rows))
logps, _ = completion_logps(model, mb)
(-(logps * mb.advantages[:, None]).mean()).backward()
optimizer.step()
print(json.dumps({"peak": status("VmHWM") - base}))
"""


def test_the_estimate_is_within_a_quarter_of_a_measured_training_step(tmp_path):
    from ghpo.trainer.tiny.random_model import build_random_qwen2
    from ghpo.trainer.train import logprobs

    assert memory.LOGPROB_CHUNK_BYTES == logprobs.CHUNK_BYTES
    folder = build_random_qwen2(
        tmp_path / "model",
        hidden_size=64,
        intermediate_size=256,
        num_layers=2,
        num_heads=1,
        num_kv_heads=1,
        max_position_embeddings=TOKENS,
        vocab_size=32_000,
    )
    done = subprocess.run(
        [sys.executable, "-c", STEP, str(folder), str(ROWS), str(TOKENS), str(PROMPT)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=True,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])["peak"]
    estimate = memory.training_memory(folder, TOKENS).bytes_for(ROWS)
    assert abs(estimate - measured) <= 0.25 * measured, (estimate, measured)
