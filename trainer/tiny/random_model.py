"""Random-weight Qwen2 checkpoints with the tiny world's tokenizer, for engine tests and benchmarks.

Generation speed, weight transfer and log-prob agreement do not depend on what a model has learned, so
these checks use a checkpoint built from a config in seconds instead of the SFT'd tiny model (minutes).
Not for anything that needs a model that can solve the task: use `ensure_tiny_model()` for that.
"""

from __future__ import annotations

import json
from pathlib import Path

CORPUS = ["What is 12 + 34? <think>12 + 34 = 46</think> <answer>\\boxed{46}</answer>"] * 50


def build_random_qwen2(
    out_dir: Path,
    *,
    hidden_size: int = 128,
    intermediate_size: int = 256,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    max_position_embeddings: int = 512,
    vocab_size: int | None = None,
    seed: int = 0,
) -> Path:
    """Save a random Qwen2 (tied embeddings) plus tokenizer to `out_dir`; vocab defaults to the
    tokenizer's size rounded up to a multiple of 64."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from ghpo.trainer.tiny.tokenizer import TOKENIZER_CLASS, train_tokenizer

    torch.manual_seed(seed)
    tokenizer = train_tokenizer(CORPUS, 300)
    config = Qwen2Config(
        vocab_size=vocab_size or -(-len(tokenizer) // 64) * 64,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    tok_config_path = Path(out_dir) / "tokenizer_config.json"
    tok_config = json.loads(tok_config_path.read_text())
    tok_config["tokenizer_class"] = TOKENIZER_CLASS
    tok_config_path.write_text(json.dumps(tok_config))
    return Path(out_dir)
