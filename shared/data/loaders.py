"""Load prompts from any source onto `PromptRecord`s through a field mapping, reporting what was skipped.

A row becomes a record when it has a problem and a gold answer that math-verify can parse; anything else
is skipped and counted by reason in a `LoadReport`, with the first few examples of each reason, so a bad
mapping or a dirty dataset is visible instead of silently shrinking the training set. A mapped column
that no row has is a mapping error, not a thousand skipped rows. Ids are `<name>-<source id>` when the
source has ids, else `<name>-<content hash>`: stable across reloads and row order, unique across sources.
Not here: reading files (sources.py) or the built-in benchmark mappings (benchmarks.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ghpo.shared.data.gold import gold_parse_error, normalize_answer
from ghpo.shared.data.records import PromptRecord, content_id
from ghpo.shared.data.sources import open_source
from ghpo.shared.scoring.boxes import last_boxed

SKIP_REASONS = (
    "missing_problem",
    "missing_answer",
    "unparsable_answer",
    "missing_solution",
    "bad_id",
    "duplicate_id",
)
EXAMPLES_PER_REASON = 3
# The wire format's prompt id (ghpo.shared.schemas.common.Id): ids that break it are skipped here.
_ID_RE = re.compile(r"^[A-Za-z0-9._:@/+-]{1,128}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
_LEVEL_RE = re.compile(r"^(?:level\s*)?(\d+)$", re.IGNORECASE)
_MAPPABLE = ("problem", "answer", "solution", "id", "level")


class MappingError(ValueError):
    """A field mapping that does not fit the source; `field` names the mapped field at fault."""

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class FieldMapping:
    """Which source column feeds each record field.

    `answer=None` takes the answer from the last `\\boxed{}` of the solution (Minerva has no answer
    column). `solution`, `id` and `level` are optional: None, or a column a row lacks, leaves the field
    empty (no hints for that prompt, a content-hash id, no level). A list cell (OlympiadBench stores
    alternative solutions as lists) contributes its first item; an answer list is joined with ", ". `meta` columns are copied into `PromptRecord.meta` as text.
    """

    problem: str = "problem"
    answer: str | None = "answer"
    solution: str | None = "solution"
    id: str | None = "id"
    level: str | None = "level"
    meta: tuple[str, ...] = ()

    def with_overrides(self, spec: str) -> FieldMapping:
        """This mapping with `field=column,...` overrides; an empty column (`solution=`) unsets an optional field."""
        changes: dict[str, Any] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            name, sep, column = (piece.strip() for piece in item.partition("="))
            if not sep:
                raise MappingError(f"mapping item {item!r} is not field=column", field=name)
            if name == "meta":
                changes["meta"] = tuple(c for c in column.split("+") if c)
            elif name in _MAPPABLE:
                if not column and name == "problem":
                    raise MappingError("problem needs a column", field="problem")
                changes[name] = column or None
            else:
                known = ", ".join((*_MAPPABLE, "meta"))
                raise MappingError(f"unknown field {name!r} (mappable: {known})", field=name)
        return replace(self, **changes)

    def columns(self) -> dict[str, str]:
        """Record field -> source column, for every field that is mapped."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "meta"}
        out.update({f"meta.{c}": c for c in self.meta})
        return {name: column for name, column in out.items() if column}


@dataclass(frozen=True)
class SkippedRow:
    location: str
    reason: str
    detail: str


@dataclass
class LoadReport:
    """What a load read, kept and skipped (counts by reason, the first few examples of each)."""

    source: str
    rows: int = 0
    loaded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[SkippedRow] = field(default_factory=list)

    def skip(self, location: str, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        if self.skipped[reason] <= EXAMPLES_PER_REASON:
            self.examples.append(SkippedRow(location, reason, detail))

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str:
        lines = [f"{self.source}: {self.rows} rows, {self.loaded} loaded, {self.n_skipped} skipped"]
        for reason, count in self.skipped.most_common():
            lines.append(f"  {reason}: {count}")
            lines.extend(f"    {e.location}: {e.detail}" for e in self.examples if e.reason == reason)
        return "\n".join(lines)


@dataclass
class LoadResult:
    records: list[PromptRecord]
    report: LoadReport


def _text(value: Any, *, join: bool = False) -> str | None:
    if isinstance(value, list | tuple):
        items = [str(v).strip() for v in value if v is not None and str(v).strip()]
        if not items:
            return None
        return ", ".join(items) if join else items[0]
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _level(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _LEVEL_RE.match(str(value).strip()) if value is not None else None
    return int(match.group(1)) if match else None


def _preview(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def check_columns(mapping: FieldMapping, columns: Iterable[str], label: str) -> None:
    """Raise MappingError for a mapped column the source lacks: a required one, or an optional one the
    caller named explicitly (a default optional column, like `solution`, may legitimately be absent)."""
    present = set(columns)
    defaults = FieldMapping()
    for record_field, column in mapping.columns().items():
        if column in present:
            continue
        optional = record_field in ("solution", "id", "level") and column == getattr(defaults, record_field)
        if not optional:
            raise MappingError(
                f"{label}: no column {column!r} (mapped to {record_field}); columns: {', '.join(sorted(present))}",
                field=record_field,
            )


def map_rows(
    rows: Iterable[tuple[str, dict[str, Any]]],
    mapping: FieldMapping,
    report: LoadReport,
    *,
    name: str,
    check_answers: bool = True,
    require_solution: bool = False,
) -> list[PromptRecord]:
    """The records of `rows` under `mapping`; every skipped row is counted in `report`."""
    records: list[PromptRecord] = []
    seen_ids: set[str] = set()
    seen_columns: set[str] = set()
    for location, row in rows:
        report.rows += 1
        seen_columns.update(row)
        problem = _text(row.get(mapping.problem))
        solution = _text(row.get(mapping.solution)) if mapping.solution else None
        if mapping.answer:
            answer = normalize_answer(row.get(mapping.answer))
        else:
            answer = normalize_answer(last_boxed(solution)) if solution else None
        if problem is None:
            report.skip(location, "missing_problem", f"no text in column {mapping.problem!r}")
            continue
        if answer is None:
            where = f"column {mapping.answer!r}" if mapping.answer else "a \\boxed{} of the solution"
            report.skip(location, "missing_answer", f"no answer in {where}")
            continue
        if require_solution and solution is None:
            report.skip(location, "missing_solution", f"no text in column {mapping.solution!r}")
            continue
        if check_answers and (why := gold_parse_error(answer)):
            report.skip(location, "unparsable_answer", f"{_preview(answer)!r}: {why}")
            continue
        raw_id = _text(row.get(mapping.id)) if mapping.id else None
        record_id = f"{name}-{raw_id if raw_id is not None else content_id(problem, answer)}"
        if not _ID_RE.match(record_id):
            report.skip(
                location, "bad_id", f"id {_preview(record_id)!r} has characters outside [A-Za-z0-9._:@/+-]"
            )
            continue
        if record_id in seen_ids:
            report.skip(location, "duplicate_id", f"id {record_id!r} already loaded")
            continue
        seen_ids.add(record_id)
        meta = {column: text for column in mapping.meta if (text := _text(row.get(column), join=True))}
        level = _level(row.get(mapping.level)) if mapping.level else None
        records.append(PromptRecord(record_id, problem, answer, solution, name, level, meta))
    report.loaded = len(records)
    if report.rows:
        check_columns(mapping, seen_columns, report.source)
    return records


def load_prompts(
    source: str | Path,
    mapping: FieldMapping | None = None,
    *,
    fmt: str | None = None,
    split: str | None = None,
    config: str | None = None,
    name: str | None = None,
    check_answers: bool = True,
    require_solution: bool = False,
) -> LoadResult:
    """Records from `source` (JSONL/JSON/Parquet file, saved dataset folder or hub name) under `mapping`.

    `name` labels the records (`PromptRecord.source`, id prefix); it defaults to the file stem.
    """
    label = name or Path(str(source).rstrip("/")).stem or "prompts"
    if not _NAME_RE.match(label):
        raise ValueError(f"name {label!r} must match [A-Za-z0-9._+-]+ (it prefixes every id)")
    raw = open_source(source, fmt, split=split, config=config)
    mapping = mapping or FieldMapping()
    if raw.columns is not None:
        check_columns(mapping, raw.columns, raw.label)
    report = LoadReport(source=raw.label)
    records = map_rows(
        raw.rows, mapping, report, name=label, check_answers=check_answers, require_solution=require_solution
    )
    return LoadResult(records, report)
