"""Open a source dataset (a Hub id or a local file) and pin down exactly what it is.

The dataset is opened with `datasets` (memory-mapped Arrow, so iterating stays
at constant memory whatever its size) and described for the run fingerprint:
a Hub dataset by id, config, split and resolved commit sha; a local file by
name and content hash.

A local file that cannot be read gets one line naming the file and the cause
(the line of a broken JSON or CSV file, a 0-byte file, a folder): `datasets`
says only that its builder failed, with the cause in a log line.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from .errors import first_line

FILE_BUILDERS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class SourceSpec:
    """Where the rows come from. `id` is a Hub dataset id or a local file path."""

    id: str
    config: str | None = None
    split: str | None = None  # None: "train" for a Hub dataset; a local file is one split and takes none
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
    path = Path(spec.id).expanduser()
    looks_like_file = path.suffix.lower() in FILE_BUILDERS or spec.id.startswith((".", "/", "~"))
    is_file = path.exists() or looks_like_file
    if is_file:
        check_local_file(path, f"source {spec.id}")
        builder = FILE_BUILDERS[path.suffix.lower()]
        # A file is one table: options that pick a part of a Hub dataset would be ignored, and not recorded.
        given = [f"--{k}" for k, v in (("split", spec.split), ("config", spec.config), ("revision", spec.revision)) if v]
        if given:
            raise ValueError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for Hub datasets: "
                             f"the local file {spec.id} is read whole; leave {' and '.join(given)} out")
    if is_file:
        ds = read_local_file(path, f"source {spec.id}")
        description = {"kind": "file", "id": path.name, "sha256": file_sha256(path), "format": builder}
    else:
        split = spec.split or "train"
        with quiet_datasets():
            try:
                ds = datasets.load_dataset(spec.id, spec.config, split=split, revision=spec.revision)
            except Exception as e:  # datasets raises many types for unreadable input
                first = first_line(e)
                if "corresponds to no data" in first:  # datasets' words for an empty file
                    raise ValueError(f"source {spec.id} is empty: no rows to distill") from None
                raise ValueError(f"cannot read source {spec.id}: {first}") from None
        description = {
            "kind": "hub",
            "id": spec.id,
            "config": spec.config,
            "split": split,
            "revision": _resolve_revision(spec) or spec.revision,
        }

    if len(ds) == 0:
        raise ValueError(f"source {spec.id} is empty: no rows to distill")
    # Bytes that are not UTF-8 anywhere, and a required column that is not text, are one line here,
    # not a crash in a reader further on (Polars panics on such bytes).
    check_text_columns(ds, required, f"source {spec.id}")
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


class quiet_datasets:
    """No progress bars, and no ERROR log lines: datasets logs a builder's failure
    before raising it, and the one line we raise says it already."""

    def __enter__(self):
        import datasets

        self.bars = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()
        self.logger = logging.getLogger("datasets")
        self.level = self.logger.level
        self.logger.setLevel(logging.CRITICAL)

    def __exit__(self, *exc):
        import datasets

        self.logger.setLevel(self.level)
        if self.bars:  # as it was: a caller may have turned them off (--quiet)
            datasets.enable_progress_bars()


def read_local_file(path: str | Path, name: str | None = None):
    """A .json/.jsonl/.parquet/.csv file as a datasets.Dataset; ValueError (one line) naming the file and the cause.

    The one reader of local data files (sources, training files), so each gets
    the same clear refusals: missing, a folder, 0 bytes, broken JSON or CSV
    (with the line), no rows.
    """
    import datasets

    path = Path(path).expanduser()
    name = name or str(path)
    check_local_file(path, name)
    builder = FILE_BUILDERS[path.suffix.lower()]
    with quiet_datasets():
        try:
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
        except Exception as e:  # datasets raises many types for unreadable input
            first = first_line(e)
            # datasets' own message rarely says what is wrong with the file: find it.
            why = diagnose_file(path, builder)
            if why is None and "corresponds to no data" in first:
                why = "it holds no rows"
            raise ValueError(f"cannot read {name}: {why or first}") from None
    if len(ds) == 0:
        raise ValueError(f"{name} holds no rows")
    return ds


def _json_kind(text: str | None) -> str:
    """What one JSON-encoded value is, in words (datasets stores a column of mixed types as JSON text)."""
    if text is None:
        return "null"
    head = text.lstrip()[:1]
    return {'"': "text", "[": "a list", "{": "an object", "t": "a boolean", "f": "a boolean",
            "n": "null"}.get(head, "a number")


def check_text_columns(ds, columns, name: str) -> None:
    """ValueError (one line, naming the column and a row) unless every one of `columns` holds text.

    Numbers and booleans pass (they are read as their text); a column whose rows mix
    types (text in one, a number in another: datasets then keeps JSON), lists,
    objects and bytes are refused, and so is text that is not UTF-8 in any string
    column (it would crash the readers further on). `ds` is a datasets.Dataset.
    """
    import pyarrow as pa
    import pyarrow.types as pat

    table = ds.data.table
    wanted = [c for c in dict.fromkeys(columns) if c and c in table.column_names]
    for column in table.column_names:
        chunks = table.column(column).chunks
        kind = table.schema.field(column).type
        if isinstance(kind, pa.BaseExtensionType) and column in wanted:
            # datasets' Json feature: the rows hold different JSON types. Find the first that differs.
            first, start = None, 0
            for chunk in chunks:
                for i, value in enumerate(chunk.storage.to_pylist()):
                    what = _json_kind(value)
                    if what == "null":
                        continue
                    if first is None:
                        first = (start + i, what)
                    elif what != first[1]:
                        raise ValueError(
                            f"{name}: column {column!r} mixes types (row {first[0] + 1} is {first[1]}, row "
                            f"{start + i + 1} {what}): every value of a text column must be text")
                start += len(chunk)
            raise ValueError(f"{name}: column {column!r} holds {first[1] if first else 'JSON'}, not text")
        if pat.is_string(kind) or pat.is_large_string(kind):
            start = 0
            for chunk in chunks:
                try:
                    chunk.validate(full=True)
                except pa.ArrowInvalid as e:
                    import re

                    at = re.search(r"string index (\d+)", str(e))
                    row = f" in row {start + int(at.group(1)) + 1}" if at else ""
                    raise ValueError(f"{name}: column {column!r} is not UTF-8 text{row}: save the file as UTF-8 "
                                     "(e.g. iconv -f latin1 -t utf-8)") from None
                start += len(chunk)
            continue
        if column not in wanted:
            continue
        if pat.is_integer(kind) or pat.is_floating(kind) or pat.is_boolean(kind) or pat.is_null(kind) \
                or pat.is_decimal(kind):
            continue
        if pat.is_list(kind) or pat.is_large_list(kind) or pat.is_fixed_size_list(kind):
            what = "lists"
        elif pat.is_struct(kind) or pat.is_map(kind):
            what = "objects"
        elif pat.is_binary(kind) or pat.is_large_binary(kind):
            what = "bytes"
        else:
            what = f"values of type {kind}"
        raise ValueError(f"{name}: column {column!r} holds {what} ({kind}), not text: the recipe reads it as text; "
                         "flatten it to a string column first")


def check_text_frame(frame, columns, name: str) -> None:
    """check_text_columns for a Polars frame already read: ValueError unless each of `columns` present holds text."""
    import polars as pl

    for column in dict.fromkeys(columns):
        if not column or column not in frame.columns:
            continue
        dtype = frame.schema[column]
        if dtype == pl.String or dtype.is_numeric() or dtype in (pl.Boolean, pl.Null):
            continue
        if isinstance(dtype, (pl.List, pl.Array)):
            what = "lists"
        elif isinstance(dtype, pl.Struct):
            what = "objects"
        elif dtype == pl.Binary:
            what = "bytes"
        elif str(dtype).startswith("Extension"):  # datasets' Json: the rows mix types
            raise ValueError(f"{name}: column {column!r} mixes types (text in some rows, other JSON values in "
                             "others): every value of a text column must be text")
        else:
            what = f"values of type {dtype}"
        raise ValueError(f"{name}: column {column!r} holds {what}, not text: the recipe reads it as text; "
                         "flatten it to a string column first")


def check_local_file(path: Path, name: str | None = None) -> None:
    """ValueError (one line) unless `path` is a non-empty file of a readable type. `name`: how to call it."""
    name = name or str(path)
    if path.is_dir():
        raise ValueError(f"{name} is a folder, not a file: give one .json, .jsonl, .parquet or .csv file")
    if not path.exists():
        raise ValueError(f"{name} does not exist")
    if not path.is_file():
        raise ValueError(f"{name} is not a regular file")
    if path.suffix.lower() not in FILE_BUILDERS:
        raise ValueError(
            f"cannot read {name}: unsupported file type {path.suffix!r} (use .json, .jsonl, .parquet or .csv)"
        )
    try:
        size = path.stat().st_size
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ValueError(f"cannot open {name}: {e.strerror or e}") from None
    if size == 0:
        raise ValueError(f"{name} is empty (0 bytes): no rows")


def diagnose_file(path: Path, builder: str) -> str | None:
    """What is wrong with a local file that `datasets` could not read, in words; None if not found."""
    try:
        if builder == "json":
            return _diagnose_json(path)
        if builder == "csv":
            return _diagnose_csv(path)
        if builder == "parquet":
            import pyarrow.parquet as pq

            pq.read_metadata(path)
    except UnicodeDecodeError as e:
        return f"not UTF-8 text (byte {e.start}: {e.reason})"
    except Exception as e:  # noqa: BLE001 - only looking for words to show
        return f"not a valid {builder} file ({first_line(e)[:200]})"
    return None


def _diagnose_json(path: Path) -> str | None:
    with open(path, encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    if not head:
        return "the file holds only whitespace: no rows to distill"
    if head[0] in "[{" and path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            if head[0] == "{" and e.msg == "Extra data":
                data = None  # JSON lines in a .json file: check them line by line below
            else:
                return f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        if isinstance(data, list):
            bad = next((i for i, row in enumerate(data) if not isinstance(row, dict)), None)
            if bad is not None:
                return f"row {bad + 1} is a JSON {type(data[bad]).__name__}, not an object: rows must be objects"
            return "the rows do not share one set of columns and types" if data else "the list is empty: no rows"
        if isinstance(data, dict):
            return "a JSON object, not a list of rows: give [{...}, {...}] or one object per line (JSON lines)"
        if data is not None:
            return f"a JSON {type(data).__name__}, not a list of rows"
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                return f"invalid JSON on line {n}, column {e.colno}: {e.msg}"
            if not isinstance(row, dict):
                return f"line {n} is a JSON {type(row).__name__}, not an object: each line must be one row"
    return None


def _diagnose_csv(path: Path) -> str | None:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            return "no header line: the first line must name the columns"
        for row in reader:
            if row and len(row) != len(header):
                return (f"line {reader.line_num} has {len(row)} fields, the header has {len(header)} "
                        "(an unquoted comma or quote?)")
    return None


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
