"""Open a source dataset (a Hub id or a local file) and pin down exactly what it is.

The dataset is opened with `datasets` (memory-mapped Arrow, so iterating stays
at constant memory whatever its size) and described for the run fingerprint:
a Hub dataset by id, config, split and resolved commit sha; a local file by
name and content hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class SourceSpec:
    """Where the rows come from. `id` is a Hub dataset id or a local file path."""

    id: str
    config: str | None = None
    split: str = "train"
    revision: str | None = None


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def open_source(spec: SourceSpec, *, required: list[str], limit: int | None = None):
    """Open `spec` and return (dataset, description).

    Raises ValueError (one line) when the source can't be read, is empty, or
    lacks one of the `required` columns.
    """
    import datasets

    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be at least 1 (got {limit})")
    path = Path(spec.id)
    looks_like_file = path.suffix.lower() in FILE_BUILDERS or spec.id.startswith((".", "/"))
    is_file = path.exists() or looks_like_file
    if is_file:
        if not path.is_file():
            raise ValueError(f"source file {spec.id} does not exist")
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(
                f"cannot read {spec.id}: unsupported file type {path.suffix!r} (use .json, .jsonl, .parquet or .csv)"
            )
    datasets.disable_progress_bars()
    try:
        if is_file:
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
            description = {"kind": "file", "id": path.name, "sha256": file_sha256(path), "format": builder}
        else:
            ds = datasets.load_dataset(spec.id, spec.config, split=spec.split, revision=spec.revision)
            description = {
                "kind": "hub",
                "id": spec.id,
                "config": spec.config,
                "split": spec.split,
                "revision": _resolve_revision(spec) or spec.revision,
            }
    except Exception as e:  # datasets raises many types for unreadable input
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "corresponds to no data" in first:  # datasets' words for an empty file
            raise ValueError(f"source {spec.id} is empty: no rows to distill") from None
        raise ValueError(f"cannot read source {spec.id}: {first}") from None
    finally:
        datasets.enable_progress_bars()

    if len(ds) == 0:
        raise ValueError(f"source {spec.id} is empty: no rows to distill")
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise ValueError(
            f"source {spec.id} is missing column(s) {', '.join(missing)}; columns found: {', '.join(ds.column_names)}"
            " (a custom dataset takes --recipe custom --prompt-column/--response-column)"
        )
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    description["rows"] = len(ds)
    description["limit"] = limit
    return ds, description


def _resolve_revision(spec: SourceSpec) -> str | None:
    """The commit sha the Hub resolves the requested revision to, when reachable."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(spec.id, revision=spec.revision).sha
    except Exception:
        return None


def write_source_parquet(ds, path: Path, batch_size: int = 10_000) -> None:
    """Write the selected rows plus `row_id` to `path`, batch by batch, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_suffix(".parquet.tmp")
    writer = None
    start = 0
    for table in ds.with_format("arrow").iter(batch_size=batch_size):
        table = table.append_column("row_id", pa.array(range(start, start + table.num_rows), pa.int64()))
        start += table.num_rows
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table)
    writer.close()
    tmp.replace(path)
