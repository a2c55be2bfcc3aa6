"""The statistics of a diff, in Polars: per-row comparison, summaries, similarity, versions.

Rendering (report.md, plots, LaTeX tables) is in sdft_data.diff.render; the
wording statistics (markers, openings, n-grams) in sdft_data.diff.wording;
stats.json's keys are listed in sdft_data/diff/__init__.py.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import polars as pl

from ..check import PY_WHITESPACE, REASONS, build_distilled, check_frame, count_reasons
from ..recipes import Recipe
from .text import TOKENS_DESCRIPTION, tokens, tokens_expr, word_count
from .wording import wording_stats

SCHEMA_VERSION = 1
TOOLKIT_COLUMNS = ("original_response", "rewrite", "accepted", "reason")


# --------------------------------------------------------------------------
# Loading


def load_table(spec: str | os.PathLike, *, required: list[str] | tuple = (), split: str | None = None,
               describe: bool = False):
    """A dataset as a Polars frame: a .json/.jsonl/.parquet/.csv file, a Hub id (`org/name[@revision]`), or a
    folder of parquet files (a published version: its data/).

    Files and Hub ids are read by source.open_source, the one reader of datasets
    in this package (datasets' memory-mapped Arrow, the same rows distill sees).
    With `describe`, returns (frame, description): the file's name and sha256, or
    the Hub id and resolved revision.
    """
    from ..source import SourceSpec, open_source

    spec = str(spec)
    path = Path(spec)
    if path.is_dir():
        files = sorted(path.glob("data/*.parquet")) or sorted(path.glob("*.parquet"))
        if not files:
            raise ValueError(f"folder {spec} holds no parquet files (looked in data/ and the folder itself)")
        frame = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
        return (frame, {"kind": "folder", "id": path.name}) if describe else frame
    if path.exists():  # a file is one split, read whole
        source = SourceSpec(spec)
    else:
        repo, _, revision = spec.partition("@")
        source = SourceSpec(repo, split=split, revision=revision or None)
    ds, desc = open_source(source, required=list(required))
    frame = pl.from_arrow(ds.with_format("arrow")[:])
    if describe:
        return frame, {k: v for k, v in desc.items() if k not in ("format", "limit")}
    return frame


def load_distilled(spec: str | os.PathLike) -> pl.DataFrame:
    """A distilled dataset: a run directory (its distilled.parquet), a published folder, a file or a Hub id."""
    path = Path(spec)
    if (path / "manifest.json").is_file():
        if (path / "distilled.parquet").is_file():
            from ..check import verify_distilled

            return pl.read_parquet(verify_distilled(path))  # the table its manifest describes, or one clear line
        return build_distilled(path)[0]
    return load_table(spec)


# --------------------------------------------------------------------------
# Per-row diff


def is_toolkit_layout(frame: pl.DataFrame | pl.LazyFrame) -> bool:
    """Whether `frame` carries per-row verdicts (a distilled.parquet of this toolkit)."""
    names = frame.collect_schema().names()
    return all(c in names for c in TOOLKIT_COLUMNS)


def load_tokenizer(name_or_path: str):
    """The tokenizer to count tokens with (the seed model's): the package's one loader, remote code off."""
    from ..backends._http import load_tokenizer as load

    return load(name_or_path)


def _token_counter(tokenizer):
    def count(s: pl.Series) -> pl.Series:
        texts = s.to_list()
        present = [t for t in texts if t is not None]
        ids = tokenizer(present, add_special_tokens=False)["input_ids"] if present else []
        lengths = iter(len(x) for x in ids)
        return pl.Series([None if t is None else next(lengths) for t in texts], dtype=pl.Int64)

    return count


def _length_columns(units: list[str], tokenizer=None) -> list[pl.Expr]:
    """{original,rewrite,final}_{unit} (counting words costs ~1 us a row: summarize counts them on a sample)."""
    out = []
    for unit in units:
        per_side = {}
        for side in ("original", "rewrite"):
            text = pl.col(side)
            if unit == "chars":
                per_side[side] = text.str.len_chars().cast(pl.Int64)
            elif unit == "words":
                per_side[side] = word_count(text)
            else:
                per_side[side] = text.map_batches(_token_counter(tokenizer), return_dtype=pl.Int64)
        # The final response is the rewrite or the original: reuse their numbers.
        final = pl.when(_uses_rewrite()).then(per_side["rewrite"]).otherwise(per_side["original"])
        out += [per_side["original"].alias(f"original_{unit}"), per_side["rewrite"].alias(f"rewrite_{unit}"),
                final.alias(f"final_{unit}")]
    return out


def _uses_rewrite() -> pl.Expr:
    # Inferred rows satisfy this too: their rewrite is set exactly when final differs.
    return pl.col("accepted") & pl.col("rewrite").is_not_null()


def _has_rewrite() -> pl.Expr:
    return pl.col("rewrite").is_not_null() & (pl.col("rewrite") != "")


def diff_lazy(
    original: pl.DataFrame | pl.LazyFrame | None,
    distilled: pl.DataFrame | pl.LazyFrame,
    recipe: Recipe,
    tokenizer=None,
    *,
    lengths: bool = True,
) -> pl.LazyFrame:
    """The per-row diff as a LazyFrame (see `diff_frame`); `lengths=False` leaves out the length columns."""
    distilled = distilled.lazy()
    names = distilled.collect_schema().names()
    response = recipe.response_column
    if response not in names:
        raise ValueError(f"distilled dataset lacks the response column {response!r} of recipe {recipe.name}; columns: {', '.join(names)}")

    if is_toolkit_layout(distilled):
        source = distilled
        if "row_id" not in names:
            source = source.with_row_index("row_id")
        kept = [c for c in ("reference_answer", "rewrite_agrees") if c in names]
        base = source.select(
            pl.col("row_id").cast(pl.Int64),
            _instruction(recipe, names),
            pl.col("original_response").cast(pl.String).alias("original"),
            pl.col("rewrite").cast(pl.String),
            pl.col(response).cast(pl.String).alias("final"),
            "accepted",
            "reason",
            pl.lit(None, pl.String).alias("check_reason"),
            pl.lit(None, pl.Boolean).alias("instruction_matches"),
            *kept,
        )
        inferred = False
    else:
        if original is None:
            raise ValueError("distilled dataset has no accepted/reason columns: give the original dataset to compare with")
        original = original.lazy()
        onames = original.collect_schema().names()
        missing = [c for c in (recipe.prompt_column, response) if c not in onames]
        if missing:
            raise ValueError(f"original dataset lacks column(s) {', '.join(missing)} of recipe {recipe.name}; columns: {', '.join(onames)}")
        n_orig = original.select(pl.len()).collect().item()
        n_dist = distilled.select(pl.len()).collect().item()
        if n_orig != n_dist:
            raise ValueError(f"row counts differ: original has {n_orig} rows, distilled has {n_dist}; the datasets must be row-aligned")
        left = original.select(_instruction(recipe, onames), recipe.reference_expr().alias("original"))
        right_cols = [pl.col(response).cast(pl.String).fill_null("").str.strip_chars(PY_WHITESPACE).alias("final")]
        if recipe.prompt_column in names:
            right_cols.append(_instruction(recipe, names).alias("_distilled_instruction"))
        pair = pl.concat([left, distilled.select(right_cols)], how="horizontal").with_row_index("row_id")
        rewritten = pl.col("final") != pl.col("original")
        pair = pair.with_columns(
            pl.col("row_id").cast(pl.Int64),
            pl.when(rewritten).then(pl.col("final")).otherwise(pl.lit(None, pl.String)).alias("rewrite"),
            rewritten.alias("accepted"),
            pl.when(rewritten).then(pl.lit("rewritten")).otherwise(pl.lit("kept")).alias("reason"),
            (
                (pl.col("_distilled_instruction") == pl.col("instruction"))
                if recipe.prompt_column in names
                else pl.lit(None, pl.Boolean)
            ).alias("instruction_matches"),
        )
        # What the recipe's checks say of each rewrite (null for kept rows).
        checked = check_frame(pair.select(pl.col("original").alias("reference"), "rewrite"), recipe).select(
            pl.when(pl.col("rewrite").is_not_null()).then(pl.col("reason")).alias("check_reason")
        )
        base = pl.concat([pair, checked], how="horizontal").select(
            "row_id", "instruction", "original", "rewrite", "final", "accepted", "reason", "check_reason", "instruction_matches"
        )
        inferred = True

    per_row = base.with_columns(_answer_columns(recipe, base.collect_schema().names()))
    if lengths:
        units = ["chars", "words"] + (["tokens"] if tokenizer is not None else [])
        per_row = per_row.with_columns(_length_columns(units, tokenizer))
    return per_row.with_columns(pl.lit(inferred).alias("reasons_inferred"))


def _instruction(recipe: Recipe, names: list[str]) -> pl.Expr:
    if recipe.prompt_column not in names:
        return pl.lit(None, pl.String).alias("instruction")
    return recipe.instruction_expr(names)


def _answer_columns(recipe: Recipe, names: list[str]) -> list[pl.Expr]:
    """rewrite_agrees / final_agrees: the rewrite's (final's) answer equals the original's. Null where not applicable."""
    check = recipe.check  # the recipe's own answer extraction: the same code as its distillation check
    if not (check.answer and check.agrees):
        null = pl.lit(None, pl.Boolean)
        return [null.alias("rewrite_agrees"), null.alias("final_agrees")]
    if "reference_answer" in names and "rewrite_agrees" in names:
        # Kept by check_frame(keep_answers=True): no need to extract again.
        reference, rewrite_agrees = pl.col("reference_answer"), pl.col("rewrite_agrees")
    else:
        reference = check.answer(pl.col("original"))
        rewrite_agrees = check.agrees(pl.col("original"), pl.col("rewrite")).fill_null(False)
    rewrite_agrees = pl.when(pl.col("rewrite").is_not_null()).then(rewrite_agrees)
    # The original always agrees with itself when it has an answer.
    final_agrees = pl.when(_uses_rewrite()).then(rewrite_agrees).otherwise(reference.is_not_null())
    return [rewrite_agrees.alias("rewrite_agrees"), final_agrees.alias("final_agrees")]


def diff_frame(
    original: pl.DataFrame | pl.LazyFrame | None,
    distilled: pl.DataFrame | pl.LazyFrame,
    recipe: Recipe,
    tokenizer=None,
) -> pl.DataFrame:
    """One row per example: what the distillation did to it.

    `distilled` is either this toolkit's layout (original_response, rewrite,
    accepted, reason; `original` may then be None) or any dataset row-aligned
    with `original`, in which case verdicts are inferred. Columns: row_id,
    instruction, original, rewrite (null when none), final, accepted, reason,
    check_reason (inferred only: the recipe's checks on the rewrite),
    instruction_matches, rewrite_agrees, final_agrees (math and function-call
    recipes), {original,rewrite,final}_{chars,words[,tokens]}, reasons_inferred.
    """
    return diff_lazy(original, distilled, recipe, tokenizer).collect()


# --------------------------------------------------------------------------
# Similarity: ROUGE-L F1 and word-set Jaccard, on a sample
#
# ROUGE-L needs a longest common subsequence per row, which no Polars
# expression computes; even bit-parallel it is ~50 us a row in Python. A
# uniform sample of 2,000 rewrites pins the mean to about +-0.005, so the
# summary scores one (every rewrite when there are fewer) and says so in
# stats.json ("sampled", "seed"). Tokens (sdft_data.diff.text) are lowercase
# \w+ runs, close to rouge_score's default tokenizer (no stemming), except that
# each CJK character is a token of its own.


def lcs_length(a: list[str], b: list[str]) -> int:
    """Longest common subsequence length, bit-parallel (Allison-Dix / Hyyrö): one big-int step per token of `a`."""
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, tok in enumerate(b):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = v = (1 << len(b)) - 1
    for tok in a:
        m = masks.get(tok)
        if m:
            u = v & m
            v = ((v + u) | (v - u)) & full
    return len(b) - bin(v).count("1")


def rouge_l_f1(reference: str | list[str], candidate: str | list[str]) -> float:
    """ROUGE-L F1 (beta 1) of two texts, or of two token lists."""
    ref = tokens(reference) if isinstance(reference, str) else reference
    cand = tokens(candidate) if isinstance(candidate, str) else candidate
    lcs = lcs_length(ref, cand)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(cand), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def word_jaccard(a: str | list[str], b: str | list[str]) -> float:
    """|A & B| / |A | B| of the two texts' token sets (1.0 when both are empty)."""
    sa = set(tokens(a) if isinstance(a, str) else a)
    sb = set(tokens(b) if isinstance(b, str) else b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 1.0


def similarity_frame(rows: pl.DataFrame) -> pl.DataFrame:
    """rouge_l_f1 and word_jaccard of `original` vs `rewrite` for every row of `rows` (rows with a rewrite)."""
    rouge, jaccard = [], []
    # Tokenized in Polars (one regex pass over the column); only the LCS runs per row in Python.
    split = rows.select(tokens_expr(pl.col("original")).alias("a"), tokens_expr(pl.col("rewrite")).alias("b"))
    for a, b in zip(split["a"].to_list(), split["b"].to_list()):
        rouge.append(rouge_l_f1(a, b))
        jaccard.append(word_jaccard(a, b))
    return rows.with_columns(
        pl.Series("rouge_l_f1", rouge, dtype=pl.Float64), pl.Series("word_jaccard", jaccard, dtype=pl.Float64)
    )


# --------------------------------------------------------------------------
# Summary


QUANTILES = {"median": 0.5, "p10": 0.1, "p90": 0.9}


def _sorted_values(series: pl.Series):
    """The non-null values of `series` as a sorted float64 numpy array: one sort feeds the summary, the quantiles
    and the histogram of a column (quantiles one by one each cost about a sort)."""
    return series.drop_nulls().cast(pl.Float64).sort().to_numpy()


def _quantile(values, q: float) -> float | None:
    """Linear interpolation between the order statistics around q * (n - 1), as Polars' and numpy's "linear"."""
    if not len(values):
        return None
    position = q * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return float(values[low] + (values[high] - values[low]) * (position - low))


def _summary(values) -> dict:
    """{"rows", "mean", "median", "p10", "p90", "max"} of sorted values (all null but rows when there are none)."""
    rows = len(values)
    if rows == 0:
        return {"rows": 0, "mean": None, "median": None, "p10": None, "p90": None, "max": None}
    quantiles = {k: round(_quantile(values, q), 4) for k, q in QUANTILES.items()}
    return {"rows": rows, "mean": round(float(values.mean()), 4), "median": quantiles["median"],
            "p10": quantiles["p10"], "p90": quantiles["p90"], "max": round(float(values[-1]), 4)}


# Lengths this skewed (99th percentile over median) get log-spaced bins and a log axis: a linear axis
# would squeeze the body of the distribution into its first few bins.
SKEW_FOR_LOG = 8.0


def _histogram(series: dict, *, bins: int = 40, top: float | None = None, upper: float | None = None,
               log_top: float | None = None) -> dict:
    """Shared-edge histograms of several series (sorted values, `_sorted_values`); values past the last edge
    count in the last bin.

    With `upper`: `bins` equal bins on [0, upper]. With `log_top`: `bins`
    log-spaced bins on [1, log_top] (values below 1 count in the first;
    "scale" is "log"). Else integer-friendly bins up to `top` (the caller
    passes a 99th percentile, so the long tail does not squash the body).
    """
    import numpy as np

    if log_top is not None:
        edges = np.geomspace(1.0, max(log_top, 2.0), bins + 1)
    elif upper is None:
        top = max(top or 1.0, 1.0)
        step = _nice_step(top / bins)
        edges = np.arange(0, step * (np.ceil(top / step) + 1), step, dtype=float)
    else:
        edges = np.linspace(0.0, upper, bins + 1)
    out: dict = {"edges": [round(float(e), 6) for e in edges], "scale": "log" if log_top is not None else "linear"}
    for name, values in series.items():
        # np.histogram's bins, [e_i, e_i+1) and the last one closed, with values outside clipped into the first
        # and last: counted by where the inner edges fall in the sorted values.
        cuts = np.searchsorted(values, edges[1:-1], side="left")
        counts = np.diff(np.concatenate([[0], cuts, [len(values)]]))
        out[name] = [int(c) for c in counts]
    return out


def _length_histogram(series: dict, p99, top, median) -> dict:
    """Linear bins up to the 99th percentile, or log bins up to the maximum when the lengths are skewed."""
    if p99 is not None and top is not None and top >= 50 and p99 / max(median or 0, 1.0) >= SKEW_FOR_LOG:
        return _histogram(series, log_top=float(top))
    return _histogram(series, top=p99)


def _nice_step(raw: float) -> float:
    """The smallest 1, 2 or 5 x 10^k (at least 1) not below `raw`: bin widths a reader can read."""
    import math

    raw = max(raw, 1.0)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def summarize(
    per_row: pl.DataFrame | pl.LazyFrame,
    recipe: Recipe,
    *,
    tokenizer=None,
    length_sample: int | None = 20_000,
    similarity_sample: int | None = 2_000,
    wording_sample: int | None = 20_000,
    ngram_sample: int | None = 5_000,
    seed: int = 0,
    inputs: dict | None = None,
    tokenizer_name: str | None = None,
    timings: dict | None = None,
) -> dict:
    """The statistics of a per-row diff, as stats.json holds them (keys in sdft_data/diff/__init__.py).

    One pass over `per_row` (a frame from `diff_lazy`/`diff_frame`). Counts,
    characters and answer agreement cover every row; words and tokens cover a
    seeded uniform sample of `length_sample` rows, the wording statistics one
    of `wording_sample` rows (the n-grams, the costly part, `ngram_sample` of
    its rows with a rewrite), and similarity one of `similarity_sample`
    rewrites, each only when there are more rows than that (None: every row).
    stats.json records the sample sizes. `timings`, when given, receives the
    seconds of each stage: "pass" (the one pass over the rows, with whatever
    `per_row` computes lazily, such as the checks), "counts", "lengths",
    "similarity", "answers" and "wording" (benchmarks/bench_check_diff.py
    reports them).
    """
    clock = [time.perf_counter()]

    def stage(name: str) -> None:
        now = time.perf_counter()
        if timings is not None:
            timings[name] = round(now - clock[0], 4)
        clock[0] = now

    lf = per_row.lazy()
    # count() of row_id (never null): Polars turns len() into "keep any one
    # column", and that column may be the costly check.
    rows = lf.select(pl.col("row_id").count()).collect().item()
    if rows == 0:
        raise ValueError("nothing to diff: the datasets have no rows")
    # A stable pseudo-random number per row picks the samples inside the one
    # pass, so the texts never need to sit in memory all at once: the pass keeps
    # the texts of the rows that some sample may use (the largest share), and
    # each statistic then reads its own sample from those.
    u = (pl.col("row_id").hash(seed) % 1_000_003).cast(pl.Float64) / 1_000_003
    length_share = 1.0 if length_sample is None or rows <= length_sample else length_sample / rows
    # Over-draw tenfold: only rows with a rewrite count, and their share is not known before the pass.
    sim_share = 1.0 if similarity_sample is None else min(1.0, 10 * similarity_sample / rows)
    sampled_wording = wording_sample is not None and rows > wording_sample
    wording_share = wording_sample / rows if sampled_wording else 1.0
    in_sample = u < max(length_share, sim_share, wording_share)
    units = ["chars", "words"] + (["tokens"] if tokenizer is not None else [])
    m = lf.select(
        "row_id", "accepted", "reason", "check_reason", "instruction_matches", "reasons_inferred",
        "rewrite_agrees", "final_agrees",
        (pl.col("accepted") & (pl.col("rewrite") == pl.col("original"))).alias("identical"),
        _has_rewrite().alias("has_rewrite"),
        u.alias("u"),
        *_length_columns(["chars"]),
        in_sample.alias("in_sample"),
        *[pl.when(in_sample).then(pl.col(c)).alias(f"text_{c}") for c in ("original", "rewrite")],
    ).collect(engine="streaming")
    stage("pass")
    # The final text is the rewrite or the original, as for the lengths: not carried through the pass, where a
    # computed column's few kept rows would hold on to the buffers of all its texts (+40% peak memory).
    sample = m.filter("in_sample").select(
        "row_id", "reason", "accepted", "has_rewrite", "u",
        *[pl.col(f"text_{c}").alias(c) for c in ("original", "rewrite")],
    ).with_columns(pl.when(_uses_rewrite()).then(pl.col("rewrite")).otherwise(pl.col("original")).alias("final"))
    # The sample's texts are views into the buffers of every row's texts, scattered over the whole
    # dataset's memory; one contiguous copy (a few MB, ~10 ms for 20,000 rows) makes the regexes the
    # sample statistics run over them faster (on 1M GSM8K rows: marker rates 0.057 -> 0.032 s,
    # openings and n-grams under 10%).
    sample = pl.from_arrow(sample.to_arrow(compat_level=pl.CompatLevel.oldest()))
    m = m.drop("text_original", "text_rewrite")
    accepted = int(m["accepted"].sum())
    inferred = bool(m["reasons_inferred"][0])

    stats: dict = {
        "schema": SCHEMA_VERSION,
        "inputs": inputs or {},
        "recipe": {"name": recipe.name, "version": recipe.version, "check": recipe.check.name,
                   "check_description": recipe.check.description},
        "tokenizer": tokenizer_name,
        "rows": rows,
        "accepted": accepted,
        "fallback": rows - accepted,
        "rewrite_rate": round(accepted / rows, 6),
        "identical_rewrites": int(m["identical"].fill_null(False).sum()),
        "reasons_inferred": inferred,
        "by_reason": count_reasons(m["reason"]),
        "recheck": None,
        "alignment": {"instruction_mismatches": None},
    }
    if inferred:
        rechecked = m["check_reason"].drop_nulls()
        passed = int((rechecked == "accepted").sum())
        stats["recheck"] = {
            "rows": rechecked.len(),
            "passed": passed,
            "pass_rate": round(passed / rechecked.len(), 6) if rechecked.len() else None,
            "by_reason": count_reasons(rechecked),
        }
    matches = m["instruction_matches"].drop_nulls()
    if matches.len():
        stats["alignment"]["instruction_mismatches"] = int((~matches).sum())

    stage("counts")

    stats["length"] = {}
    sides = ("original", "rewrite", "final")
    # Characters over every row (from the pass); words and tokens over the length sample.
    # Lazy: the final side reuses the other two's counts only where Polars eliminates common subexpressions.
    counted = sample.lazy().filter(pl.col("u") < length_share).select(*_length_columns(units[1:], tokenizer)).collect()
    for unit in units:
        frame = m if unit == "chars" else counted
        values = {side: _sorted_values(frame[f"{side}_{unit}"]) for side in sides}
        summaries = {side: _summary(v) for side, v in values.items()}
        p99 = max((q for q in (_quantile(v, 0.99) for v in values.values()) if q is not None), default=None)
        top = max((float(v[-1]) for v in values.values() if len(v)), default=None)
        sampled = unit != "chars" and length_share < 1.0
        stats["length"][unit] = {
            **summaries,
            "sampled_rows": summaries["original"]["rows"] if sampled else None,
            "histogram": _length_histogram(values, p99, top, min(s["median"] or 0 for s in summaries.values())),
        }

    stage("lengths")

    stats["similarity"] = None
    pool = sample.filter(pl.col("has_rewrite") & (pl.col("u") < sim_share)).sort("u")
    if similarity_sample is not None:
        pool = pool.head(similarity_sample)
    if pool.height:
        sim = similarity_frame(pool.select("row_id", "reason", "original", "rewrite"))
        with_rewrite = int(m["has_rewrite"].sum())
        by_reason = (
            sim.group_by("reason").agg(pl.len().alias("rows"), pl.col("rouge_l_f1").mean().round(4))
            .sort("rows", "reason", descending=[True, False])
        )
        stats["similarity"] = {
            "rows": with_rewrite,
            "sampled": sim.height,
            "seed": seed,
            "tokens": TOKENS_DESCRIPTION,
            **{
                key: {**_summary(values), "histogram": _histogram({"rewrite": values}, upper=1.0, bins=20)}
                for key, values in ((k, _sorted_values(sim[k])) for k in ("rouge_l_f1", "word_jaccard"))
            },
            "by_reason": {r: {"rows": n, "rouge_l_f1": v} for r, n, v in by_reason.iter_rows()},
        }

    stage("similarity")

    stats["answer_agreement"] = None
    if recipe.check.answer and recipe.check.agrees:
        def agreement(col: str) -> dict:
            s = m[col].drop_nulls()
            agree = int(s.sum())
            return {"rows": s.len(), "agree": agree, "rate": round(agree / s.len(), 6) if s.len() else None}

        stats["answer_agreement"] = {
            "kind": {"math": "last_integer"}.get(recipe.check.name, recipe.check.name),
            "rewrite": agreement("rewrite_agrees"),
            "final": agreement("final_agrees"),
        }
    stage("answers")
    wording = sample.filter(pl.col("u") < wording_share).select("row_id", "original", "rewrite", "final")
    stats["wording"] = {"sampled_rows": wording.height if sampled_wording else None,
                        **wording_stats(wording, ngram_sample=ngram_sample, seed=seed)}
    stage("wording")
    stats["against"] = None
    return stats


def pick_examples(per_row: pl.DataFrame | pl.LazyFrame, *, per_reason: int = 3, seed: int = 0) -> pl.DataFrame:
    """Up to `per_reason` seeded random rows for each reason (and, when inferred, each recheck reason)."""
    lf = per_row.lazy()
    group = (
        pl.when(pl.col("check_reason").is_not_null() & (pl.col("check_reason") != "accepted"))
        .then(pl.col("reason") + " (check: " + pl.col("check_reason") + ")")
        .otherwise(pl.col("reason"))
    )
    keys = lf.select("row_id", group.alias("group")).collect()
    chosen: list[int] = []
    for (name,), g in keys.group_by("group", maintain_order=True):
        ids = g["row_id"].sort().to_list()
        # One generator per group: a group's examples do not depend on the others.
        chosen += random.Random(f"{seed}:{name}").sample(ids, per_reason) if len(ids) > per_reason else ids
    order = {r: i for i, r in enumerate(REASONS)}
    return (
        lf.filter(pl.col("row_id").is_in(chosen))
        .with_columns(group.alias("group"))
        .select("group", "row_id", "reason", "check_reason", "instruction", "original", "rewrite", "final")
        .collect()
        .with_columns(
            pl.col("reason").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_order")
        )
        .sort("_order", "group", "row_id")
        .drop("_order")
    )


# --------------------------------------------------------------------------
# Versions


def compare_versions(
    before: pl.DataFrame | pl.LazyFrame,
    after: pl.DataFrame | pl.LazyFrame,
    *,
    response_column: str | None = None,
) -> pl.DataFrame:
    """What changed between two versions of a distilled dataset, one row per example.

    Takes per-row diff frames (column `final`) or distilled datasets (give
    `response_column`). Aligned by `row_id` when both have it, else by
    position. Columns: row_id, final_before, final_after, accepted_before,
    accepted_after, reason_before, reason_after, in_before, in_after, changed.
    """

    def normalise(frame, side: str) -> pl.LazyFrame:
        lf = frame.lazy()
        names = lf.collect_schema().names()
        col = "final" if "final" in names else response_column
        if col is None or col not in names:
            raise ValueError(f"the {side} version has no 'final' column; pass the response column to compare")
        if "accepted" in names:
            accepted = pl.col("accepted")
        elif "original_response" in names:
            accepted = pl.col(col) != pl.col("original_response")
        else:
            accepted = pl.lit(None, pl.Boolean)
        reason = pl.col("reason") if "reason" in names else pl.lit(None, pl.String)
        if "row_id" not in names:
            lf = lf.with_row_index("row_id")
        return lf.select(
            pl.col("row_id").cast(pl.Int64),
            pl.col(col).cast(pl.String).alias(f"final_{side}"),
            accepted.alias(f"accepted_{side}"),
            reason.cast(pl.String).alias(f"reason_{side}"),
            pl.lit(True).alias(f"in_{side}"),
        )

    b, a = normalise(before, "before"), normalise(after, "after")
    both_have_ids = all("row_id" in f.lazy().collect_schema().names() for f in (before, after))
    if not both_have_ids:
        nb, na = (f.select(pl.len()).collect().item() for f in (b, a))
        if nb != na:
            raise ValueError(f"row counts differ: the versions have {nb} and {na} rows and no row_id to align them")
    joined = b.join(a, on="row_id", how="full", coalesce=True).sort("row_id")
    return joined.with_columns(
        pl.col("in_before").fill_null(False),
        pl.col("in_after").fill_null(False),
        (pl.col("final_before").ne_missing(pl.col("final_after"))).alias("changed"),
    ).collect()


def summarize_versions(changes: pl.DataFrame, *, before: str = "", after: str = "") -> dict:
    """Counts of a version comparison: rows, changed finals, acceptance and reasons before/after, transitions."""
    both = changes.filter(pl.col("in_before") & pl.col("in_after"))
    acc_b = changes["accepted_before"].drop_nulls()
    acc_a = changes["accepted_after"].drop_nulls()
    rb = count_reasons(changes["reason_before"].drop_nulls())
    ra = count_reasons(changes["reason_after"].drop_nulls())
    reasons = list(dict.fromkeys([*ra, *rb]))
    transitions = (
        both.filter(pl.col("reason_before").ne_missing(pl.col("reason_after")))
        .group_by("reason_before", "reason_after")
        .len()
        .sort("len", "reason_before", "reason_after", descending=[True, False, False])
    )
    changed = int(both["changed"].sum())
    return {
        "before": before,
        "after": after,
        "rows_compared": both.height,
        "only_before": int((changes["in_before"] & ~changes["in_after"]).sum()),
        "only_after": int((changes["in_after"] & ~changes["in_before"]).sum()),
        "changed": changed,
        "changed_rate": round(changed / both.height, 6) if both.height else None,
        "accepted_before": int(acc_b.sum()) if acc_b.len() else None,
        "accepted_after": int(acc_a.sum()) if acc_a.len() else None,
        "by_reason": {r: {"before": rb.get(r, 0), "after": ra.get(r, 0), "delta": ra.get(r, 0) - rb.get(r, 0)} for r in reasons},
        "transitions": [{"before": x, "after": y, "rows": int(n)} for x, y, n in transitions.iter_rows()],
    }


# --------------------------------------------------------------------------
# The gap: the seed model's log-likelihood of originals and rewrites (sdft_data.gap)


def gap_stats(distilled: pl.DataFrame, manifest: dict | None = None) -> dict | None:
    """stats.json's `gap`: the seed model's mean log-likelihood per token of each row's original and
    rewrite, from the gap_* columns (`sdft-data gap`, or distill on the local backend); None without them."""
    from ..gap import summarize

    if "accepted" not in distilled.columns:
        return None
    return summarize(distilled, (manifest or {}).get("gap"))
