"""Check rewrites and fall back: the shared checks, the rule sets, and the runner.

A rewrite replaces the original response only when it passes every check;
otherwise the row falls back to the original (the reference the model saw),
and the row keeps *why* in its `reason` column. The task checks (answer
extraction and comparison) live in each recipe's module, as Polars expressions
with their reasons (`Recipe.check`); this module holds the checks every
recipe shares, the rule sets, and `check_frame`/`check_run`, which apply them.

Rule sets (recorded in the run's fingerprint, its manifest and its card):

    paper    the authors' eval/gen_distilled_data.py exactly: verify() and the
             task check, nothing else. An empty rewrite passes where the task
             check lets it; a rewrite cut at max_new_tokens is kept; a GSM8K
             pair with no integer on either side is accepted.
    default  the project's: also rejects empty and truncated rewrites and math
             rows whose reference has no answer.
    strict   default, plus the form of a math answer, a parse of code, and no
             distill template headers copied into the rewrite (template_leak).

Reasons, in precedence order: a row's reason is the first that applies.

    no_instruction        the source row's instruction is null or empty: nothing to rewrite (the
                          row is never sent to the model; under paper, only rows not generated)
    no_reference          the source row's reference response is null or empty: nothing to check a
                          rewrite against, nothing to fall back to (never sent either)
    no_rewrite            an imported row whose distilled response is the original: the files
                          do not record a rewrite (status "absent"; see sdft_data.importer)
    generation_failed     the request failed (status != "ok"); there is no rewrite
    empty                 the rewrite is empty or only whitespace (paper: only when there is no text)
    truncated             generation stopped at max_new_tokens (finish_reason "length"; not under paper)
    banned_phrase         contains "reference answer", "your response", "my response",
                          "your own response" or "now it's your turn" (any case)
    your_turn             starts with "Your turn" (case-sensitive, as the authors check)
    template_leak         writes the distill template's headers ("### Instruction:",
                          "### Reference Answer:", "### Response:"); strict only. Under every
                          rule set such rows are counted (the check summary's `template_leaks`)
    ...                   the recipe's own reasons (gsm8k: reference_no_answer, wrong_answer,
                          answer_form; openfunctions: reference_not_a_call, call_mismatch;
                          magicoder: code_format, code_does_not_parse)
    accepted              passed every check; the rewrite is the row's response

General checks come first because a failed, empty or cut-off generation says
nothing about the task.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl

from .recipes import (
    PY_WHITESPACE,
    PY_WS_RE,
    RULE_SETS,
    TEMPLATES,
    Recipe,
    UnknownRecipe,
    builtin_checks,
    custom_recipe,
    get_recipe,
    recipe_names,
    replace,
)
from .recipes.gsm8k import (  # noqa: F401 - re-exported: the diff and the benchmarks import them from here
    ANSWER_FORM_PATTERN,
    INVALID,
    NUMBER_PATTERN,
    find_last_integer,
    last_integer_expr,
)
from .recipes.magicoder import CODE_OPENINGS, python_blocks_parse  # noqa: F401
from .recipes.openfunctions import (  # noqa: F401
    CALL_PATTERN,
    call_match_expr,
    reference_call_expr,
    standardize_call_expr,
    standardize_function_call,
)
from .errors import first_line
from .rundir import DISTILLED_COLUMNS, generations, now, read_manifest, write_distilled, write_manifest
from .source import file_sha256

_WS = PY_WS_RE

# Reasons every recipe shares, with their meanings, in precedence order.
SHARED_REASONS = {
    "no_instruction": "the source row has no instruction (null or empty): nothing to rewrite",
    "no_reference": "the source row has no reference response (null or empty): nothing to check a rewrite against",
    "no_rewrite": "imported: the distilled dataset keeps the original response, no rewrite is recorded",
    "generation_failed": "the generation request failed",
    "empty": "the rewrite is empty",
    "truncated": "the rewrite was cut at max_new_tokens",
    "banned_phrase": "the rewrite mentions the template (e.g. \"reference answer\")",
    "your_turn": "the rewrite starts with \"Your turn\"",
    "template_leak": "the rewrite writes the distill template's headers (### Instruction:, ### Reference Answer:, "
                     "### Response:) (strict)",
}


def _builtin_reasons() -> dict[str, str]:
    out = dict(SHARED_REASONS)
    for check in builtin_checks().values():
        for reason, meaning in check.reasons:
            out.setdefault(reason, meaning)
    out["accepted"] = "passed every check: the rewrite is used"
    return out


# One line per reason, for reports and cards; REASONS is their precedence order.
REASON_MEANINGS = _builtin_reasons()
REASONS = tuple(REASON_MEANINGS)

RULE_MEANINGS = {
    "paper": "the authors' acceptance exactly (gen_distilled_data.py): template phrases and the task check only",
    "default": "the authors' checks plus: empty and truncated rewrites, and math references without an answer, fall back",
    "strict": "the default rules plus the answer's form (math: \"The answer is N.\"), a parse of code blocks and "
              "no distill template headers (### Instruction: ...)",
}

BANNED_PHRASES = ("reference answer", "your response", "my response", "your own response", "now it's your turn")
# ASCII-only case folding (?i-u) equals the authors' lower() for these
# phrases: the only non-ASCII character that lowers to ASCII is the Kelvin
# sign (to "k"), and no phrase has a "k". (Unicode folding would also let
# the long s "ſ" match "s", which lower() does not.) One regex is about three
# times faster here than Aho-Corasick with ASCII case folding.
_BANNED_PATTERN = "(?i-u)" + "|".join(BANNED_PHRASES)  # plain words and apostrophes: nothing to escape


# The headers of the paper's Alpaca-style distill template. A rewrite that writes them has copied the
# prompt's scaffolding instead of answering (a chat model shown the raw-text markup echoes it).
TEMPLATE_HEADERS = ("### Instruction:", "### Reference Answer:", "### Response:")
TEMPLATE_LEAK_PATTERN = "###[ \t]*(?:Instruction|Reference Answer|Response):"


def template_leak_expr(rewrite: pl.Expr) -> pl.Expr:
    """Whether each rewrite writes one of the distill template's headers (TEMPLATE_HEADERS)."""
    return rewrite.str.contains(TEMPLATE_LEAK_PATTERN)


def verify(rewrite: str) -> bool:
    """The authors' verify() on one (stripped) rewrite: no banned phrase in any case, no "Your turn" opening."""
    lowered = rewrite.lower()
    return not any(ban in lowered for ban in BANNED_PHRASES) and not rewrite.startswith("Your turn")


# Names of the first API, kept for callers (sdft_train, the benchmarks).
authors_verify = verify
from .recipes.gsm8k import is_correct as authors_check_math  # noqa: E402
from .recipes.openfunctions import is_correct as authors_check_openfunction  # noqa: E402
from .recipes.magicoder import is_well_formed as authors_check_magicoder  # noqa: E402


def check_rules(rules: str) -> str:
    if rules not in RULE_SETS:
        raise ValueError(f"unknown rule set {rules!r}; choose one of: {', '.join(RULE_SETS)}")
    return rules


def shared_failures(rw: pl.Expr, rules: str, ref: pl.Expr | None = None,
                    instruction: pl.Expr | None = None) -> list[tuple[str, pl.Expr]]:
    """The checks every recipe shares, as (reason, failed) in precedence order, for rule set `rules`.

    Reads the frame's `status` and `finish_reason` columns; `rw` is the stripped rewrite, `ref` the
    stripped reference and `instruction` the row's instruction (when the frame has one).
    """
    status = pl.col("status")
    # The paper's rules are the authors' acceptance exactly, and they accepted a rewrite of an empty
    # reference; under them these two name only rows that were never generated (distill sends none).
    unsent = status.fill_null("failed") != "ok" if rules == "paper" else pl.lit(True)
    failures = []
    if instruction is not None:
        failures.append(("no_instruction", (instruction.cast(pl.String).fill_null("").str.strip_chars() == "") & unsent))
    if ref is not None:
        failures.append(("no_reference", (ref == "") & unsent))
    failures += [
        ("no_rewrite", status == "absent"),
        ("generation_failed", status.fill_null("failed") != "ok"),
    ]
    if rules == "paper":
        # The authors keep whatever text came back, even "": only a row with no text falls back.
        failures.append(("empty", rw.is_null()))
    else:
        failures += [
            ("empty", rw.is_null() | (rw == "")),
            ("truncated", pl.col("finish_reason").fill_null("") == "length"),
        ]
    failures += [
        ("banned_phrase", rw.str.contains(_BANNED_PATTERN)),
        ("your_turn", rw.str.starts_with("Your turn")),
    ]
    if rules == "strict":
        failures.append(("template_leak", template_leak_expr(rw)))
    return failures


def check_frame(
    frame: pl.LazyFrame | pl.DataFrame, recipe: Recipe, *, rules: str = "default", strict: bool = False,
    keep_answers: bool = False,
) -> pl.LazyFrame:
    """Apply the shared checks and the recipe's check to every row; add `accepted` (bool) and `reason` (str).

    Input columns: `reference` (str) and `rewrite` (str, null when there is
    none); `status` ("ok" or "failed") and `finish_reason` (str or null) are
    optional and default to "ok" and null; `instruction`, when present, is
    checked too (an empty one fails the row: no_instruction). Other columns pass through. Both
    texts are stripped first, as the authors do. `rules` is a rule set (see the
    module docstring); `strict=True` is `rules="strict"`.

    `keep_answers` (recipes whose check extracts an answer) also keeps what it
    extracted, so that a diff run on the result need not extract it again:
    `reference_answer` (null when the reference has none) and `rewrite_agrees`
    (the rewrite's answer matches; null when there is no rewrite).
    """
    rules = check_rules("strict" if strict else rules)
    frame = frame.lazy()
    names = frame.collect_schema().names()
    missing = [c for c in ("reference", "rewrite") if c not in names]
    if missing:
        raise ValueError(f"cannot check: missing column(s) {', '.join(missing)}")
    if "status" not in names:
        frame = frame.with_columns(pl.lit("ok").alias("status"))
    if "finish_reason" not in names:
        frame = frame.with_columns(pl.lit(None, pl.String).alias("finish_reason"))

    frame = frame.with_columns(
        pl.col("rewrite").cast(pl.String).str.strip_chars(PY_WHITESPACE).alias("_rw"),
        pl.col("reference").cast(pl.String).fill_null("").str.strip_chars(PY_WHITESPACE).alias("_ref"),
    )
    rw, ref = pl.col("_rw"), pl.col("_ref")
    check = recipe.check
    instruction = pl.col("instruction") if "instruction" in names else None
    failures = shared_failures(rw, rules, ref, instruction) + check.rule_failures(ref, rw, rules)
    # Each condition becomes a column in one context, so Polars computes a shared
    # part (the reference's last integer, say) once; the reason chain then reads flags.
    flags = [f"_fail{i}" for i in range(len(failures))]
    answers = []
    if keep_answers and check.answer and check.agrees:
        # In the same context as the checks, which extract the same answers: computed once.
        answers = [
            check.answer(ref).alias("reference_answer"),
            pl.when(rw.is_not_null()).then(check.agrees(ref, rw).fill_null(False)).alias("rewrite_agrees"),
        ]
    frame = frame.with_columns(*(failed.alias(flag) for flag, (_, failed) in zip(flags, failures)), *answers)
    reason = _first_failure([(name, pl.col(flag)) for flag, (name, _) in zip(flags, failures)])
    if rules == "strict" and check.strict_check:
        # A Python check (ast.parse, say) runs only on rows that passed everything
        # else (map_elements skips the nulls). Opt-in, so off the hot path.
        name, passes = check.strict_check
        frame = frame.with_columns(reason.alias("reason"))
        ok = pl.when(pl.col("reason") == "accepted").then(rw).otherwise(None).map_elements(passes, return_dtype=pl.Boolean)
        reason = pl.when(ok == False).then(pl.lit(name)).otherwise(pl.col("reason"))  # noqa: E712

    frame = frame.with_columns(reason.alias("reason")).with_columns((pl.col("reason") == "accepted").alias("accepted"))
    return frame.drop("_rw", "_ref", *flags).select(pl.exclude("accepted", "reason"), "accepted", "reason")


def _first_failure(failures: list[tuple[str, pl.Expr]]) -> pl.Expr:
    chain = None
    for name, failed in failures:
        cond = failed.fill_null(True)
        chain = pl.when(cond).then(pl.lit(name)) if chain is None else chain.when(cond).then(pl.lit(name))
    return chain.otherwise(pl.lit("accepted"))


def reason_meanings(recipe: Recipe | None = None) -> dict[str, str]:
    """Reason -> one-line meaning: the built-in ones, plus a custom check's own."""
    out = dict(REASON_MEANINGS)
    if recipe is not None:
        for reason, meaning in recipe.check.reasons:
            out.setdefault(reason, meaning)
    return out


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

    Built-in recipes come from the registry by name, reading the column layout
    the run recorded; a custom recipe is rebuilt from its recorded columns,
    system line and check (a check of your own cannot be rebuilt from a name:
    pass your recipe to check_run).
    """
    try:
        desc = manifest["fingerprint_inputs"]["recipe"]
        name = desc["name"]
    except (KeyError, TypeError):
        raise ValueError("manifest.json has no fingerprint_inputs.recipe.name: not a run made by sdft-data distill") from None
    if name in recipe_names():
        recipe = get_recipe(name)
        layout = desc.get("column_layout")
        return recipe.with_layout(layout) if layout and layout != recipe.layout_name else recipe
    if not desc.get("prompt_column") or not desc.get("response_column"):
        raise UnknownRecipe(f"unknown recipe {name!r} in manifest.json; known recipes: {', '.join(recipe_names())}, custom")
    check = desc.get("check") or "none"
    if check not in builtin_checks():
        raise ValueError(f"recipe {name!r} uses its own check {check!r}, which a manifest cannot rebuild: "
                         "pass the recipe (check_run(run, recipe=...))")
    system = desc.get("distill_system")
    template = next((k for k, v in TEMPLATES.items() if v == system), "using")
    recipe = custom_recipe(
        prompt_column=desc["prompt_column"],
        response_column=desc["response_column"],
        input_column=desc.get("input_column"),
        template=template,
        check=check,
        name=name,
    )
    if system and system != recipe.distill_system:
        recipe = replace(recipe, distill_system=system)
    return recipe


def run_rules(manifest: dict) -> str:
    """The rule set a run was made with (runs from before rule sets: "default")."""
    return (manifest.get("fingerprint_inputs") or {}).get("rules") or "default"


def _generations(run: Path) -> pl.LazyFrame:
    """The last record per row_id (run.generations), with the columns the checks read."""
    if not any((run / "generations").glob("*.parquet")):
        raise ValueError(f"run {run} has no generations yet: run sdft-data distill first")
    return generations(run).select("row_id", "text", "status", "finish_reason")


def build_distilled(
    run_dir: str | os.PathLike, *, rules: str | None = None, strict: bool = False, recipe: Recipe | None = None
) -> tuple[pl.DataFrame, dict]:
    """The checked dataset of a run, in memory: (distilled frame, summary). Writes nothing.

    `rules` defaults to the rule set the run was made with; `strict=True` is
    `rules="strict"`. Rows without a generation record yet are left out and
    counted as `pending`.
    """
    run = Path(run_dir)
    manifest = read_manifest(run)
    recipe = recipe or recipe_from_manifest(manifest)
    rules = check_rules("strict" if strict else (rules or run_rules(manifest)))
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
    to_check = source.select("row_id", recipe.instruction_expr(names), recipe.reference_expr()).join(
        generations, on="row_id", how="inner").select(
        "row_id",
        "instruction",
        "reference",
        pl.when(pl.col("status") == "ok")
        .then(pl.col("text").cast(pl.String).str.strip_chars(PY_WHITESPACE))
        .otherwise(pl.lit(None, pl.String))
        .alias("rewrite"),
        "status",
        "finish_reason",
    )
    checked = check_frame(to_check, recipe, rules=rules).select(
        "row_id", pl.col("reference").alias("original_response"), "rewrite", "accepted", "reason"
    )
    pending = source.join(generations, on="row_id", how="anti").select(pl.len()).collect().item()
    # Counted under every rule set (rejected under strict): how often the model wrote the template's headers.
    leaks = to_check.select(template_leak_expr(pl.col("rewrite")).fill_null(False).sum()).collect().item()
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
    from .gap import join_gap

    distilled = join_gap(run, distilled)  # the seed model's scores of each text, when the run has them
    summary = {
        "rules": rules,
        "strict": rules == "strict",
        "recipe": recipe.name,
        "recipe_version": recipe.version,
        "rows": distilled.height,
        "accepted": int(distilled["accepted"].sum()),
        "pending": int(pending),
        "by_reason": count_reasons(distilled["reason"]),
        "template_leaks": int(leaks or 0),
    }
    return distilled, summary


def check_run(
    run_dir: str | os.PathLike, *, rules: str | None = None, strict: bool = False, recipe: Recipe | None = None
) -> pl.DataFrame:
    """(Re)check a run: write RUN_DIR/distilled.parquet and the manifest's `check` entry.

    Reads manifest.json, source.parquet and generations/ (never modifies them),
    applies `check_frame` with `rules` (default: the run's own rule set), and
    writes distilled.parquet (layout in docs/run-directory.md) and
    manifest.json atomically. `recipe` is needed only for a custom recipe with
    a check of its own. Returns the distilled frame. Raises ValueError on a run
    with no generations or a bad manifest.
    """
    run = Path(run_dir)
    distilled, summary = build_distilled(run, rules=rules, strict=strict, recipe=recipe)
    manifest = read_manifest(run)  # re-read: keep whatever the engine wrote meanwhile
    if summary.get("pending") and "status" in manifest:
        # An engine-made run that is not finished: a distilled.parquet of some of its
        # rows would look complete to train and push. (A hand-built run has no status.)
        total = summary["pending"] + summary.get("rows", 0)
        raise ValueError(
            f"run {run} is unfinished ({manifest['status']}): {summary['pending']} of {total} rows are not generated "
            "yet; run the same `sdft-data distill` command again to finish it (nothing written)"
        )
    path = write_distilled(run, distilled)
    # The table's hash, so that push, train and diff can tell it from one edited, cut or replaced since.
    manifest["check"] = {"checked_at": now(), **summary, "distilled_sha256": file_sha256(path)}
    write_manifest(run, manifest)
    return distilled


# The distilled table's own columns and the types check_run writes them with.
_DISTILLED_TYPES = {"row_id": "integer", "original_response": "text", "rewrite": "text", "accepted": "boolean",
                    "reason": "text"}


def verify_distilled(run_dir: str | os.PathLike, manifest: dict | None = None) -> Path:
    """RUN_DIR/distilled.parquet, once it is known to be the table `sdft-data check` wrote; ValueError otherwise.

    The table is what gets published and trained on, and the manifest (its counts, the card's
    numbers) describes it: a table cut or edited by hand (rows removed, `accepted` flipped), or
    replaced by another file, would be published under a manifest that says otherwise. Checked:
    that it is a readable parquet file, its columns and their types, and its sha256 against the
    one `check` recorded (runs checked before the hash was recorded: its rows, accepted rows and
    reasons against the manifest's counts).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = Path(run_dir)
    manifest = manifest if manifest is not None else read_manifest(run)
    path = run / "distilled.parquet"
    redo = f"run `sdft-data check {run}` to rebuild it from the generations"
    if not path.is_file():
        raise ValueError(f"run {run} has no distilled.parquet: {redo}")
    try:
        schema = pq.read_schema(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
        raise ValueError(f"{path} is not a readable parquet file ({first_line(e)[:120]}): {redo}") from None
    for column, kind in _DISTILLED_TYPES.items():
        if column not in schema.names:
            raise ValueError(f"{path} lacks the column {column!r}: {redo}")
        t = schema.field(column).type
        ok = {"integer": pa.types.is_integer(t), "boolean": pa.types.is_boolean(t),
              "text": pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)}[kind]
        if not ok:
            raise ValueError(f"{path}: column {column!r} holds {t}, not {kind}: the file was changed after "
                             f"`sdft-data check`; {redo}")
    check = manifest.get("check") or {}
    recorded = check.get("distilled_sha256")
    if recorded:
        if file_sha256(path) != recorded:
            raise ValueError(f"{path} is not the table `sdft-data check` wrote (its sha256 differs from the one in "
                             f"manifest.json: edited, cut or replaced since); {redo}")
        return path
    table = pl.scan_parquet(path)
    counts = table.select(pl.len().alias("rows"), pl.col("accepted").sum().alias("accepted")).collect().row(0)
    reasons = count_reasons(table.select("reason").collect()["reason"])
    if counts[0] != check.get("rows") or counts[1] != check.get("accepted") or \
            (check.get("by_reason") is not None and reasons != check["by_reason"]):
        raise ValueError(f"{path} holds {counts[0]:,} rows, {counts[1]:,} accepted, and manifest.json says "
                         f"{check.get('rows')} rows, {check.get('accepted')} accepted: the table was edited after "
                         f"`sdft-data check`; {redo}")
    return path
