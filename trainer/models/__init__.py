"""Pretrained models prepared locally, without a model hub: a standard Hugging Face folder per model.

Real runs point the configuration at any Hugging Face model; these exist so that development, CI and
demos also have a real pretrained policy on a machine that cannot reach the hub.
"""

from ghpo.trainer.models.smollm2 import SMOLLM2_NAME, find_smollm2_gguf, models_cache_root, prepare_smollm2

__all__ = ["SMOLLM2_NAME", "find_smollm2_gguf", "models_cache_root", "prepare_smollm2"]
