"""Import a distilled dataset made elsewhere: an original/distilled pair becomes a run directory.

    from sdft_data.importer import import_pair
    import_pair(original="alpaca_train.json", distilled="distilled_alpaca.json", recipe="alpaca",
                out="runs/alpaca-authors", model="meta-llama/Llama-2-7b-chat-hf")

The run directory has the layout of a distill run (docs/run-directory.md), so
`sdft-data check`, `diff` and `push` treat it like any run. What a pair of
files says, and what it does not:

- Each distilled row holds the row's final response. Where it differs from the
  original response, it is the maker's rewrite: it becomes the row's generation
  (status "ok") and goes through this recipe's checks like any rewrite, so a
  rewrite our checks reject falls back, with its reason.
- Where it equals the original, the files do not say whether a rewrite was made
  and rejected, or never made (or came out identical). Such a row gets status
  "absent" and reason `no_rewrite`; no rewrite text is invented.
- The seed model is what the user states with `model` (recorded as stated, not
  verified); the template, generation parameters, seed, token counts and
  timings are unknown and left out of the manifest rather than guessed.

Rows are aligned by position and verified by their instruction (and input)
when the distilled dataset has those columns; if the order differs but every
instruction pairs up one to one, rows are aligned by instruction instead. Any
other mismatch, a missing row or a row without a response is an error that
names the rows. The run is written into a staging folder and renamed into
place, so it appears whole or not at all.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from . import __version__
from .errors import first_line
from .spec import ImportSpec
from .recipes import Recipe

IMPORTED_BACKEND = "imported"
# Shown in errors: enough of a row to find it in the file.
_SHOW = 80


@dataclass
class ImportSummary:
    """What `import_pair` did."""

    run_dir: Path
    fingerprint: str
    rows: int
    differing: int  # rows whose distilled response differs from the original (the maker's rewrites)
    accepted: int  # of those, rewrites that pass this recipe's checks
    aligned_by: str
    by_reason: dict = field(default_factory=dict)
    already: bool = False

    def message(self) -> str:
        if self.already:
            return f"{self.run_dir} already holds this import (run {self.fingerprint[:12]}): nothing to do"
        return (f"imported {self.rows:,} rows into {self.run_dir} (run {self.fingerprint[:12]}, aligned by"
                f" {self.aligned_by}): {self.differing:,} rewritten in the distilled dataset, of which"
                f" {self.accepted:,} pass the recipe's checks")


def _open(spec: str, role: str, required: list[str], split: str | None):
    """(Polars frame, description) of a file or a Hub id, read by the package's one reader (diff.load_table)."""
    from .diff.stats import load_table

    try:
        return load_table(spec, required=required, split=split, describe=True)
    except ValueError as e:
        # The reader speaks of a "source"; say which side of the pair it is.
        raise ValueError(f"--{role}: {first_line(e)}") from None


def _snippet(text) -> str:
    text = " ".join(str(text).split())
    return repr(text if len(text) <= _SHOW else text[:_SHOW] + "...")


def _keys(frame: pl.DataFrame, recipe: Recipe) -> pl.Series:
    """The row's instruction (plus input), the key that pairs rows of the two datasets."""
    return frame.select(recipe.instruction_expr(frame.columns))["instruction"]


def align(original: pl.DataFrame, distilled: pl.DataFrame, recipe: Recipe) -> tuple[pl.DataFrame, str]:
    """The distilled frame in the original's row order, and how it was aligned ("position" or "instruction").

    Raises ValueError naming the rows when the two cannot be paired one to one.
    """
    n_orig, n_dist = original.height, distilled.height
    has_keys = recipe.prompt_column in distilled.columns
    if not has_keys:
        if n_orig != n_dist:
            raise ValueError(f"row counts differ: the original has {n_orig:,} rows, the distilled {n_dist:,}; without"
                             f" a {recipe.prompt_column!r} column in the distilled dataset the rows cannot be paired")
        return distilled, "position (unverified: the distilled dataset has no instruction column)"
    ko, kd = _keys(original, recipe), _keys(distilled, recipe)
    if n_orig == n_dist:
        same = ko == kd
        if bool(same.all()):
            return distilled, "position"
    # Not the same order (or not the same rows): pair by instruction where that is one to one.
    left = pl.DataFrame({"key": ko}).with_row_index("row")
    right = pl.DataFrame({"key": kd}).with_row_index("drow")
    dup_o = left.filter(pl.col("key").is_duplicated())
    dup_d = right.filter(pl.col("key").is_duplicated())
    missing = left.join(right, on="key", how="anti")
    extra = right.join(left, on="key", how="anti")
    if missing.height:
        first = missing.row(0, named=True)
        raise ValueError(f"{missing.height:,} original row(s) have no distilled row (first: row {first['row']},"
                         f" instruction {_snippet(first['key'])}): the distilled dataset must hold every original row")
    if extra.height:
        first = extra.row(0, named=True)
        raise ValueError(f"{extra.height:,} distilled row(s) match no original row (first: distilled row"
                         f" {first['drow']}, instruction {_snippet(first['key'])}): are these the same dataset?")
    if dup_o.height or dup_d.height or n_orig != n_dist:
        # Same instructions, but repeated ones: the order is the only pairing there is, and it does not hold.
        first = next(i for i, (a, b) in enumerate(zip(ko.to_list(), kd.to_list())) if a != b) if n_orig == n_dist else None
        where = (f"row {first}: original instruction {_snippet(ko[first])}, distilled {_snippet(kd[first])}"
                 if first is not None else f"the original has {n_orig:,} rows, the distilled {n_dist:,}")
        raise ValueError(f"rows are misaligned ({where}), and repeated instructions keep them from being paired"
                         " by instruction: give the distilled rows in the original's order")
    order = left.join(right, on="key", how="left").sort("row")["drow"]
    return distilled[order], "instruction"


def _describe_model(model: str | None) -> dict:
    return {"backend": IMPORTED_BACKEND, "model_id": model, "revision": None}


def import_pair(spec: ImportSpec | None = None, **settings) -> ImportSummary:
    """Make the run directory `spec.out` from an original dataset and its distilled counterpart (files or Hub ids).

    `spec` is an ImportSpec (sdft_data.spec), or its settings as keywords with the command line's names:
    import_pair(original="alpaca_train.json", distilled="distilled_alpaca.json", recipe="alpaca", out=...).
    `recipe` may then be a Recipe object (a Check of your own).
    See the module docstring. Raises ValueError with one line on bad input,
    before anything is written. Importing the same pair into the same `out`
    again is a no-op; anything else already in `out` is refused.
    """
    from .check import check_run
    from .rundir import GENERATION_SCHEMA, fingerprint, library_versions, now as utc_now, write_manifest

    from .run import recipe_object

    own_recipe = recipe_object(settings)
    if spec is None:
        spec = ImportSpec.make(**settings)
    rec = own_recipe or spec.recipe.resolve()
    original, distilled, model, note, split = spec.original, spec.distilled, spec.model, spec.note, spec.split
    out = Path(spec.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    orig_frame, orig_desc = _open(original, "original", [rec.prompt_column, rec.response_column], split)
    dist_frame, dist_desc = _open(distilled, "distilled", [rec.response_column], split)
    from .source import check_text_frame

    check_text_frame(orig_frame, rec.columns, f"--original {original}")
    check_text_frame(dist_frame, rec.columns, f"--distilled {distilled}")

    inputs = {
        "source": orig_desc,
        "distilled": dist_desc,
        "recipe": rec.describe(),
        "model": _describe_model(model),
    }
    fp = fingerprint(inputs)
    if out.is_dir() and any(out.iterdir()):
        manifest_path = out / "manifest.json"
        previous = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        if previous.get("fingerprint") == fp:
            check = previous.get("check") or {}
            imported = previous.get("imported") or {}
            return ImportSummary(out, fp, int(check.get("rows", 0)), int(imported.get("rewritten_rows", 0)),
                                 int(check.get("accepted", 0)), imported.get("aligned_by", "?"),
                                 check.get("by_reason", {}), already=True)
        raise ValueError(f"--out {out} is not empty: choose a new folder for the imported run")

    # Rows without a response are missing rows, not rows to fall back on.
    no_response = dist_frame.with_row_index("row").filter(
        pl.col(rec.response_column).cast(pl.String).fill_null("").str.strip_chars() == "")
    if no_response.height:
        raise ValueError(f"{no_response.height:,} distilled row(s) have no {rec.response_column!r} (first: distilled"
                         f" row {no_response['row'][0]}): every row needs its final response")
    dist_frame, aligned_by = align(orig_frame, dist_frame, rec)

    # The reference the model would have seen (normalised as the recipe does) against the final response.
    reference = orig_frame.select(rec.reference_expr())["reference"]
    final = dist_frame.select(pl.col(rec.response_column).cast(pl.String).str.strip_chars().alias("final"))["final"]
    rewritten = final != reference
    generations = pl.DataFrame({
        "row_id": pl.int_range(0, orig_frame.height, eager=True, dtype=pl.Int64),
        "text": pl.select(pl.when(rewritten).then(final)).to_series(),
        "status": pl.select(pl.when(rewritten).then(pl.lit("ok")).otherwise(pl.lit("absent"))).to_series(),
    }).with_columns(
        [pl.lit(None, dtype).alias(name) for name, dtype in GENERATION_SCHEMA.items()
         if name not in ("row_id", "text", "status")]
    ).select(list(GENERATION_SCHEMA)).cast(GENERATION_SCHEMA)
    n_rewritten = int(rewritten.sum())

    now = utc_now()
    manifest = {
        "sdft_version": __version__,
        "fingerprint": fp,
        "fingerprint_inputs": inputs,
        "spec": spec.to_dict(),
        "imported": {  # where from: fingerprint_inputs.source (the original) and .distilled
            "model": "as stated at import, not verified" if model else "not stated",
            "note": note,
            "aligned_by": aligned_by,
            "rewritten_rows": n_rewritten,
            "imported_at": now,
            "unknown": ["template", "generation parameters", "seed", "token counts", "timings",
                        "the rewrites of rows whose distilled response equals the original"],
        },
        "status": "imported",
        "library_versions": library_versions(),
        "created_at": now,
        "counts": {"rows": orig_frame.height, "ok": n_rewritten, "failed": 0,
                   "absent": orig_frame.height - n_rewritten, "pending": 0},
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.import-", dir=out.parent))
    try:
        orig_frame.with_columns(pl.int_range(0, orig_frame.height, dtype=pl.Int64).alias("row_id")).write_parquet(
            stage / "source.parquet")
        (stage / "generations").mkdir()
        generations.write_parquet(stage / "generations" / "000001.parquet")
        write_manifest(stage, manifest)
        checked = check_run(stage)
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.rename(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    by_reason = json.loads((out / "manifest.json").read_text())["check"]["by_reason"]
    return ImportSummary(out, fp, checked.height, n_rewritten, int(checked["accepted"].sum()), aligned_by, by_reason)

