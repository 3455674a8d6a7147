"""Which prompts a run trains on and which it holds out: one spec, read the same way by every component.

A `DataSpec` names the source (the synthetic `arith` task, a built-in benchmark by name, a JSONL/JSON/
Parquet file, a saved dataset folder or a Hugging Face dataset), its split and configuration, the field
mapping overrides (`problem=question,answer=final_answer`, as `ghpo data inspect --map`), the levels to
keep, how many rows to hold out for evaluation and how many to train on. The rollout server draws its
training prompts with `training_records`, `ghpo run` evaluates on `heldout_records` and checks the spec
before anything starts: all three read the source through the same function, so they agree on every row.

The held-out rows are chosen by a hash of each record's id (the `heldout` rows with the smallest
SHA-256 of their id), not by position: the split does not depend on row order, and the training rows
never include a held-out one. `limit` then keeps the first training rows in source order.

What it deliberately does not do: shuffle (the rollout server's cursor does, per epoch) or evaluate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ghpo.shared.data.benchmarks import BENCHMARKS, load_benchmark
from ghpo.shared.data.loaders import FieldMapping, LoadReport, LoadResult, load_prompts
from ghpo.shared.data.records import PromptRecord

ARITH = "arith"


class SelectionError(ValueError):
    """The spec selects no usable rows (a level filter that keeps none, a hold-out as large as the data)."""


@dataclass(frozen=True)
class DataSpec:
    dataset: str = ARITH
    split: str | None = None
    config: str | None = None
    mapping: str = ""  # FieldMapping overrides, `field=column,...`
    levels: tuple[int, ...] = ()  # keep rows of these levels; () keeps every row
    heldout: int = 0  # rows held out for evaluation
    limit: int | None = None  # first N training rows (after the hold-out)
    arith_levels: tuple[int, ...] = (2,)
    arith_per_level: int = 2000
    seed: int = 0  # arith's generator seed

    @property
    def is_arith(self) -> bool:
        return self.dataset == ARITH

    @property
    def is_benchmark(self) -> bool:
        return self.dataset in BENCHMARKS and not Path(self.dataset).exists()


def load_source(spec: DataSpec) -> LoadResult:
    """Every row of the spec's source under its mapping (no level filter, hold-out or limit yet)."""
    if spec.is_arith:
        from ghpo.shared.tasks.arith import make_split

        records = make_split("train", spec.arith_per_level, list(spec.arith_levels), seed=spec.seed)
        return LoadResult(records, LoadReport(source=ARITH, rows=len(records), loaded=len(records)))
    if spec.is_benchmark:
        return load_benchmark(spec.dataset, overrides=spec.mapping)
    mapping = FieldMapping().with_overrides(spec.mapping)
    return load_prompts(spec.dataset, mapping, split=spec.split, config=spec.config)


def _hash_order(record: PromptRecord) -> str:
    return hashlib.sha256(record.id.encode()).hexdigest()


def split_heldout(
    records: Sequence[PromptRecord], heldout: int
) -> tuple[list[PromptRecord], list[PromptRecord]]:
    """(training rows in source order, held-out rows): the `heldout` records whose ids hash lowest."""
    if heldout <= 0:
        return list(records), []
    if heldout >= len(records):
        raise SelectionError(
            f"data.heldout = {heldout} leaves no training rows: the selection has {len(records)} rows"
        )
    held = {r.id for r in sorted(records, key=_hash_order)[:heldout]}
    return [r for r in records if r.id not in held], [r for r in records if r.id in held]


def _select(spec: DataSpec) -> tuple[list[PromptRecord], list[PromptRecord], LoadReport]:
    result = load_source(spec)
    records = result.records
    if spec.levels:
        present = sorted({r.level for r in records if r.level is not None})
        records = [r for r in records if r.level in spec.levels]
        if not records:
            raise SelectionError(
                f"data.levels = {list(spec.levels)} keeps no row of {spec.dataset} "
                f"(its levels: {present or 'none'})"
            )
    if not records:
        raise SelectionError(f"{spec.dataset}: no usable row ({result.report.summary().splitlines()[0]})")
    train, held = split_heldout(records, spec.heldout)
    if spec.limit is not None:
        train = train[: spec.limit]
    return train, held, result.report


def training_records(spec: DataSpec) -> tuple[list[PromptRecord], LoadReport]:
    """The rows the rollout server draws from, and the report of the load (what was skipped, why)."""
    train, _held, report = _select(spec)
    return train, report


def heldout_records(spec: DataSpec) -> list[PromptRecord]:
    """The rows held out of training for evaluation (empty when `spec.heldout` is 0)."""
    _train, held, _report = _select(spec)
    return held
