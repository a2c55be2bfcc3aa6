"""How the wording changed: marker phrases, opening phrases and the n-grams rewrites over- and under-use.

All three compare each rewrite with its own original (the same rows: rows
that have a rewrite), so a shift is the model's doing, not a difference in
which rows were rewritten. Marker rates are also given over the final dataset
(every row), which is what a model trained on it sees.

    wording_stats(per_row)  ->  {"rows", "markers", "openings", "ngrams"}  (stats.json's "wording")

Texts are compared as they are (stripped). N-gram tokens are lowercase CJK
characters, runs of other word characters, or runs of punctuation (so `###`
and `:` are tokens; see sdft_data.diff.text); an n-gram
counts once per text (document frequency), so one long rewrite cannot make a
phrase look common. Each n-gram gets the change in the share of texts that
hold it (rewrites minus originals), the log-odds ratio of appearing in a
rewrite versus in its original (a pseudo-count of 0.5 on every cell), and that
ratio's z-score (the ratio over its standard error, as in Monroe et al. 2008
without the informative prior). The tables list, for each n, the largest rises
and falls among n-grams in at least `min_rows` texts whose |z| passes 1.96:
large, and unlikely to be chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

from ..check import TEMPLATE_LEAK_PATTERN
from .text import NGRAM_TOKENS_DESCRIPTION, first_words, ngram_tokens

OPENING_WORDS = 3
OPENING_CHARS = 40


@dataclass(frozen=True)
class Marker:
    """A phrase whose rate says something about the rewrites. `pattern` is a regex unless `literal`."""

    name: str
    group: str  # template leakage, refusal, chat, format
    pattern: str
    literal: bool = True


# Template leakage: the distill prompt's own words and layout showing up in the answer; refusals and chat
# phrases: the seed model's habits (SDFT keeps them on purpose, the report shows how much).
MARKERS: tuple[Marker, ...] = (
    # The distill template's own headers (sdft_data.check's template_leak, rejected under --rules strict).
    Marker("distill template headers", "template", TEMPLATE_LEAK_PATTERN, literal=False),
    Marker("###", "template", "###"),
    Marker("Instruction:", "template", "Instruction:"),
    Marker("Response:", "template", "Response:"),
    Marker("reference answer", "template", r"(?i)reference answer", literal=False),
    Marker("Explanation:", "template", "Explanation:"),
    Marker("Note:", "format", "Note:"),
    Marker("```", "format", "```"),
    Marker("refusal", "refusal",
           r"(?i)\b(?:I cannot|I can't|I can not|I'm not able to|I am not able to|I'm unable to|I am unable to|"
           r"I'm sorry|I am sorry|I apologi[sz]e|As an AI|as a language model)\b", literal=False),
    Marker("I hope", "chat", r"(?i)\bI hope\b", literal=False),
    Marker("Sure", "chat", r"^(?:Sure|Certainly|Of course)\b", literal=False),
    Marker("Great!", "chat", "Great!"),
    Marker("Let me know", "chat", r"(?i)\blet me know\b", literal=False),
)


def _contains(text: pl.Expr, marker: Marker) -> pl.Expr:
    return text.str.contains(marker.pattern, literal=marker.literal).fill_null(False)


def marker_rates(frame: pl.DataFrame, markers: tuple[Marker, ...] = MARKERS) -> list[dict]:
    """Rows containing each marker: originals and rewrites of the rows with a rewrite, and every final response.

    `frame` has `original`, `rewrite` (null when none) and `final`.
    """
    has = frame.filter(pl.col("rewrite").is_not_null() & (pl.col("rewrite") != ""))
    n_pair, n_all = has.height, frame.height
    exprs = []
    for i, m in enumerate(markers):
        exprs.append(_contains(pl.col("original"), m).sum().alias(f"o{i}"))
        exprs.append(_contains(pl.col("rewrite"), m).sum().alias(f"r{i}"))
    paired = has.select(exprs).row(0, named=True) if exprs else {}
    finals = frame.select([_contains(pl.col("final"), m).sum().alias(f"f{i}") for i, m in enumerate(markers)]
                          + [_contains(pl.col("original"), m).sum().alias(f"a{i}") for i, m in enumerate(markers)]
                          ).row(0, named=True)
    out = []
    for i, m in enumerate(markers):
        o, r, f, a = (int(paired.get(f"o{i}") or 0), int(paired.get(f"r{i}") or 0), int(finals[f"f{i}"]),
                      int(finals[f"a{i}"]))
        out.append({
            "marker": m.name, "group": m.group, "pattern": m.pattern,
            "original": {"rows": o, "of": n_pair, "share": _share(o, n_pair)},
            "rewrite": {"rows": r, "of": n_pair, "share": _share(r, n_pair)},
            "final": {"rows": f, "of": n_all, "share": _share(f, n_all)},
            "original_all": {"rows": a, "of": n_all, "share": _share(a, n_all)},
        })
    return out


def _share(n: int, total: int) -> float | None:
    return round(n / total, 6) if total else None


def opening_phrase(text: pl.Expr, words: int = OPENING_WORDS, max_chars: int = OPENING_CHARS) -> pl.Expr:
    """The first `words` words of a text (text.word_count's), single-spaced, cut at `max_chars` (null when empty)."""
    first = first_words(text, words)
    first = first.str.replace_all(r"\s+", " ")
    # A function call or a URL is one "word": keep the phrase short enough for a table.
    return pl.when(first.str.len_chars() > max_chars).then(first.str.slice(0, max_chars - 1) + "…").otherwise(first)


def openings(frame: pl.DataFrame, *, words: int = OPENING_WORDS, top: int = 10) -> dict:
    """The most common opening phrases of the rewrites and of their originals (the same rows)."""
    has = frame.filter(pl.col("rewrite").is_not_null() & (pl.col("rewrite") != ""))
    out: dict = {"words": words, "rows": has.height}
    for side in ("rewrite", "original"):
        # Lazy, so that the phrase opening_phrase uses three times is computed once (an eager select repeats it).
        counts = (has.lazy().select(opening_phrase(pl.col(side), words).alias("phrase")).drop_nulls()
                  .group_by("phrase").len().sort(["len", "phrase"], descending=[True, False]).head(top).collect())
        out[side] = [{"phrase": p, "rows": int(n), "share": _share(int(n), has.height)} for p, n in counts.iter_rows()]
    return out


def _document_ngrams(original: pl.Series, rewrite: pl.Series, n_max: int) -> tuple[pl.DataFrame, pl.Series]:
    """(n, key, original_rows, rewrite_rows) for every 1..n_max-gram, and the vocabulary that decodes `key`.

    Vectorised on integers: each token gets a dense id (a fresh categorical),
    an n-gram is the integer key ((id1 * V) + id2) * V + ... (exact, V the
    vocabulary size), each text's keys are made unique in its own list (document
    frequency), and each n's keys are counted in one group-by. Strings come back only for the
    n-grams a table shows (`_decode`).
    """
    # Codes 0..V-1 of this call's own categories (the global ones keep every string they ever saw); they hold
    # their strings only while a column of theirs lives.
    cats = pl.Categories.random()
    coded = pl.concat([original, rewrite]).to_frame("t").select(
        ngram_tokens(pl.col("t")).cast(pl.List(pl.Categorical(cats))).alias("tok"))
    ids = coded.select(pl.col("tok").list.eval(pl.element().to_physical().cast(pl.UInt64)).alias("ids"))
    largest = ids["ids"].explode().max()
    size = 1 if largest is None else int(largest) + 1
    # code -> token, vectorised (Categories.to_series() walks them in Python)
    vocab = (pl.Series(range(size), dtype=pl.UInt32).cat.to(pl.Categorical(cats)).cast(pl.String)
             if largest is not None else pl.Series([None], dtype=pl.String))
    del coded
    if size ** n_max >= 2 ** 63:
        raise ValueError(f"{size} distinct tokens are too many for {n_max}-grams: count n-grams on a sample")
    key = pl.element()
    per_n = []
    for n in range(1, n_max + 1):
        if n > 1:  # shift within each text: the last n - 1 positions have no n-gram (null, dropped)
            key = key * size + pl.element().shift(-(n - 1))
        per_n.append(pl.col("ids").list.eval(key).list.drop_nulls().list.unique().alias(str(n)))
    # One hash group-by per n over both sides' keys, counting each side's rows (a text's keys are unique).
    grams = ids.lazy().select(per_n).with_row_index("_row").with_columns((pl.col("_row") >= original.len()).alias("_rw"))
    tables = [
        grams.select("_rw", pl.col(str(n)).alias("key")).explode("key").drop_nulls("key")
        .group_by("key").agg((~pl.col("_rw")).sum().alias("original_rows"), pl.col("_rw").sum().alias("rewrite_rows"))
        .select(pl.lit(n, pl.UInt8).alias("n"), "key", "original_rows", "rewrite_rows")
        for n in range(1, n_max + 1)
    ]
    out = pl.concat(tables).with_columns(pl.col("original_rows", "rewrite_rows").cast(pl.Int64)).collect()
    return out, vocab


def _decode(frame: pl.DataFrame, vocab: pl.Series) -> pl.DataFrame:
    """Add `ngram` (tokens joined by spaces) to rows of `_document_ngrams`."""
    size = vocab.len()
    pieces = []
    for (n,), part in frame.group_by("n", maintain_order=True):
        digits = [(part["key"] // size ** (n - 1 - i)) % size for i in range(n)]
        words = [vocab.gather(d.cast(pl.UInt32)) for d in digits]
        pieces.append(part.with_columns(pl.concat_str(words, separator=" ").alias("ngram")))
    return pl.concat(pieces) if pieces else frame.with_columns(pl.lit(None, pl.String).alias("ngram"))


def ngram_shift(frame: pl.DataFrame, *, n_max: int = 3, top: int = 10, min_rows: int = 5, alpha: float = 0.5,
                min_z: float = 1.96, sample: int | None = 20_000, seed: int = 0) -> dict:
    """The n-grams most over- and under-represented in rewrites against their originals (see module docstring).

    For each n in 1..n_max, the `top` n-grams with the largest rise (and
    fall) in the share of texts holding them, among those in at least
    `min_rows` texts whose log-odds z-score passes `min_z`. On a seeded
    uniform sample of `sample` rows with a rewrite when there are more (None:
    all of them).
    """
    has = frame.filter(pl.col("rewrite").is_not_null() & (pl.col("rewrite") != ""))
    sampled = sample is not None and has.height > sample
    if sampled:
        has = has.with_columns(pl.col("row_id").hash(seed).alias("_u")).sort("_u").head(sample)
    n = has.height
    out: dict = {"n_max": n_max, "rows": n, "sampled": sampled, "seed": seed, "min_rows": min_rows, "min_z": min_z,
                 "tokens": NGRAM_TOKENS_DESCRIPTION, "by_n": {}}
    if n == 0:
        return out
    both, vocab = _document_ngrams(has["original"], has["rewrite"], n_max)
    a, b = pl.col("rewrite_rows").cast(pl.Float64), pl.col("original_rows").cast(pl.Float64)
    log_odds = ((a + alpha) / (n - a + alpha)).log() - ((b + alpha) / (n - b + alpha)).log()
    var = 1 / (a + alpha) + 1 / (n - a + alpha) + 1 / (b + alpha) + 1 / (n - b + alpha)
    scored = (both.filter((pl.col("rewrite_rows") + pl.col("original_rows")) >= min_rows)
              .with_columns(((a - b) / n).alias("delta"), (log_odds / math.log(2)).alias("log2_odds"),
                            (log_odds / var.sqrt()).alias("z"))
              .filter(((pl.col("z") >= min_z) & (pl.col("delta") > 0)) | ((pl.col("z") <= -min_z) & (pl.col("delta") < 0))))
    scored = _decode(scored, vocab)

    def rows(frame: pl.DataFrame) -> list[dict]:
        return [{"ngram": g, "rewrite_rows": int(r), "rewrite_share": _share(int(r), n), "original_rows": int(o),
                 "original_share": _share(int(o), n), "delta": round(d, 6), "log2_odds": round(lo, 3), "z": round(z, 2)}
                for g, r, o, d, lo, z in frame.select("ngram", "rewrite_rows", "original_rows", "delta", "log2_odds",
                                                      "z").iter_rows()]

    for k in range(1, n_max + 1):
        of_k = scored.filter(pl.col("n") == k)
        out["by_n"][str(k)] = {
            "over": rows(of_k.filter((pl.col("z") >= min_z) & (pl.col("delta") > 0))
                         .sort(["delta", "z", "ngram"], descending=[True, True, False]).head(top)),
            "under": rows(of_k.filter((pl.col("z") <= -min_z) & (pl.col("delta") < 0))
                          .sort(["delta", "z", "ngram"]).head(top)),
        }
    return out


def wording_stats(per_row: pl.DataFrame | pl.LazyFrame, *, ngram_sample: int | None = 20_000, seed: int = 0) -> dict:
    """stats.json's `wording`: marker rates, opening phrases, n-gram shifts (see the module docstring)."""
    frame = per_row.lazy().select("row_id", "original", "rewrite", "final").collect()
    rows = frame.filter(pl.col("rewrite").is_not_null() & (pl.col("rewrite") != "")).height
    return {
        "rows_with_rewrite": rows,
        "markers": marker_rates(frame),
        "openings": openings(frame),
        "ngrams": ngram_shift(frame, sample=ngram_sample, seed=seed),
    }
