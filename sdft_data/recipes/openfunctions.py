"""OpenFunctions (Gorilla OpenFunctions): turn an API description and a request into a function call.

Example row: {"instruction": "Construct a function call ... Function to be used: pyarrow.Timestamp ...",
"output": "pyarrow.Timestamp(unit='s')"}
Distilled with alpaca_distill_refer. The check, also the evaluation scorer
(the authors' check_openfunction, eval/eval_openfunction.py): the reference
call `name(args)`, whitespace collapsed, ' -> " and ", " -> ",", occurs in the
standardized rewrite after a word boundary.

    extract_answer("pyarrow.Timestamp(unit='s')")                      -> 'pyarrow.Timestamp(unit="s")'
    is_correct("f(a='1')", "Call it like this: f(a=\\"1\\")")          -> True

The same under every rule set. A reference that is not a call makes the
authors' function raise; here the row falls back (reference_not_a_call).
"""

from __future__ import annotations

import re

import polars as pl

from . import DISTILL_REFER_SYSTEM, PY_WS_RE, Check, Recipe

# The authors' function-call shape: dotted name, "(", anything, the last ")".
CALL_PATTERN = r"([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\((.*)\)"
_CALL_PREFIX_RS = r"^([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*\(.*\))"


def standardize_function_call(s: str) -> str:
    """The authors' standardize_function_call."""
    s = re.sub(r"\s+", " ", s.strip())
    return s.replace("'", '"').replace(", ", ",")


def extract_answer(reference: str) -> str | None:
    """The standardized `name(args)` call at the start of `reference`, None when it is not a call."""
    match = re.match(CALL_PATTERN, standardize_function_call(reference))
    return f"{match.group(1)}({match.group(2)})" if match else None


def is_correct(reference: str, prediction: str) -> bool:
    """The authors' check_openfunction: the reference call occurs in the prediction.

    False (instead of the authors' ValueError) when the reference is not a call.
    """
    match = re.match(CALL_PATTERN, standardize_function_call(reference))
    if not match:
        return False
    name, params = match.groups()
    pattern = r"\b" + re.escape(name) + r"\(" + re.escape(params) + r"\)"
    return re.search(pattern, standardize_function_call(prediction)) is not None


def standardize_call_expr(text: pl.Expr) -> pl.Expr:
    """standardize_function_call as an expression (collapse whitespace, ' -> ", ", " -> ",")."""
    collapsed = text.str.replace_all(PY_WS_RE + "+", " ").str.strip_chars(" ")
    return collapsed.str.replace_all("'", '"', literal=True).str.replace_all(", ", ",", literal=True)


def reference_call_expr(reference: pl.Expr) -> pl.Expr:
    """extract_answer as an expression: the standardized call, null when the reference is not a call."""
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


def _agrees(reference: pl.Expr, rewrite: pl.Expr) -> pl.Expr:
    return call_match_expr(reference_call_expr(reference), rewrite)


def _failures(reference: pl.Expr, rewrite: pl.Expr, rules: str) -> list[tuple[str, pl.Expr]]:
    call = reference_call_expr(reference)
    return [
        ("reference_not_a_call", call.is_null()),
        ("call_mismatch", ~call_match_expr(call, rewrite)),
    ]


CHECK = Check(
    name="function_call",
    description="the reference call name(args), normalised, occurs in the rewrite",
    reasons=(
        ("reference_not_a_call", "the reference is not a function call"),
        ("call_mismatch", "the rewrite does not contain the reference call"),
    ),
    failures=_failures,
    answer=reference_call_expr,
    agrees=_agrees,
    extract_answer=extract_answer,
    is_correct=is_correct,
)

RECIPE = Recipe(
    name="openfunctions",
    # v2: the check moved into this module.
    # v3: the chat format renders the user turn without the raw-text "### Instruction:" scaffolding.
    version=3,
    description="Gorilla OpenFunctions function-call generation.",
    source="gorilla-llm/gorilla-openfunctions-v1",
    config=None,
    split="train",
    prompt_column="instruction",
    input_column="input",
    response_column="output",
    # The authors' openfunction_{train,test}.json: instruction/output (an `input`
    # column, where a source has one, is joined to the instruction).
    layout_name="authors",
    distill_system=DISTILL_REFER_SYSTEM,
    check=CHECK,
    license="apache-2.0",
    task_categories=("text-generation",),
    citation=(
        "@article{patil2023gorilla,\n  title={Gorilla: Large Language Model Connected with Massive APIs},\n"
        "  author={Patil, Shishir G. and Zhang, Tianjun and Wang, Xin and Gonzalez, Joseph E.},\n"
        "  journal={arXiv preprint arXiv:2305.15334},\n  year={2023}\n}"
    ),
)
