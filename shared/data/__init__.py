"""Prompt data: records, loaders for JSONL/Parquet/Hugging Face datasets, built-in benchmark mappings.

Torch-free. math-verify (answer checks), pyarrow and `datasets` are imported only when a load needs them.
"""

from ghpo.shared.data.benchmarks import (
    BENCHMARKS,
    Benchmark,
    BenchmarkUnavailable,
    default_benchmarks_root,
    load_benchmark,
    load_hub_benchmark,
    local_benchmarks_root,
)
from ghpo.shared.data.gold import gold_parse_error, normalize_answer
from ghpo.shared.data.loaders import (
    SKIP_REASONS,
    FieldMapping,
    LoadReport,
    LoadResult,
    MappingError,
    SkippedRow,
    load_prompts,
)
from ghpo.shared.data.records import PromptRecord, content_id
from ghpo.shared.data.sources import FORMATS, SourceFormatError, open_source

__all__ = [
    "BENCHMARKS",
    "FORMATS",
    "SKIP_REASONS",
    "Benchmark",
    "BenchmarkUnavailable",
    "FieldMapping",
    "LoadReport",
    "LoadResult",
    "MappingError",
    "PromptRecord",
    "SkippedRow",
    "SourceFormatError",
    "content_id",
    "default_benchmarks_root",
    "gold_parse_error",
    "load_benchmark",
    "load_hub_benchmark",
    "load_prompts",
    "local_benchmarks_root",
    "normalize_answer",
    "open_source",
]
