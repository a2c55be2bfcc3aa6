"""Training examples from a distilled dataset: the recipe's train template, loss on the response only.

A dataset is named by where it lives:

    org/name@v2          a published version (the Hub, or a local publishing folder with local=DIR)
    runs/gsm8k           a run directory (its distilled.parquet)
    data.parquet|.json   a file with the recipe's columns
"""

from __future__ import annotations

import json
from pathlib import Path

from sdft_data.recipes import Recipe
from sdft_data.source import FILE_BUILDERS
from sdft_data.templates import render_turns

IGNORE_INDEX = -100  # positions the loss skips (the prompt)


def load_rows(data: str, *, local: str | None = None):
    """(datasets.Dataset, manifest or None) for any of the forms in the module docstring."""
    import datasets

    path = Path(data)
    if path.is_dir():
        distilled = path / "distilled.parquet"
        if not distilled.is_file():
            raise ValueError(f"{data} has no distilled.parquet: run sdft-data distill (or check) first")
        manifest = json.loads((path / "manifest.json").read_text()) if (path / "manifest.json").is_file() else None
        return datasets.Dataset.from_parquet(str(distilled)), manifest
    if path.is_file():
        kind = FILE_BUILDERS.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"cannot read {data}: use a .parquet, .json, .jsonl or .csv file")
        return datasets.load_dataset(kind, data_files=str(path), split="train"), None
    if "@" in data or data.count("/") == 1:
        from sdft_data.publish import load, read_version_manifest

        return load(data, local=local), read_version_manifest(data, local=local)
    raise ValueError(f"{data} is neither a file, a run directory nor org/name@version")


def train_prompt(recipe: Recipe, instruction: str, tokenizer, fmt: str = "chat", *, evaluation: bool = False) -> str:
    """The prompt the model is trained (or evaluated) with: the recipe's train template."""
    system = (recipe.eval_system if evaluation and recipe.eval_system else recipe.train_system)
    user = recipe.train_user.format(instruction=instruction)
    return render_turns(system, user, "", tokenizer, fmt, layout=recipe.paper_layout)


def tokenize_examples(ds, recipe: Recipe, tokenizer, *, fmt: str = "chat", max_length: int = 1024) -> list[dict]:
    """input_ids and labels (prompt masked with IGNORE_INDEX) for every row, truncated to max_length."""
    import polars as pl

    frame = pl.from_arrow(ds.data.table).select(recipe.instruction_expr(ds.column_names), recipe.reference_expr())
    eos = tokenizer.eos_token or ""
    examples = []
    for instruction, response in frame.iter_rows():
        prompt = tokenizer(train_prompt(recipe, instruction, tokenizer, fmt), add_special_tokens=False)["input_ids"]
        answer = tokenizer(response + eos, add_special_tokens=False)["input_ids"]
        ids = (prompt + answer)[:max_length]
        labels = ([IGNORE_INDEX] * len(prompt) + answer)[:max_length]
        if any(label != IGNORE_INDEX for label in labels):
            examples.append({"input_ids": ids, "labels": labels})
    if not examples:
        raise ValueError("no training example left: every response was cut off by --max-length")
    return examples
