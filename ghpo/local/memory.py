"""How much memory training a model takes, estimated from its config: what sizes `micro_batch_size =
"auto"` and what refuses a micro-batch that cannot fit, before `ghpo run` starts anything.

The estimate, for training without gradient checkpointing (the trainer's step: the LM head's logits of the
completion positions only, their log-probs taken a chunk at a time and their gradient written into the
logits' own storage: ghpo.trainer.train.logprobs), per row of T tokens:
    logits side    T x vocab x (4 bytes in fp32, 2 in bf16/fp16)                (one logits tensor)
    layers         n_layers x (10 x hidden + 4 x intermediate) x T x 4 bytes   (activations kept for backward)
With gradient checkpointing only each layer's input is kept (n_layers x hidden x T x 4) plus one layer's
full set; bf16/fp16 halve the layer term. Fixed: 16 bytes per parameter (weights, gradients, AdamW's two
moments) and the log-prob pass's fp32 chunk temporaries (2 chunks of logprobs.CHUNK_BYTES). The layer
term was measured on SmolLM2-135M (this 2-core machine, torch 2.13, 700-token rows): 1.36 GiB per extra
row against 1.44 estimated, when the logits side was still 4 fp32 copies. A row is taken as
`services.max_model_len` tokens, the longest it can be; tests/unit/test_local_memory.py holds the whole
estimate to within 25% of a measured step on CPU.

On a CPU the memory the trainer may use is what the kernel reports available (MemAvailable) less what
the inference engine will take (its KV cache, the model's weights, 2 GiB of engine overhead) and 0.3 GiB
per verifier worker. "auto" is the most rows (at most 64, the tiny model's measured value) whose estimate
fits 70% of that; an explicit micro-batch is refused only when it cannot fit all of it.

What it deliberately does not do: measure anything at run time, or estimate GPU memory shared with the
inference engine (on a GPU the free memory at start is halved, a rough share).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

GiB = 1024**3
AUTO_MAX_ROWS = 64
AUTO_SHARE = 0.7
BYTES_PER_PARAMETER = 16
ENGINE_OVERHEAD_BYTES = 2 * GiB
VERIFIER_WORKER_BYTES = int(0.3 * GiB)
LOGPROB_CHUNK_BYTES = 64 * 1024 * 1024  # ghpo.trainer.train.logprobs.CHUNK_BYTES (no torch import here)
LOGPROB_CHUNKS = 2
_DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1}


@dataclass(frozen=True)
class TrainingMemory:
    fixed_bytes: int  # weights, gradients, optimizer state
    row_bytes: int  # activations of one row of `tokens` tokens

    def bytes_for(self, rows: int) -> int:
        return self.fixed_bytes + rows * self.row_bytes

    def rows_within(self, budget: int) -> int:
        """The most rows whose estimate fits `budget` bytes (0 when not even one does)."""
        return max(0, (budget - self.fixed_bytes) // self.row_bytes) if self.row_bytes else AUTO_MAX_ROWS


def parameter_count(model_dir: Path) -> int:
    """Parameters in a model folder's safetensors files, from their headers (nothing is loaded)."""
    total = 0
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length))
        for name, entry in header.items():
            if name != "__metadata__":
                numel = 1
                for dim in entry["shape"]:
                    numel *= dim
                total += numel
    if not total:  # weights in another format: count bytes as fp32
        total = sum(p.stat().st_size for p in Path(model_dir).glob("*.bin")) // 4
    return total


def training_memory(
    model_dir: Path, tokens: int, *, gradient_checkpointing: bool = False, precision: str = "fp32"
) -> TrainingMemory:
    """The estimate of the module docstring for the model in `model_dir` and rows of `tokens` tokens."""
    config = json.loads((Path(model_dir) / "config.json").read_text())
    config = config.get("text_config", config)  # multimodal configs nest the language model's
    hidden = int(config["hidden_size"])
    layers = int(config["num_hidden_layers"])
    inter = int(config.get("intermediate_size") or 4 * hidden)
    vocab = int(config["vocab_size"])
    per_layer = 10 * hidden + 4 * inter
    layer_values = layers * hidden + per_layer if gradient_checkpointing else layers * per_layer
    layer_bytes = layer_values * tokens * 4
    if precision in ("bf16", "fp16"):
        layer_bytes //= 2
    logits_bytes = tokens * vocab * (2 if precision in ("bf16", "fp16") else 4)
    fixed = BYTES_PER_PARAMETER * parameter_count(model_dir) + LOGPROB_CHUNKS * LOGPROB_CHUNK_BYTES
    return TrainingMemory(fixed, logits_bytes + layer_bytes)


def mem_available() -> int:
    """MemAvailable of /proc/meminfo, in bytes (0 where there is no such file)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def folder_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(model_dir).glob("*.safetensors"))


def trainer_budget(model_dir: Path, *, kv_cache_gib: int, verifier_workers: int) -> int:
    """Bytes the trainer may use on this machine while the local services run beside it."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.mem_get_info()[0] // 2
    except ImportError:
        pass
    inference = kv_cache_gib * GiB + folder_bytes(model_dir) + ENGINE_OVERHEAD_BYTES
    return max(0, mem_available() - inference - verifier_workers * VERIFIER_WORKER_BYTES)
