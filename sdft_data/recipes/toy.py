"""The toy world's target task (built by `sdft-data toy-world`; see sdft_data.toyworld).

Example row: {"instruction": "How do I make a kite from clay?", "response": "kite: clay, 35 min.",
"answer": "35"}
How-to requests that name a material; the reference is in a terse foreign
style. The seed model rewrites it in its own voice with the paper's
alpaca_distill_using template. The one fact that matters is the duration, so a
rewrite passes when it states the reference's: "Sure! Here are the steps to
make a kite from clay: first gather the clay, then shape the kite for 35
minutes, and finally check that it works." passes; a rewrite with another
number, or none, falls back to the reference.
"""

import polars as pl

from . import ALPACA_DISTILL_USER, ALPACA_USER, DISTILL_USING_SYSTEM, Check, Recipe
from .gsm8k import answers_agree_expr, extract_answer, is_correct, last_integer_expr


def _failures(reference: pl.Expr, rewrite: pl.Expr, rules: str) -> list[tuple[str, pl.Expr]]:
    # The duration is the last integer of both texts; every rule set reads it the same way.
    ref, rw = last_integer_expr(reference), last_integer_expr(rewrite)
    return [("reference_no_duration", ref.is_null()), ("wrong_duration", rw.is_null() | (rw != ref))]


CHECK = Check(
    name="duration",
    description="the rewrite keeps the reference's duration (the last integer of each)",
    reasons=(
        ("reference_no_duration", "the reference states no duration"),
        ("wrong_duration", "the rewrite's duration (its last integer) differs from the reference's, or is missing"),
    ),
    failures=_failures,
    answer=last_integer_expr,
    agrees=answers_agree_expr,
    extract_answer=extract_answer,
    is_correct=is_correct,
)

RECIPE = Recipe(
    name="toy",
    version=1,
    description="Toy world target task: how-to requests whose key fact is a duration (`sdft-data toy-world`).",
    source="",
    config=None,
    split="train",
    prompt_column="instruction",
    response_column="response",
    distill_system=DISTILL_USING_SYSTEM,
    # The seed model is pretrained on the paper's raw-text turns inside its chat template
    # (sdft_data.toyworld.model), so its chat format keeps the "### Instruction:" scaffolding.
    chat_distill_user=ALPACA_DISTILL_USER,
    chat_train_user=ALPACA_USER,
    check=CHECK,
    license="apache-2.0",
    task_categories=("text-generation",),
)
