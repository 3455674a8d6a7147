"""Raw rows from a prompt source: a JSON Lines file, a JSON array, a Parquet file or a Hugging Face dataset.

Each reader yields `(location, row)` pairs, where location names the line (JSON Lines) or row (everything
else) for error messages and skip reports. A file that is not what its name or the requested format says
raises `SourceFormatError` once, naming the file and the line or the reason, before any row is used
partially: we never guess around a corrupt file. Hugging Face datasets come from a folder written by
`Dataset.save_to_disk`, or through `datasets.load_dataset(name)`, which takes a hub name (when the hub is
reachable) or a local folder of data files. Not here: field mapping or answer checks (loaders.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMATS = ("jsonl", "json", "parquet", "hf")
_SUFFIX_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet"}
_PARQUET_BATCH_ROWS = 1024


class SourceFormatError(ValueError):
    """A source that cannot be read as the format it claims (names the file and the line or reason)."""


@dataclass
class RawRows:
    """The rows of one source; `columns` is known up front for columnar sources, else None."""

    label: str
    rows: Iterator[tuple[str, dict[str, Any]]]
    columns: tuple[str, ...] | None = None


def detect_format(source: str | Path) -> str:
    """The format a source claims: by file suffix, `hf` for folders and anything that is not a path."""
    path = Path(source)
    fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is not None:
        return fmt
    if path.is_file():
        raise SourceFormatError(
            f"{path}: cannot tell the format from the suffix {path.suffix!r}; pass one of {', '.join(FORMATS)}"
        )
    return "hf"


def _jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise SourceFormatError(f"{path}, line {number}: not UTF-8 text, so not JSON Lines") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceFormatError(
                    f"{path}, line {number}: not a JSON value ({exc.msg} at column {exc.colno}); "
                    "a JSON Lines file has one JSON object per line"
                ) from None
            if not isinstance(row, dict):
                raise SourceFormatError(
                    f"{path}, line {number}: expected a JSON object per line, got {type(row).__name__}"
                )
            yield f"line {number}", row


def _json_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A `.json` file: a JSON array of objects, or (as `datasets` also accepts) JSON Lines."""
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
    if not head.startswith(b"["):
        yield from _jsonl_rows(path)
        return
    try:
        rows = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f", line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise SourceFormatError(f"{path}{where}: not a JSON array of objects ({exc})") from None
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise SourceFormatError(f"{path}, item {index}: expected a JSON object, got {type(row).__name__}")
        yield f"row {index}", row


def _parquet(path: Path) -> RawRows:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceFormatError(f"{path}: not a Parquet file ({exc})") from None

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        index = 0
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                index += 1
                yield f"row {index}", row

    return RawRows(str(path), rows(), tuple(parquet.schema_arrow.names))


def _single_split(loaded: Any, source: str, split: str | None) -> Any:
    """A `datasets.Dataset` out of what `load_from_disk`/`load_dataset` returned (maybe a DatasetDict)."""
    import datasets

    if not isinstance(loaded, datasets.DatasetDict):
        return loaded
    if split is None and len(loaded) == 1:
        return next(iter(loaded.values()))
    if split not in loaded:
        raise SourceFormatError(
            f"{source}: choose a split with --split; it has {', '.join(sorted(loaded))}"
            + (f" (not {split!r})" if split else "")
        )
    return loaded[split]


def _hf(source: str, split: str | None, config: str | None) -> RawRows:
    import datasets

    path = Path(source)
    if path.is_dir() and any((path / name).is_file() for name in ("dataset_info.json", "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(path))
    else:
        # The same call serves a hub name ("HuggingFaceH4/MATH-500") and a local folder of data files.
        try:
            loaded = datasets.load_dataset(source, config, split=split)
        except (
            FileNotFoundError,
            ConnectionError,
            ValueError,
            datasets.exceptions.DatasetNotFoundError,
        ) as exc:
            raise SourceFormatError(f"{source}: cannot load it as a Hugging Face dataset ({exc})") from None
    dataset = _single_split(loaded, source, split)

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        for index, row in enumerate(dataset, start=1):
            yield f"row {index}", row

    return RawRows(source, rows(), tuple(dataset.column_names))


def open_source(
    source: str | Path, fmt: str | None = None, *, split: str | None = None, config: str | None = None
) -> RawRows:
    """The rows of `source` read as `fmt` (detected from the suffix when None)."""
    fmt = fmt or detect_format(source)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "hf":
        return _hf(str(source), split, config)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if fmt == "parquet":
        return _parquet(path)
    reader = _jsonl_rows if fmt == "jsonl" else _json_rows
    return RawRows(str(path), reader(path))
