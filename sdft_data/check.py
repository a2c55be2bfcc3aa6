"""Check rewrites and fall back: the paper's checks as vectorised Polars expressions.

A rewrite replaces the original response only when it passes every check;
otherwise the row falls back to the original (the reference the model saw),
and the row keeps *why* in its `reason` column. The checks reproduce the
authors' eval/gen_distilled_data.py (verify + check_math / check_openfunction /
check_magicoder), written as Polars expressions so a million rows take
seconds, plus general checks the authors' pipeline did not need.

Reasons, in precedence order: a row's reason is the first that applies.

    no_rewrite            an imported row whose distilled response is the original: the files
                          do not record a rewrite (status "absent"; see sdft_data.importer)
    generation_failed     the request failed (status != "ok"); there is no rewrite
    empty                 the rewrite is empty or only whitespace
    truncated             generation stopped at max_new_tokens (finish_reason "length")
    banned_phrase         contains "reference answer", "your response", "my response",
                          "your own response" or "now it's your turn" (any case)
    your_turn             starts with "Your turn" (case-sensitive, as the authors check)
    reference_no_answer   math: the reference has no valid last integer
    wrong_answer          math: last integer differs from the reference's
    reference_not_a_call  function_call: the reference is not a `name(args)` call
    call_mismatch         function_call: the reference call does not occur in the rewrite
    code_format           code: no ```python fence, or does not start with
                          "I have", "Here is" or "I implemented"
    code_does_not_parse   code, strict only: a ```python block is not valid Python (ast)
    answer_form           math, strict only: does not end with "The answer is N."
    accepted              passed every check; the rewrite is the row's response

General checks come first because a failed, empty or cut-off generation says
nothing about the task. The strict checks go beyond the paper, are off by
default, and `check_run` records in the manifest whether they were on.

Pure-Python copies of the authors' functions (`find_last_integer`,
`authors_verify`, `authors_check_math`, `authors_check_openfunction`,
`authors_check_magicoder`) are kept here as the reference the tests compare the
Polars expressions against, and as the benchmark's baseline.
"""

from __future__ import annotations

import ast
import os
import re
import warnings
from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from .recipes import CHECKS, TEMPLATES, Recipe, UnknownRecipe, custom_recipe, get_recipe, recipe_names, replace
from .run import generations, read_manifest, write_manifest

REASONS = (
    "no_rewrite",
    "generation_failed",
    "empty",
    "truncated",
    "banned_phrase",
    "your_turn",
    "reference_no_answer",
    "wrong_answer",
    "reference_not_a_call",
    "call_mismatch",
    "code_format",
    "code_does_not_parse",
    "answer_form",
    "accepted",
)

# One line per reason, for reports and cards.
REASON_MEANINGS = {
    "no_rewrite": "imported: the distilled dataset keeps the original response, no rewrite is recorded",
    "generation_failed": "the generation request failed",
    "empty": "the rewrite is empty",
    "truncated": "the rewrite was cut at max_new_tokens",
    "banned_phrase": "the rewrite mentions the template (e.g. \"reference answer\")",
    "your_turn": "the rewrite starts with \"Your turn\"",
    "reference_no_answer": "the reference has no integer answer to compare with",
    "wrong_answer": "the rewrite's last integer differs from the reference's",
    "reference_not_a_call": "the reference is not a function call",
    "call_mismatch": "the rewrite does not contain the reference call",
    "code_format": "no ```python block, or an opening other than \"I have\"/\"Here is\"/\"I implemented\"",
    "code_does_not_parse": "a ```python block does not parse (strict)",
    "answer_form": "the rewrite does not end with \"The answer is N.\" (strict)",
    "accepted": "passed every check: the rewrite is used",
}

BANNED_PHRASES = ("reference answer", "your response", "my response", "your own response", "now it's your turn")
CODE_OPENINGS = ("I have", "Here is", "I implemented")
# ASCII-only case folding (?i-u) equals the authors' lower() for these
# phrases: the only non-ASCII character that lowers to ASCII is the Kelvin
# sign (to "k"), and no phrase has a "k". (Unicode folding would also let
# the long s "ſ" match "s", which lower() does not.) One regex is about three
# times faster here than Aho-Corasick with ASCII case folding.
_BANNED_PATTERN = "(?i-u)" + "|".join(BANNED_PHRASES)  # plain words and apostrophes: nothing to escape

# Python's str.strip()/str.isspace() whitespace. Polars' default strip and the
# Rust regex `\s` use Unicode White_Space, which lacks \x1c-\x1f; spelling the
# set out keeps stripping and splitting identical to the authors' Python.
PY_WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WS = r"[\s\x1C-\x1F]"  # Python's `\s` in Rust regex syntax

# The authors' number pattern (eval/utils.py). Their `[,\s]` also accepts any
# whitespace, newlines included, as a thousands separator ("12 500" is 12500);
# we keep that behaviour. They then delete "," and " " only, so a number joined
# across a newline ("12\n34") stays invalid: int() refuses it.
NUMBER_PATTERN = r"-?\d+(?:[,\s]\d+)*(?:\.\d+)?"
_NUMBER_PATTERN_RS = r"-?\d+(?:[,\s\x1C-\x1F]\d+)*(?:\.\d+)?"
_NUMBER_CHAR = r"[-,.\s\x1C-\x1F\d]"
_LAST_NUMBER_RUN = rf"{_NUMBER_CHAR}*\d{_NUMBER_CHAR}*\D*$"

# The authors' function-call shape: dotted name, "(", anything, the last ")".
CALL_PATTERN = r"([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\((.*)\)"
_CALL_PREFIX_RS = r"^([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*\(.*\))"

# Strict GSM8K form: the paper's evaluation prompt asks for "The answer is N."
ANSWER_FORM_PATTERN = r"The answer is -?\d[\d,]*(?:\.0+)?\.?$"


# --------------------------------------------------------------------------
# The authors' functions in plain Python: the reference for tests and the
# benchmark's baseline. Kept as close to their code as possible.

INVALID = "-999999999"


def find_last_integer(s: str) -> str:
    """The authors' find_last_integer: the last number in `s` as an integer string, or INVALID."""
    numbers = re.findall(NUMBER_PATTERN, s)
    number = numbers[-1].replace(",", "").replace(" ", "") if numbers else INVALID
    if len(number.split(".")) > 1 and int(number.split(".")[1]) != 0:
        return INVALID
    return number.split(".")[0]


def authors_verify(rewrite: str) -> bool:
    """The authors' verify(): no banned phrase (any case), no "Your turn" opening."""
    lowered = rewrite.lower()
    if any(ban in lowered for ban in BANNED_PHRASES):
        return False
    return not rewrite.startswith("Your turn")


def authors_check_math(reference: str, rewrite: str) -> bool:
    """The authors' check_math. Note: INVALID is itself an int, so two INVALIDs compare equal here."""
    try:
        return int(find_last_integer(reference.strip())) == int(find_last_integer(rewrite.strip()))
    except ValueError:
        return False


def standardize_function_call(s: str) -> str:
    """The authors' standardize_function_call."""
    s = re.sub(r"\s+", " ", s.strip())
    return s.replace("'", '"').replace(", ", ",")


def authors_check_openfunction(reference: str, rewrite: str) -> bool:
    """The authors' check_openfunction; raises ValueError when the reference is not a call (as theirs does)."""
    match = re.match(CALL_PATTERN, standardize_function_call(reference))
    if not match:
        raise ValueError(f"Target function call is not in the correct format.\n{reference}")
    name, params = match.groups()
    pattern = r"\b" + re.escape(name) + r"\(" + re.escape(params) + r"\)"
    return re.search(pattern, standardize_function_call(rewrite)) is not None


def authors_check_magicoder(rewrite: str) -> bool:
    """The authors' check_magicoder."""
    answer = rewrite.strip()
    return "```python" in answer and answer.startswith(CODE_OPENINGS)


# --------------------------------------------------------------------------
# Polars expressions


def last_integer_expr(text: pl.Expr) -> pl.Expr:
    """The authors' find_last_integer as an expression: the integer (Int128), null for INVALID.

    Known differences from Python's int(), outside any real data we know of:
    numbers beyond Int128 (38 digits) and non-ASCII digits, which Python's
    int() reads, are unreadable here (null); a decimal part written in
    non-ASCII zeros counts as non-zero.
    """
    # findall over the whole text is the costly part, and only its last match
    # matters. Characters that no number can contain (anything but digits,
    # "-", ",", "." and whitespace) reset findall's left-to-right scan, so its
    # last match is the last match within the last run of such characters
    # that holds a digit: cut out that run plus the digit-free tail after it
    # (one anchored regex, no capture groups: those cost a second engine),
    # then run findall on that short piece alone.
    run = text.str.extract(_LAST_NUMBER_RUN, 0)
    number = run.str.extract_all(_NUMBER_PATTERN_RS).list.last()
    # Valid: only "," or " " between digit groups (the authors delete those two;
    # any other whitespace makes int() fail) and no non-zero decimal part.
    integer = number.str.extract(r"^(-?\d+(?:[, ]\d+)*)(?:\.0+)?$", 1)
    return integer.str.replace_all(r"[, ]", "").cast(pl.Int128, strict=False)


def standardize_call_expr(text: pl.Expr) -> pl.Expr:
    """standardize_function_call as an expression (collapse whitespace, ' -> ", ", " -> ",")."""
    collapsed = text.str.replace_all(_WS + "+", " ").str.strip_chars(" ")
    return collapsed.str.replace_all("'", '"', literal=True).str.replace_all(", ", ",", literal=True)


def reference_call_expr(reference: pl.Expr) -> pl.Expr:
    """The standardized `name(args)` call at the start of the reference, null when it is not a call."""
    return standardize_call_expr(reference).str.extract(_CALL_PREFIX_RS, 1)


def call_match_expr(call: pl.Expr, rewrite: pl.Expr) -> pl.Expr:
    """Whether `\\b` + call occurs in the standardized rewrite (the authors' re.search).

    A per-row regex costs ~16 s per million rows, so: a literal substring test,
    then the word boundary checked on the character before the first
    occurrence. Only when that character is a word character (rare) does a
    row get the real per-row regex, which also finds later or overlapping
    occurrences; every other row gets a constant never-matching pattern,
    compiled once.
    """
    text = standardize_call_expr(rewrite)
    found = text.str.contains(call, literal=True).fill_null(False)
    before = text.str.splitn(call.fill_null(""), 2).struct.field("field_0").str.slice(-1)
    first_ok = ~before.str.contains(r"^\w$").fill_null(False)
    escaped = call.str.replace_all(r"([\\.+*?()|\[\]{}^$#&~-])", r"\${1}")
    pattern = pl.when(found & ~first_ok).then(r"\b" + escaped).otherwise(pl.lit(r"\b\B"))
    return found & (first_ok | text.str.contains(pattern).fill_null(False))


def _python_blocks_parse(text: str) -> bool:
    blocks = re.findall(r"```python[^\n]*\n(.*?)(?:```|\Z)", text, flags=re.DOTALL)
    if not blocks:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not a failure
        for block in blocks:
            try:
                ast.parse(block)
            except (SyntaxError, ValueError, MemoryError, RecursionError):
                return False
    return True


def check_frame(
    frame: pl.LazyFrame | pl.DataFrame, recipe: Recipe, *, strict: bool = False, keep_answers: bool = False
) -> pl.LazyFrame:
    """Apply the recipe's checks to every row; add `accepted` (bool) and `reason` (str).

    Input columns: `reference` (str) and `rewrite` (str, null when there is
    none); `status` ("ok" or "failed") and `finish_reason` (str or null) are
    optional and default to "ok" and null. Other columns pass through. Both
    texts are stripped first, as the authors do. See the module docstring for
    the reasons and their precedence.

    `keep_answers` (math and function-call recipes) also keeps what the task
    check extracted, so that a diff run on the result need not extract it
    again: `reference_answer` (the reference's last integer or call, null when
    it has none) and `rewrite_agrees` (the rewrite's answer matches; null when
    there is no rewrite).
    """
    frame = frame.lazy()
    names = frame.collect_schema().names()
    missing = [c for c in ("reference", "rewrite") if c not in names]
    if missing:
        raise ValueError(f"cannot check: missing column(s) {', '.join(missing)}")
    if recipe.check not in CHECKS:
        raise ValueError(f"recipe {recipe.name} has unknown check {recipe.check!r}; known: {', '.join(CHECKS)}")
    if "status" not in names:
        frame = frame.with_columns(pl.lit("ok").alias("status"))
    if "finish_reason" not in names:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("finish_reason"))

    frame = frame.with_columns(
        pl.col("rewrite").cast(pl.String).str.strip_chars(PY_WHITESPACE).alias("_rw"),
        pl.col("reference").cast(pl.String).fill_null("").str.strip_chars(PY_WHITESPACE).alias("_ref"),
    )
    rw, ref = pl.col("_rw"), pl.col("_ref")
    failures: list[tuple[str, pl.Expr]] = [
        ("no_rewrite", pl.col("status") == "absent"),
        ("generation_failed", pl.col("status").fill_null("failed") != "ok"),
        ("empty", rw.is_null() | (rw == "")),
        ("truncated", pl.col("finish_reason").fill_null("") == "length"),
        ("banned_phrase", rw.str.contains(_BANNED_PATTERN)),
        ("your_turn", rw.str.starts_with("Your turn")),
    ]
    if recipe.check == "math":
        frame = frame.with_columns(last_integer_expr(ref).alias("_ref_int"), last_integer_expr(rw).alias("_rw_int"))
        failures += [
            # The authors' int(INVALID) == int(INVALID) accepts a rewrite when
            # neither side has an answer; a row without an answer proves nothing.
            ("reference_no_answer", pl.col("_ref_int").is_null()),
            ("wrong_answer", pl.col("_rw_int").is_null() | (pl.col("_rw_int") != pl.col("_ref_int"))),
        ]
        if strict:
            failures.append(("answer_form", ~rw.str.contains(ANSWER_FORM_PATTERN)))
    elif recipe.check == "function_call":
        frame = frame.with_columns(reference_call_expr(ref).alias("_call"))
        frame = frame.with_columns(call_match_expr(pl.col("_call"), rw).alias("_call_found"))
        failures += [
            ("reference_not_a_call", pl.col("_call").is_null()),
            ("call_mismatch", ~pl.col("_call_found")),
        ]
    elif recipe.check == "code":
        opens_right = pl.any_horizontal([rw.str.starts_with(o) for o in CODE_OPENINGS])
        failures.append(("code_format", ~(rw.str.contains("```python", literal=True) & opens_right)))

    reason = _first_failure(failures)
    if strict and recipe.check == "code":
        # ast.parse is Python, so it runs only on rows that passed everything else
        # (map_elements skips the nulls). Opt-in, so off the hot path.
        frame = frame.with_columns(reason.alias("reason"))
        parses = (
            pl.when(pl.col("reason") == "accepted")
            .then(rw)
            .otherwise(None)
            .map_elements(_python_blocks_parse, return_dtype=pl.Boolean)
        )
        reason = pl.when(parses == False).then(pl.lit("code_does_not_parse")).otherwise(pl.col("reason"))  # noqa: E712

    frame = frame.with_columns(reason.alias("reason")).with_columns((pl.col("reason") == "accepted").alias("accepted"))
    if keep_answers and recipe.check in ("math", "function_call"):
        answer, agrees = (
            ("_ref_int", pl.col("_rw_int") == pl.col("_ref_int")) if recipe.check == "math" else ("_call", pl.col("_call_found"))
        )
        frame = frame.with_columns(
            pl.col(answer).alias("reference_answer"),
            pl.when(rw.is_not_null()).then(agrees.fill_null(False)).alias("rewrite_agrees"),
        )
    helpers = [c for c in ("_rw", "_ref", "_ref_int", "_rw_int", "_call", "_call_found") if c in frame.collect_schema().names()]
    return frame.drop(helpers).select(pl.exclude("accepted", "reason"), "accepted", "reason")


def _first_failure(failures: list[tuple[str, pl.Expr]]) -> pl.Expr:
    chain = None
    for name, failed in failures:
        cond = failed.fill_null(True)
        chain = pl.when(cond).then(pl.lit(name)) if chain is None else chain.when(cond).then(pl.lit(name))
    return chain.otherwise(pl.lit("accepted"))


def count_reasons(reasons: pl.Series) -> dict[str, int]:
    """Rows per reason, in precedence order (reasons outside REASONS go last, by count)."""
    counts = dict(reasons.value_counts().iter_rows())
    ordered = {r: int(counts.pop(r)) for r in REASONS if r in counts}
    ordered.update({str(r): int(n) for r, n in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))})
    return ordered


# --------------------------------------------------------------------------
# Run directories (see docs/run-directory.md)


def recipe_from_manifest(manifest: dict) -> Recipe:
    """The recipe a run was made with, from manifest["fingerprint_inputs"]["recipe"].

    Built-in recipes come from the registry by name; a custom recipe is rebuilt
    from its recorded columns, system line and check.
    """
    try:
        desc = manifest["fingerprint_inputs"]["recipe"]
        name = desc["name"]
    except (KeyError, TypeError):
        raise ValueError("manifest.json has no fingerprint_inputs.recipe.name: not a run made by sdft-data distill") from None
    if name in recipe_names():
        return get_recipe(name)
    if not desc.get("prompt_column") or not desc.get("response_column"):
        raise UnknownRecipe(f"unknown recipe {name!r} in manifest.json; known recipes: {', '.join(recipe_names())}, custom")
    system = desc.get("distill_system")
    template = next((k for k, v in TEMPLATES.items() if v == system), "using")
    recipe = custom_recipe(
        prompt_column=desc["prompt_column"],
        response_column=desc["response_column"],
        input_column=desc.get("input_column"),
        template=template,
        check=desc.get("check") or "none",
        name=name,
    )
    if system and system != recipe.distill_system:
        recipe = replace(recipe, distill_system=system)
    return recipe


def _generations(run: Path) -> pl.LazyFrame:
    """The last record per row_id (run.generations), with the columns the checks read."""
    if not any((run / "generations").glob("*.parquet")):
        raise ValueError(f"run {run} has no generations yet: run sdft-data distill first")
    return generations(run).select("row_id", "text", "status", "finish_reason")


DISTILLED_COLUMNS = ("row_id", "original_response", "rewrite", "accepted", "reason")


def build_distilled(run_dir: str | os.PathLike, *, strict: bool = False) -> tuple[pl.DataFrame, dict]:
    """The checked dataset of a run, in memory: (distilled frame, summary). Writes nothing.

    Rows without a generation record yet are left out and counted as `pending`.
    """
    run = Path(run_dir)
    manifest = read_manifest(run)
    recipe = recipe_from_manifest(manifest)
    source_path = run / "source.parquet"
    if not source_path.is_file():
        raise ValueError(f"run {run} has no source.parquet: run sdft-data distill first")
    source = pl.scan_parquet(source_path)
    names = source.collect_schema().names()
    missing = [c for c in ["row_id", *recipe.columns] if c not in names and c != recipe.input_column]
    if missing:
        raise ValueError(f"source.parquet lacks column(s) {', '.join(missing)} needed by recipe {recipe.name}")
    clash = [c for c in DISTILLED_COLUMNS[1:] if c in names]
    if clash:
        raise ValueError(f"source column(s) {', '.join(clash)} clash with the distilled dataset's own columns")
    generations = _generations(run)

    # Checked on a frame of its own, so no source column can collide with the check's.
    to_check = source.select("row_id", recipe.reference_expr()).join(generations, on="row_id", how="inner").select(
        "row_id",
        "reference",
        pl.when(pl.col("status") == "ok")
        .then(pl.col("text").cast(pl.String).str.strip_chars(PY_WHITESPACE))
        .otherwise(pl.lit(None, pl.String))
        .alias("rewrite"),
        "status",
        "finish_reason",
    )
    checked = check_frame(to_check, recipe, strict=strict).select(
        "row_id", pl.col("reference").alias("original_response"), "rewrite", "accepted", "reason"
    )
    pending = source.join(generations, on="row_id", how="anti").select(pl.len()).collect().item()
    response = recipe.response_column
    own = [
        pl.when(pl.col("accepted")).then(pl.col("rewrite")).otherwise(pl.col("original_response")).alias(c)
        if c == response
        else pl.col(c)
        for c in names
        if c != "row_id"
    ]
    distilled = (
        source.join(checked, on="row_id", how="inner")
        .select(*own, *DISTILLED_COLUMNS)
        .sort("row_id")
        .collect()
    )
    summary = {
        "strict": strict,
        "recipe": recipe.name,
        "recipe_version": recipe.version,
        "rows": distilled.height,
        "accepted": int(distilled["accepted"].sum()),
        "pending": int(pending),
        "by_reason": count_reasons(distilled["reason"]),
    }
    return distilled, summary


def check_run(run_dir: str | os.PathLike, *, strict: bool = False) -> pl.DataFrame:
    """(Re)check a run: write RUN_DIR/distilled.parquet and the manifest's `check` entry.

    Reads manifest.json, source.parquet and generations/ (never modifies them),
    applies `check_frame`, and writes distilled.parquet (layout in
    docs/run-directory.md) and manifest.json atomically. Returns the distilled
    frame. Raises ValueError on a run with no generations or a bad manifest.
    """
    run = Path(run_dir)
    distilled, summary = build_distilled(run, strict=strict)
    manifest = read_manifest(run)  # re-read: keep whatever the engine wrote meanwhile
    if summary.get("pending") and "status" in manifest:
        # An engine-made run that is not finished: a distilled.parquet of some of its
        # rows would look complete to train and push. (A hand-built run has no status.)
        total = summary["pending"] + summary.get("rows", 0)
        raise ValueError(
            f"run {run} is unfinished ({manifest['status']}): {summary['pending']} of {total} rows are not generated "
            "yet; run the same `sdft-data distill` command again to finish it (nothing written)"
        )
    manifest["check"] = {"checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **summary}
    tmp = run / ".distilled.parquet.tmp"
    distilled.write_parquet(tmp)
    os.replace(tmp, run / "distilled.parquet")
    write_manifest(run, manifest)
    return distilled
