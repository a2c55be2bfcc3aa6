"""The run directory (docs/run-directory.md): its manifest, generation shards and distilled table.

    RUN_DIR/manifest.json       read_manifest, write_manifest (atomic), fingerprint
    RUN_DIR/source.parquet      written by source.write_source_parquet
    RUN_DIR/generations/*.parquet   ShardWriter (append-only, atomic), generations (the last record per row)
    RUN_DIR/distilled.parquet   write_distilled (atomic); its columns: DISTILLED_COLUMNS after the source's
    RUN_DIR/report/             written by sdft_data.diff

Reading and writing the folder only: the engine that fills it is sdft_data.run,
the checks that make the distilled table are sdft_data.check, and both import
this module (neither imports the other at import time).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from .errors import first_line

MANIFEST = "manifest.json"
SOURCE = "source.parquet"
GENERATIONS = "generations"
DISTILLED = "distilled.parquet"
REPORT = "report"
# The checked dataset's own columns, after the source's (docs/run-directory.md).
DISTILLED_COLUMNS = ("row_id", "original_response", "rewrite", "accepted", "reason")

GENERATION_SCHEMA = {
    "row_id": pl.Int64,
    "text": pl.String,
    "status": pl.String,
    "finish_reason": pl.String,
    "prompt_tokens": pl.Int64,
    "generated_tokens": pl.Int64,
    "error": pl.String,
    "attempts": pl.Int64,
    "seed": pl.Int64,
}


def fingerprint(inputs: dict) -> str:
    """The run's identity: sha256 of everything that defines it (manifest["fingerprint_inputs"])."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """The fields that differ between two records, with both values when short: by the option that sets
    them where there is one (`--limit (null there, 2 here)`), else by their dotted name (`prompts.sha256`).

    How a refused resume says what changed (a distill run, an eval run, a training run)."""
    from .spec import option_for

    out = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if x == y:
            continue
        name = f"{prefix}{k}"
        if isinstance(x, dict) and isinstance(y, dict):
            out += diff_keys(x, y, name + ".") or [name]
            continue
        shown = [json.dumps(v, ensure_ascii=False) for v in (x, y)]
        label = option_for(name) or name
        out.append(f"{label} ({shown[0]} there, {shown[1]} here)" if max(map(len, shown)) <= 40 else label)
    return out


def now() -> str:
    """UTC time for manifests, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def cache_root() -> Path:
    """The toolkit's cache (toy-world seed models, fetched model wheels): $SDFT_CACHE, else ~/.cache/sdft."""
    return Path(os.environ.get("SDFT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "sdft"))


def read_manifest(run_dir: str | Path) -> dict:
    """A run's manifest.json; ValueError (one line) when RUN_DIR is not a run."""
    run = Path(run_dir)
    path = run / "manifest.json"
    if not run.is_dir():
        raise ValueError(f"run directory {run} does not exist")
    if not path.is_file():
        raise ValueError(f"{run} is not a run directory: it has no manifest.json")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None


def write_manifest(run_dir: Path, manifest: dict) -> None:
    """Write manifest.json atomically (tmp + rename)."""
    manifest["updated_at"] = now()
    tmp = Path(run_dir) / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(Path(run_dir) / "manifest.json")


def generations(run_dir: Path) -> pl.LazyFrame:
    """The latest record of every generated row (later shards win), lazily."""
    shards = sorted((Path(run_dir) / "generations").glob("*.parquet"))
    if not shards:
        return pl.LazyFrame(schema=GENERATION_SCHEMA)
    check_shards(shards)
    # Shards concatenate in name order, so "last" is the most recent record.
    return (
        pl.concat([pl.scan_parquet(p) for p in shards], how="vertical_relaxed")
        .unique("row_id", keep="last", maintain_order=True)
        .sort("row_id")
    )


def check_shards(shards: list[Path]) -> None:
    """ValueError naming the first shard whose parquet footer cannot be read (cut short, or not parquet).

    Shards are written to a temporary name and renamed, so a damaged one comes
    from outside (a copy cut short, a disk fault). Reading the footers costs a
    small read per shard, and turns a Polars error deep inside a query into
    one line that says what to do.
    """
    import pyarrow.parquet as pq

    for shard in shards:
        try:
            pq.read_metadata(shard)
        except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
            first = first_line(e)[:200]
            raise ValueError(
                f"generations shard {shard} is damaged ({first}): move it out of {shard.parent} and run the same "
                "distill command again; its rows will be generated again"
            ) from None


class ShardWriter:
    """Buffers results and flushes them to numbered parquet shards, each atomically."""

    def __init__(self, folder: Path, flush_rows: int = 1024, flush_seconds: float = 10.0):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        existing = [int(p.stem) for p in folder.glob("*.parquet") if p.stem.isdigit()]
        self.next_seq = max(existing, default=0) + 1
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self.buffer: list[dict] = []
        self.last_flush = time.monotonic()

    def add(self, result, seed: int) -> None:
        """Buffer one backends.Result, recorded with the row's seed; flush when due."""
        self.buffer.append(
            {
                "row_id": result.row_id,
                "text": result.text,
                "status": result.status,
                "finish_reason": result.finish_reason,
                "prompt_tokens": result.prompt_tokens,
                "generated_tokens": result.generated_tokens,
                "error": result.error,
                "attempts": result.attempts,
                "seed": seed,
            }
        )
        if len(self.buffer) >= self.flush_rows or time.monotonic() - self.last_flush >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.buffer:
            return
        frame = pl.DataFrame(self.buffer, schema=GENERATION_SCHEMA)
        final = self.folder / f"{self.next_seq:06d}.parquet"
        tmp = self.folder / f".{self.next_seq:06d}.parquet.tmp"
        try:
            frame.write_parquet(tmp)
        except BaseException as e:
            tmp.unlink(missing_ok=True)  # a partial file (disk full): the buffer is still whole in memory
            if "No space left on device" in str(e) and not isinstance(e, OSError):
                # Polars words it as a ComputeError: say it as the OSError it is, with the file.
                raise OSError(errno.ENOSPC, "No space left on device", str(final)) from None
            raise
        os.replace(tmp, final)
        self.next_seq += 1
        self.buffer = []


def write_distilled(run_dir: str | os.PathLike, frame: pl.DataFrame) -> Path:
    """Write RUN_DIR/distilled.parquet atomically (tmp + rename); return its path."""
    run = Path(run_dir)
    tmp = run / f".{DISTILLED}.tmp"
    frame.write_parquet(tmp)
    os.replace(tmp, run / DISTILLED)
    return run / DISTILLED


def library_versions() -> dict:
    """Python and the libraries a run's output depends on, for the manifest."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "datasets", "huggingface-hub", "polars", "pyarrow"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out
