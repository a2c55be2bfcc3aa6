"""Diff a distilled dataset against its original: what the model kept, rewrote, why, and how its wording changed.

Works on a run directory (its distilled.parquet) or on any two row-aligned
datasets (files or Hub ids), such as the authors' distilled_alpaca.json against
alpaca_train.json. Datasets without per-row verdicts get inferred ones: a row
whose final response differs from the original was "rewritten", else "kept";
the recipe's checks are then re-run on the rewrites (`recheck`).

The library functions return Polars frames and plain dicts, so a notebook gets
the numbers the CLI prints:

    per_row = diff_frame(original, distilled, recipe)     # one row per example
    stats = summarize(per_row, recipe)                    # what stats.json holds
    write_report(stats, pick_examples(per_row), out_dir)  # stats.json, report.md, plots, tables/
    diff_files(...), diff_run(...)                        # all three, as the CLI runs them

The package: `stats` (the per-row diff and the statistics, in Polars),
`wording` (marker phrases, opening phrases, n-gram shifts), `render` (the
terminal table, report.md from the Jinja template report.md.j2, plots as PNG
and PDF, the main tables as LaTeX). The report folder, for a paper appendix:

    stats.json        everything below, machine-readable
    report.md         summary, outcome, wording, length, similarity, answers, examples
    *.png, *.pdf      reasons, lengths (log axes when skewed), similarity, markers
    tables/*.tex      outcome, lengths, markers, openings, ngrams (booktabs)

Counts, characters and answer agreement cover every row. Words, tokens and
the wording statistics are counted on a seeded uniform sample of 20,000 rows
(the n-gram shifts on 5,000 of its rewrites), and ROUGE-L on one of 2,000
rewrites, when there are more (the sample sizes are in stats.json and the
report). Words and tokens are split by script (sdft_data.diff.text): each CJK
character counts as a word.

stats.json (schema 1; the dataset card reads it, so keys only get added):

    schema               1
    inputs               {"original", "distilled"} file names or Hub ids; for a run {"run" (fingerprint
                         prefix), "source", "model", "checks" (the rule set: "paper", "default" or "strict")}
    recipe               {"name", "version", "check"}
    tokenizer            name or null
    rows                 rows compared
    accepted             rows whose final response is the model's rewrite
    fallback             rows that kept the original response
    rewrite_rate         accepted / rows
    identical_rewrites   accepted rows whose rewrite equals the original verbatim
    reasons_inferred     true when the inputs had no verdicts (reasons are "rewritten"/"kept")
    by_reason            {reason: rows}, in check.REASONS order
    recheck              null, or for inferred verdicts the recipe's checks on the rewrites:
                         {"rows", "passed", "pass_rate", "by_reason"}
    alignment            {"instruction_mismatches": rows whose instruction differs, null if unchecked}
    length               {unit: {"original", "rewrite", "final": summary, "sampled_rows", "histogram"}}
                         for unit in chars, words (whitespace-separated; a CJK character is one) and tokens (with a
                         tokenizer); rewrite lengths are over rows that have one; sampled_rows
                         is null when every row was counted
    similarity           null, or original vs rewrite over rows with a rewrite:
                         {"rows", "sampled", "seed", "tokens", "rouge_l_f1": summary+histogram,
                          "word_jaccard": summary+histogram, "by_reason": {reason: {"rows", "rouge_l_f1"}}}
    answer_agreement     null, or {"kind": "last_integer"|"function_call"|the check's name,
                         "rewrite": {"rows", "agree", "rate"}, "final": {"rows", "agree", "rate"}}
    wording              {"sampled_rows" (null: every row), "rows_with_rewrite",
                          "markers": [{"marker", "group", "pattern", "original", "rewrite", "final",
                                       "original_all": {"rows", "of", "share"}}],
                          "openings": {"words", "rows", "rewrite": [{"phrase", "rows", "share"}], "original": [...]},
                          "ngrams": {"n_max", "rows", "sampled", "seed", "min_rows", "min_z", "tokens", "by_n": {"1": {"over": [...],
                                     "under": [{"ngram", "rewrite_rows", "original_rows", "rewrite_share",
                                                "original_share", "delta", "log2_odds", "z"}]}, ...}}}
                         (see sdft_data.diff.wording: "original" and "rewrite" are the rows that have a
                         rewrite, "final" and "original_all" every row)
    against              null, or a version comparison (see summarize_versions)
    gap                  null, or the seed model's mean log-likelihood per token (nats) of originals and
                         rewrites under the training prompt (sdft_data.gap.summarize): {"model", "revision",
                         "format", "method", "rows", "original", "rewrite", "paired", "accepted", "fallback"
                         ({"rows", "mean", "median"[, "rewrite_more_likely"]}), "sdft" {"rows", "mean_gain",
                         "accepted"}, "too_long", "points" {"sampled", "original", "rewrite", "accepted"}}

    summary   = {"rows", "mean", "median", "p10", "p90", "max"}
    histogram = {"edges": [...], "scale": "linear"|"log", "<series>": [counts...]}; values past the last
                edge count in the last bin
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from ..check import read_manifest, recipe_from_manifest
from ..recipes import Recipe
from .render import latex_tables, render_markdown, render_table, write_plots, write_report
from .stats import (
    SCHEMA_VERSION,
    compare_versions,
    diff_frame,
    diff_lazy,
    gap_stats,
    is_toolkit_layout,
    lcs_length,
    load_distilled,
    load_table,
    load_tokenizer,
    pick_examples,
    rouge_l_f1,
    similarity_frame,
    summarize,
    summarize_versions,
    tokens,
    word_jaccard,
)
from .wording import MARKERS, Marker, marker_rates, ngram_shift, openings, wording_stats

__all__ = [
    "SCHEMA_VERSION", "MARKERS", "Marker", "compare_versions", "diff_files", "diff_frame", "diff_lazy", "diff_run", "gap_stats",
    "is_toolkit_layout", "latex_tables", "lcs_length", "load_distilled", "load_table", "load_tokenizer",
    "marker_rates", "ngram_shift", "openings", "pick_examples", "render_markdown", "render_table", "rouge_l_f1",
    "similarity_frame", "summarize", "summarize_versions", "tokens", "word_jaccard", "wording_stats", "write_plots",
    "write_report",
]


# --------------------------------------------------------------------------
# Entry points behind the CLI


def _versions(per_row: pl.LazyFrame, against: str, recipe: Recipe, original: pl.DataFrame | None) -> dict:
    other = load_distilled(against)
    other_rows = diff_lazy(original, other, recipe, lengths=False) if (is_toolkit_layout(other) or original is not None) else other
    changes = compare_versions(other_rows, per_row, response_column=recipe.response_column)
    return summarize_versions(changes, before=str(against), after="this version")


def diff_run(
    run_dir: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    tokenizer: str | None = None,
    against: str | None = None,
    examples: int = 3,
) -> dict:
    """Diff a run's distilled dataset against its source; write RUN_DIR/report/ (or `out`). Returns stats."""
    run = Path(run_dir)
    manifest = read_manifest(run)
    recipe = recipe_from_manifest(manifest)
    distilled = load_distilled(run)
    tok = load_tokenizer(tokenizer) if tokenizer else None
    per_row = diff_lazy(None, distilled, recipe, lengths=False)
    fp = manifest.get("fingerprint_inputs", {})
    inputs = {
        "run": str(manifest.get("fingerprint", ""))[:12],
        "source": str((fp.get("source") or {}).get("id", "")),
        "model": str((fp.get("model") or {}).get("model_id") or ""),  # an import may not know its model
        "checks": (manifest.get("check") or {}).get("rules") or ("strict" if (manifest.get("check") or {}).get("strict") else "default"),
    }
    stats = summarize(per_row, recipe, tokenizer=tok, inputs=inputs, tokenizer_name=tokenizer)
    stats["gap"] = gap_stats(distilled, manifest)
    if against:
        source = pl.read_parquet(run / "source.parquet") if (run / "source.parquet").is_file() else None
        stats["against"] = _versions(per_row, against, recipe, source)
    write_report(stats, pick_examples(per_row, per_reason=examples), out or run / "report")
    return stats


def diff_files(
    original: str,
    distilled: str,
    recipe: Recipe,
    out: str | os.PathLike,
    *,
    tokenizer: str | None = None,
    against: str | None = None,
    examples: int = 3,
) -> dict:
    """Diff any two row-aligned datasets (files or Hub ids); write the report into `out`. Returns stats."""
    original_df = load_table(original)
    distilled_df = load_distilled(distilled)
    from ..source import check_text_frame

    for name, frame in ((f"--original {original}", original_df), (f"--distilled {distilled}", distilled_df)):
        check_text_frame(frame, [*recipe.columns, "original_response", "rewrite"], name)
    tok = load_tokenizer(tokenizer) if tokenizer else None
    per_row = diff_lazy(original_df, distilled_df, recipe, lengths=False)
    inputs = {"original": Path(original).name if Path(original).exists() else original,
              "distilled": Path(distilled).name if Path(distilled).exists() else distilled}
    stats = summarize(per_row, recipe, tokenizer=tok, inputs=inputs, tokenizer_name=tokenizer)
    stats["gap"] = gap_stats(distilled_df)
    if against:
        stats["against"] = _versions(per_row, against, recipe, original_df)
    write_report(stats, pick_examples(per_row, per_reason=examples), out)
    return stats
