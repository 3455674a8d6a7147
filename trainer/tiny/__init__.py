"""The tiny world's policy model: a small Qwen2 causal LM and tokenizer built locally from a seed.

`ensure_tiny_model()` returns a cached Hugging Face folder (building it on first use) that transformers
and vLLM load like any Qwen2 checkpoint. It exists for development, CI and demos; real runs point the
same configuration at a Hugging Face model instead.
"""

from ghpo.trainer.tiny.build import TinyBuildConfig, build_tiny_model, cache_root, ensure_tiny_model
from ghpo.trainer.tiny.evaluate import evaluate_levels
from ghpo.trainer.tiny.prompts import assistant_target, chat_messages, hinted_problem

__all__ = [
    "TinyBuildConfig",
    "assistant_target",
    "build_tiny_model",
    "cache_root",
    "chat_messages",
    "ensure_tiny_model",
    "evaluate_levels",
    "hinted_problem",
]
