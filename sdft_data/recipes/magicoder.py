"""MagiCoder (ise-uiuc/Magicoder-OSS-Instruct-75K): code instructions.

Example row: {"problem": "You are tasked with implementing a Python function ...",
"solution": "```python\\ndef ...\\n```", "lang": "python", ...}
Distilled with alpaca_distill_refer. The check (the authors' check_magicoder,
eval/eval_magicoder.py): the rewrite holds a ```python fence and starts with
"I have", "Here is" or "I implemented".

    is_correct("", "Here is the code:\\n```python\\nx = 1\\n```")   -> True

Which rows the paper used is not published: the authors' magicoder_train.json
is not in their repository's history as stored, and the paper gives no
count. Their check only accepts ```python fences, so a rewrite of any other
language always falls back: this recipe keeps the Hub's `lang == "python"`
rows by default (`row_filter`; `--lang all` keeps every language), and
`--limit N` takes the first N of those.
A source without a `lang` column (the authors' instruction/output layout)
is read whole.

Rules: the same under `paper` and `default`; `strict` also wants every
```python block to parse (ast).
"""

from __future__ import annotations

import ast
import re
import warnings

import polars as pl

from . import DISTILL_REFER_SYSTEM, Check, ColumnLayout, Recipe

CODE_OPENINGS = ("I have", "Here is", "I implemented")


def is_well_formed(text: str) -> bool:
    """The authors' check_magicoder on one text (stripped first)."""
    answer = text.strip()
    return "```python" in answer and answer.startswith(CODE_OPENINGS)


def is_correct(reference: str, prediction: str) -> bool:
    """Scorer form of the check: the reference plays no part (as in the authors' code)."""
    return is_well_formed(prediction)


def python_blocks_parse(text: str) -> bool:
    """Every ```python block of `text` is valid Python (an unterminated last block counts to the end)."""
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


def well_formed_expr(rewrite: pl.Expr) -> pl.Expr:
    opens_right = pl.any_horizontal([rewrite.str.starts_with(o) for o in CODE_OPENINGS])
    return rewrite.str.contains("```python", literal=True) & opens_right


def _failures(reference: pl.Expr, rewrite: pl.Expr, rules: str) -> list[tuple[str, pl.Expr]]:
    return [("code_format", ~well_formed_expr(rewrite))]


CHECK = Check(
    name="code",
    description="a ```python block and an opening of \"I have\", \"Here is\" or \"I implemented\"",
    reasons=(
        ("code_format", "no ```python block, or an opening other than \"I have\"/\"Here is\"/\"I implemented\""),
        ("code_does_not_parse", "a ```python block does not parse (strict)"),
    ),
    failures=_failures,
    is_correct=is_correct,
    strict_check=("code_does_not_parse", python_blocks_parse),
)

RECIPE = Recipe(
    name="magicoder",
    # v2: Python rows only by default (row_filter); reads the authors' instruction/output layout.
    # v3: the chat format renders the user turn without the raw-text "### Instruction:" scaffolding.
    version=3,
    description="Magicoder OSS-Instruct 75K code problems and solutions (Python rows by default).",
    source="ise-uiuc/Magicoder-OSS-Instruct-75K",
    config=None,
    split="train",
    prompt_column="problem",
    response_column="solution",
    other_layouts=(ColumnLayout("authors", "instruction", "output", "input"),),
    row_filter=("lang", "python"),
    distill_system=DISTILL_REFER_SYSTEM,
    check=CHECK,
    license="mit",
    task_categories=("text-generation",),
    citation=(
        "@article{wei2023magicoder,\n  title={Magicoder: Source Code Is All You Need},\n"
        "  author={Wei, Yuxiang and Wang, Zhe and Liu, Jiawei and Ding, Yifeng and Zhang, Lingming},\n"
        "  journal={arXiv preprint arXiv:2312.02120},\n  year={2023}\n}"
    ),
)
