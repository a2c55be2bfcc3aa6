"""Training examples from a distilled dataset: the recipe's prompt, then the response and EOS, the loss on those only.

A dataset is named by where it lives:

    org/name@v2          a published version (the Hub, or a local publishing folder with local=DIR)
    runs/gsm8k           a finished run directory (its distilled.parquet)
    data.parquet|.json   a file with the recipe's columns

Both arms of the paper's comparison come from the same rows: `responses="sdft"`
trains on the recipe's response column (the SDFT response), `"original"` on
the `original_response` column that every distilled dataset keeps beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sdft_data import templates
from sdft_data.recipes import Recipe
from sdft_data.source import FILE_BUILDERS

IGNORE_INDEX = -100  # positions the loss skips (the prompt)
RESPONSES = ("sdft", "original")
ORIGINAL_COLUMN = "original_response"


@dataclass
class TrainData:
    """A dataset opened for training, with how it was found (recorded in the train manifest)."""

    spec: str
    kind: str  # "published", "run" or "file"
    rows: object  # datasets.Dataset
    manifest: dict | None  # the distillation run's manifest (published ones carry a `publish` entry)
    revision: str | None = None  # Hub commit sha, local version folder, or the file's sha256

    def describe(self) -> dict:
        manifest = self.manifest or {}
        pub = manifest.get("publish") or {}
        return {
            "spec": self.spec,
            "kind": self.kind,
            "version": pub.get("version"),
            "revision": self.revision,
            "fingerprint": manifest.get("fingerprint"),
            "distilled_sha256": pub.get("distilled_sha256"),
            "rows": self.rows.num_rows,
        }


def open_data(data: str, *, local: str | None = None) -> TrainData:
    """Open any of the forms in the module docstring; ValueError (one line) when it cannot be trained on."""
    import datasets

    path = Path(data)
    if path.is_dir():
        from sdft_data.publish import open_run

        # open_run refuses a run that was never checked or still has rows to generate.
        run = open_run(path)
        return TrainData(data, "run", datasets.Dataset.from_parquet(str(run.distilled)), run.manifest,
                         revision=run.content_sha256)
    if path.is_file():
        from sdft_data.source import file_sha256

        kind = FILE_BUILDERS.get(path.suffix.lower())
        if kind is None:
            raise ValueError(f"cannot read {data}: use a .parquet, .json, .jsonl or .csv file")
        from sdft_data.source import read_local_file

        # One line naming the file and the cause for a 0-byte, broken or empty file.
        return TrainData(data, "file", read_local_file(path, data), None, revision="sha256:" + file_sha256(path))
    if "@" in data or data.count("/") == 1:
        from sdft_data.publish import load, parse_spec, read_version_manifest

        repo, _ = parse_spec(data)
        manifest = read_version_manifest(data, local=local)
        version = (manifest.get("publish") or {}).get("version")
        rows = load(f"{repo}@{version}" if version else data, local=local)
        if local is not None:
            revision = str(Path(local) / repo / "versions" / str(version))
        else:
            from huggingface_hub import HfApi

            revision = HfApi().dataset_info(repo, revision=version).sha
        return TrainData(data, "published", rows, manifest, revision=revision)
    raise ValueError(f"{data} is neither a file, a run directory nor org/name@version")


def load_rows(data: str, *, local: str | None = None):
    """(datasets.Dataset, manifest or None) for any of the forms in the module docstring."""
    opened = open_data(data, local=local)
    return opened.rows, opened.manifest


def response_column(recipe: Recipe, responses: str) -> str:
    if responses not in RESPONSES:
        raise ValueError(f"unknown --responses {responses!r}; choose one of: {', '.join(RESPONSES)}")
    return recipe.response_column if responses == "sdft" else ORIGINAL_COLUMN


def check_columns(column_names: list[str], recipe: Recipe, responses: str, spec: str = "the dataset") -> None:
    """ValueError naming what is missing when the rows lack the recipe's prompt column or the arm's response column."""
    needed = [recipe.prompt_column, response_column(recipe, responses)]
    missing = [c for c in needed if c not in column_names]
    if missing:
        hint = (" (not a distilled dataset: the original arm needs the column sdft-data check writes)"
                if ORIGINAL_COLUMN in missing else "")
        raise ValueError(f"{spec} lacks column(s) {', '.join(missing)} that recipe {recipe.name} needs{hint};"
                         f" columns found: {', '.join(column_names)}")


def train_prompt(recipe: Recipe, instruction: str, tokenizer, fmt: str = "chat", *, evaluation: bool = False,
                 layout: str | None = None) -> str:
    """The prompt the model is trained (or evaluated) with: the recipe's train (or eval) template.

    `layout` picks llama2/llama3 for the paper format of a Llama-family recipe
    (the layout the dataset was distilled in); see sdft_data.templates.
    """
    render = templates.eval_prompt if evaluation else templates.train_prompt
    return render(recipe, instruction, tokenizer, fmt, layout=layout)


def target_eos_id(tokenizer, recipe: Recipe, fmt: str, layout: str | None = None) -> int:
    """The id that ends a training target: the tokenizer's EOS; <|eot_id|> in the paper's Llama-3 layout."""
    text = templates.eos_text(tokenizer, fmt, layout=recipe.paper_layout, override=layout)
    eos = tokenizer.convert_tokens_to_ids(text) if text else None
    if eos is None or eos == tokenizer.unk_token_id:
        raise ValueError("the model's tokenizer has no EOS token: a training target must end with one")
    return eos


@dataclass
class Examples:
    """Tokenized rows for the trainer, and what tokenizing them found."""

    rows: list[dict]  # input_ids and completion_mask (1 on the response and its EOS)
    stats: dict  # rows, examples, truncated, cut_away, prompt_tokens, completion_tokens

    @property
    def lengths(self) -> list[int]:
        return [len(r["input_ids"]) for r in self.rows]


def build_examples(ds, recipe: Recipe, tokenizer, *, fmt: str = "chat", responses: str = "sdft",
                   max_length: int = 1024, layout: str | None = None) -> Examples:
    """input_ids and completion_mask for every row, cut to `max_length` tokens (the paper's cutoff).

    The prompt and the response are tokenized apart, without the tokenizer's own
    special tokens (the rendered prompt carries BOS where its layout has one),
    then joined, as the authors' trainer does; the response is followed by the
    EOS id (templates.training_target's text). A row whose response the cutoff removes entirely is not trained on;
    it is counted in `cut_away`, never dropped silently.
    """
    import polars as pl

    check_columns(ds.column_names, recipe, responses)
    column = response_column(recipe, responses)
    # The authors strip every text field (eval/utils.py strip_dict); the response is used as published.
    frame = pl.from_arrow(ds.data.table).select(
        recipe.instruction_expr(ds.column_names),
        pl.col(column).cast(pl.String).fill_null("").str.strip_chars().alias("response"),
    )
    eos = target_eos_id(tokenizer, recipe, fmt, layout)
    rows, truncated, cut_away, prompt_tokens, completion_tokens = [], 0, 0, 0, 0
    # Tokenizing costs memory by the character: text past what `max_length` tokens can cover is never
    # tokenized (a prompt that long is cut away; a response is cut before, with room to spare).
    chars = max_length * _longest_token(tokenizer)
    for instruction, response in frame.iter_rows():
        if len(instruction) > chars:
            cut_away += 1
            continue
        response = response[: 2 * chars]
        text = train_prompt(recipe, instruction, tokenizer, fmt, layout=layout)
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        answer = tokenizer(response, add_special_tokens=False)["input_ids"] + [eos]
        if len(prompt) >= max_length:
            cut_away += 1
            continue
        truncated += len(prompt) + len(answer) > max_length
        answer = answer[: max_length - len(prompt)]
        rows.append({"input_ids": prompt + answer, "completion_mask": [0] * len(prompt) + [1] * len(answer)})
        prompt_tokens += len(prompt)
        completion_tokens += len(answer)
    stats = {"rows": ds.num_rows, "examples": len(rows), "truncated": truncated, "cut_away": cut_away,
             "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
    if not rows:
        raise ValueError(f"no training example left: the cutoff ({max_length} tokens) cuts away the response"
                         f" of all {ds.num_rows} rows; raise --max-length")
    return Examples(rows, stats)


def _longest_token(tokenizer) -> int:
    """The most characters one token of `tokenizer` stands for (its longest vocabulary entry), at least 1."""
    return max((len(t) for t in tokenizer.get_vocab()), default=1) or 1


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
