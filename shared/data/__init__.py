"""Prompt data: records, loaders for JSONL/Parquet/Hugging Face datasets, built-in benchmark mappings."""

from ghpo.shared.data.records import PromptRecord

__all__ = ["PromptRecord"]
