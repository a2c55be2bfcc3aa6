"""Recipes: how SDFT treats one task dataset.

A recipe is plain data: where the source lives, which columns hold the
prompt and the response, the paper's distill template and the train/eval
template, which task check applies, and a version. Bump `version` whenever a
template, a normalisation or a check changes, so that runs and published
datasets made with the old behaviour stay distinguishable (the version is part
of every run's fingerprint).

The list below is the whole registry: add a module, add it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import polars as pl

# The paper's system prompts (sail-sg/sdft, src/llmtuner/data/template.py).
ALPACA_SYSTEM = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
DISTILL_USING_SYSTEM = (
    "Below are an instruction that describes a task along with a reference answer. "
    "Using the reference answer as a guide, write your own response."
)
DISTILL_REFER_SYSTEM = (
    "Below are an instruction that describes a task along with a reference answer. "
    "Refer to the reference answer and write your own response."
)
ALPACA_USER = "### Instruction:\n{instruction}\n\n### Response:\n"
ALPACA_DISTILL_USER = "### Instruction:\n{instruction}\n\n### Reference Answer:\n{response}\n\n### Response:\n"

# Check kinds understood by sdft_data.check.
CHECKS = ("none", "math", "function_call", "code")


@dataclass(frozen=True)
class Recipe:
    """One task dataset's SDFT treatment. See the module docstring."""

    name: str
    version: int
    description: str
    # Default source on the Hub.
    source: str
    config: str | None
    split: str
    # Column mapping: the prompt is `prompt_column` joined with `input_column`
    # (when present and non-empty) by a newline, as the authors do.
    prompt_column: str
    response_column: str
    input_column: str | None = None
    # Distill template: a system line and a user turn with {instruction} and
    # {response}; `prefill` starts the assistant turn and the model continues it.
    distill_system: str = DISTILL_USING_SYSTEM
    distill_user: str = ALPACA_DISTILL_USER
    prefill: str = ""
    # Paper's raw-text prompt layout: "alpaca" ({system}\n\n{user}) or "llama2".
    paper_layout: str = "alpaca"
    # Training template (and evaluation system line when it differs).
    train_system: str = ALPACA_SYSTEM
    train_user: str = ALPACA_USER
    eval_system: str | None = None
    check: str = "none"
    license: str | None = None
    task_categories: tuple[str, ...] = ("text-generation",)
    language: tuple[str, ...] = ("en",)
    citation: str = ""
    # Maps the (stripped) source response expression to the reference the model
    # sees, which is also the fallback. A Polars expression, so that rendering,
    # checking and diffing share one vectorised implementation.
    normalize_response: Callable[[pl.Expr], pl.Expr] | None = field(default=None, compare=False)

    def instruction_expr(self, schema_names: list[str] | None = None) -> pl.Expr:
        """The prompt text of each row: instruction, plus the input on a new line when non-empty."""
        text = _text(self.prompt_column)
        if self.input_column and (schema_names is None or self.input_column in schema_names):
            extra = _text(self.input_column)
            text = pl.when(extra != "").then(text + "\n" + extra).otherwise(text)
        return text.alias("instruction")

    def reference_expr(self) -> pl.Expr:
        """The reference response of each row, normalised when the recipe says so."""
        text = _text(self.response_column)
        if self.normalize_response:
            text = self.normalize_response(text)
        return text.alias("reference")

    @property
    def columns(self) -> list[str]:
        return [c for c in (self.prompt_column, self.input_column, self.response_column) if c]

    def describe(self) -> dict:
        """JSON-able description for manifests and cards (no callables)."""
        return {
            "name": self.name,
            "version": self.version,
            "prompt_column": self.prompt_column,
            "input_column": self.input_column,
            "response_column": self.response_column,
            "distill_system": self.distill_system,
            "distill_user": self.distill_user,
            "prefill": self.prefill,
            "paper_layout": self.paper_layout,
            "check": self.check,
            "normalize_response": self.normalize_response.__name__ if self.normalize_response else None,
        }


def _text(column: str) -> pl.Expr:
    # The authors strip every string field before use (eval/utils.py strip_dict).
    return pl.col(column).cast(pl.String).fill_null("").str.strip_chars()


def _all() -> list[Recipe]:
    # Imported here so each recipe module can import the constants above.
    from . import alpaca, dolly, gsm8k, magicoder, openfunctions

    return [alpaca.RECIPE, dolly.RECIPE, gsm8k.RECIPE, magicoder.RECIPE, openfunctions.RECIPE]


def recipe_names() -> list[str]:
    return [r.name for r in _all()]


class UnknownRecipe(ValueError):
    pass


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`; an unknown name lists the known ones."""
    for recipe in _all():
        if recipe.name == name:
            return recipe
    raise UnknownRecipe(f"unknown recipe {name!r}; known recipes: {', '.join(recipe_names())}, custom")


TEMPLATES = {"using": DISTILL_USING_SYSTEM, "refer": DISTILL_REFER_SYSTEM}


def custom_recipe(
    *,
    prompt_column: str,
    response_column: str,
    input_column: str | None = None,
    template: str = "using",
    check: str = "none",
    name: str = "custom",
) -> Recipe:
    """A recipe for any dataset: your columns, the paper's alpaca distill template.

    `template` picks the system line: "using" (alpaca_distill_using, the paper's
    choice for general instruction data) or "refer" (alpaca_distill_refer, for
    code and function calls). `check` is one of CHECKS.
    """
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose one of: {', '.join(TEMPLATES)}")
    if check not in CHECKS:
        raise ValueError(f"unknown check {check!r}; choose one of: {', '.join(CHECKS)}")
    return Recipe(
        name=name,
        version=1,
        description="A custom dataset with the paper's alpaca-style distill template.",
        source="",
        config=None,
        split="train",
        prompt_column=prompt_column,
        input_column=input_column,
        response_column=response_column,
        distill_system=TEMPLATES[template],
        check=check,
    )


__all__ = ["Recipe", "get_recipe", "recipe_names", "custom_recipe", "UnknownRecipe", "replace", "CHECKS"]
