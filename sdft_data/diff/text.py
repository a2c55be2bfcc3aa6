"""How the diff splits texts into words and tokens: by script, as Polars expressions.

Chinese and Japanese do not put spaces between words, so a whitespace or
`\\w+` split makes a whole CJK sentence one word (and two near-identical
Chinese answers share no token: ROUGE-L 0). Here every CJK character (Han,
Hiragana, Katakana, Hangul) is a word and a token of its own, and a run of
other word characters stops where a CJK character starts ("用Python写" is
用 / python / 写). For Korean that counts syllables, not the space-separated
words, so that the three scripts are counted alike. Latin, Cyrillic and other
spaced scripts split as before.

    word_count(text)     length unit "words": one per CJK character (with the punctuation next to it), else
                         runs of non-whitespace (Unicode White_Space), as before for a text without CJK
    tokens_expr(text)    ROUGE-L and word Jaccard: lowercase CJK characters and runs of other word characters
    ngram_tokens(text)   n-grams: the same, plus runs of punctuation (so `###` and `:` are tokens)

The patterns are Rust regex syntax (Polars); `tokens` applies the same one to a
single Python string.
"""

from __future__ import annotations

import polars as pl

CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
# Punctuation next to a CJK character belongs to it ("果。" is one word), as "apples." is one word in English.
WORD_PATTERN = rf"[^\w\s]*[{CJK}][^\w\s]*|[^\s{CJK}]+"
TOKEN_PATTERN = rf"[{CJK}]|[\w--[{CJK}]]+"
NGRAM_TOKEN_PATTERN = rf"{TOKEN_PATTERN}|[^\w\s]+"
TOKENS_DESCRIPTION = "lowercase CJK characters and runs of other word characters"
NGRAM_TOKENS_DESCRIPTION = "lowercase CJK characters, runs of other word characters, runs of punctuation"


def word_count(text: pl.Expr) -> pl.Expr:
    """Words in `text` (Int64; null stays null): see the module docstring."""
    return text.str.count_matches(WORD_PATTERN).cast(pl.Int64)


def first_words(text: pl.Expr, words: int) -> pl.Expr:
    """The first `words` words of `text` (stripped), with the whitespace between them as written."""
    word = f"(?:{WORD_PATTERN})"
    return text.str.strip_chars().str.extract(rf"^({word}(?:\s*{word}){{0,{words - 1}}})", 1)


def tokens_expr(text: pl.Expr) -> pl.Expr:
    """ROUGE-L / Jaccard tokens of `text`, as a list column."""
    return text.str.to_lowercase().str.extract_all(TOKEN_PATTERN)


def ngram_tokens(text: pl.Expr) -> pl.Expr:
    """N-gram tokens of `text` (tokens_expr's, plus runs of punctuation), as a list column."""
    return text.str.to_lowercase().str.extract_all(NGRAM_TOKEN_PATTERN)


def tokens(text: str) -> list[str]:
    """tokens_expr for one Python string."""
    return pl.Series([text], dtype=pl.String).to_frame("t").select(tokens_expr(pl.col("t")))["t"][0].to_list()
