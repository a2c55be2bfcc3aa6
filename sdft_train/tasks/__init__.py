"""Evaluation tasks: one module each, holding where its data lives, its prompt, its scorer and a version.

A task is plain data plus three functions (the shape of a lighteval task or
nanochat's tasks/gsm8k.py):

    load(data_dir, limit) -> Data        the test rows ({"id", "input", "reference"}) and
                                         how they were found (Hub id + revision, or file + sha256)
    prompt(row, tokenizer, fmt, layout=None) -> str
                                         the rendered prompt (templates.render_turns; `layout`:
                                         --paper-layout for a Llama-family recipe's paper format)
    score(rows, predictions, ctx)        one dict per row with a "score" (1/0 for a hit,
                                         a float for similarity; None when it cannot be scored)

The task's headline is the mean of the row scores. Bump `version` whenever
the data, the prompt or the scorer changes: `compare` refuses to put side by
side results of different versions.

The list in `_all` is the whole registry: add a module, add it there.
Suites name lists of tasks: `paper` (the paper's table) and `quick` (small
and fast, for the tiny default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

# `paper` is the paper's table; `quick` needs no judge, no seed results and no sandbox time.
SUITES = {
    "paper": ("gsm8k", "multiarith", "openfunctions", "humaneval", "advbench", "advbench-jailbreak", "alpacaeval",
              "similarity"),
    "quick": ("gsm8k", "advbench", "advbench-jailbreak"),
    # What a small model registers on (the make chain's real default, SmolLM2-135M): word problems, and how far
    # training moved the model from its seed (drift: local backend, no judge).
    "small": ("gsm8k", "drift"),
    # The toy world (sdft-data toy-world): its target task and the six abilities to keep.
    "toy": ("toy-target", "toy-helpful", "toy-refusal", "toy-refusal-adv", "toy-benign", "toy-arithmetic", "toy-tools",
            "toy-drift"),
}


@dataclass
class Data:
    """A task's test rows and where they came from (recorded in the results, compared by `compare`)."""

    rows: list[dict]  # {"id": int, "input": str, "reference": object}
    source: dict  # kind, id, revision or sha256, rows, limit


@dataclass
class Context:
    """What scorers may need beyond the rows: the output folder, the judge, the seed's answers."""

    out: Path
    model_name: str = "model"
    judge: object = None  # tasks.alpacaeval.Judge
    seed_results: Path | None = None
    embedding_model: str | None = None
    sandbox_limits: object = None  # sandbox.Limits
    seed: int = 0
    sample: int = 0
    notes: list[str] = field(default_factory=list)
    # For the drift tasks, which run the evaluated model and the seed model on the same tokens:
    engine: object = None  # the open backend of the model evaluated (a LocalBackend)
    seed_model: str | None = None  # --seed-model
    train: dict | None = None  # the evaluated model's training record (its base model is the seed)
    fmt: str = "chat"
    layout: str | None = None  # the paper format's layout the prompts were rendered in
    decoding: object = None  # the eval's sdft_data.spec.Decoding
    progress: bool = False
    echo: Callable = print
    # What a scorer records beside its score, spread into its results.json entry (similarity: its
    # embedding model; drift: "details", its seed model and figures).
    records: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """One evaluation task. See the module docstring."""

    name: str
    version: int
    description: str
    metric: str  # what the headline is: accuracy, safe_rate, pass@1, win_rate, similarity
    load: Callable[[str | None, int | None], Data]
    prompt: Callable[..., str]  # (row, tokenizer, fmt, layout=None)
    score: Callable[[list[dict], list[str | None], Context], list[dict]]
    # Where the data lives by default, and where in --data-dir (for messages and docs).
    hub: str | None = None
    data_file: str | None = None
    # Shown x100 in tables (rates); similarity is a cosine.
    percent: bool = True
    # The authors' decoding for this task when the run samples, if not sampling (HumanEval: greedy).
    paper_decoding: str = "sample"
    # Generation runs are shared by tasks with the same key (similarity scores advbench's answers).
    generation_key: str | None = None
    stop: tuple[str, ...] = ()
    # Needs the model's logits, not only its text (drift): the local backend only.
    local_only: bool = False

    @property
    def run_key(self) -> str:
        return self.generation_key or self.name


def _all() -> list[Task]:
    from . import (advbench, advbench_jailbreak, alpacaeval, drift, gsm8k, humaneval, multiarith, openfunctions,
                   similarity, toy)

    return [gsm8k.TASK, multiarith.TASK, openfunctions.TASK, humaneval.TASK, advbench.TASK, advbench_jailbreak.TASK,
            alpacaeval.TASK, similarity.TASK, drift.TASK, *toy.TASKS]


def task_names() -> list[str]:
    return [t.name for t in _all()]


def get_task(name: str) -> Task:
    """The task called `name`; an unknown name lists the known ones."""
    for task in _all():
        if task.name == name:
            return task
    raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(task_names())} (suites: {', '.join(SUITES)})")


def resolve(tasks: str | None, suite: str | None) -> list[Task]:
    """The tasks named by --tasks a,b,c or --suite NAME (exactly one of them)."""
    if bool(tasks) == bool(suite):
        raise ValueError("pass either --tasks a,b,c or --suite " + "|".join(SUITES))
    if suite:
        if suite not in SUITES:
            raise ValueError(f"unknown suite {suite!r}; choose one of: {', '.join(SUITES)}")
        names = SUITES[suite]
    else:
        names = [n.strip() for n in tasks.split(",") if n.strip()]
    out = []
    for name in names:
        task = get_task(name)
        if task not in out:
            out.append(task)
    return out


# --- helpers the task modules share -------------------------------------------------------------

def load_table(
    task: str,
    *,
    data_dir: str | None,
    data_file: str,
    file_columns: tuple[str, str | None],
    hub: tuple[str, str | None, str] | None,
    hub_columns: tuple[str, str | None],
    limit: int | None,
) -> Data:
    """Rows from `data_dir/data_file` (the paper's data folder layout) or else the Hub dataset `hub`.

    `*_columns` name the (input, reference) columns of each layout. A missing
    file or Hub dataset is a ValueError naming what was looked for.
    """
    from sdft_data.source import SourceSpec, open_source

    if data_dir is not None:
        path = Path(data_dir) / data_file
        if not path.is_file():
            raise ValueError(f"{task}: no data file {path} (--data-dir is laid out like the paper's data folder)")
        spec, columns = SourceSpec(str(path)), file_columns
    elif hub is None:
        raise ValueError(f"{task}: no Hub copy in the paper's layout; pass --data-dir DIR with {data_file}")
    else:
        spec, columns = SourceSpec(hub[0], hub[1], hub[2]), hub_columns
    required = [c for c in columns if c]
    try:
        ds, desc = open_source(spec, required=required, limit=limit)
    except ValueError as e:
        raise ValueError(f"{task}: {e}") from None
    desc.pop("format", None)
    inp, ref = columns
    rows = [
        {"id": i, "input": str(r[inp]).strip(), "reference": (str(r[ref]).strip() if ref else None)}
        for i, r in enumerate(ds.select_columns(required))
    ]
    return Data(rows, desc)


def recipe_prompt(recipe_name: str, instruction: str, tokenizer, fmt: str, layout: str | None = None) -> str:
    """The recipe's evaluation prompt (its train template, with the eval system line where it has one)."""
    from sdft_data.recipes import get_recipe

    from ..data import train_prompt

    return train_prompt(get_recipe(recipe_name), instruction, tokenizer, fmt, evaluation=True, layout=layout)


class TaskUnavailable(ValueError):
    """A task cannot be scored here (its embedding model will not load, say): the other tasks still are."""


def recipe_scorer(recipe_name: str) -> Callable[[str, str], bool]:
    """The recipe's own answer check, `is_correct(reference, prediction)`: the distillation check's code."""
    from sdft_data.recipes import get_recipe

    return get_recipe(recipe_name).check.is_correct


def hit_rows(rows: list[dict], predictions: list[str | None], is_hit: Callable[[dict, str], bool]) -> list[dict]:
    """One {"score": 1.0|0.0} per row; a failed generation (None) scores 0."""
    return [{"score": float(bool(p is not None and is_hit(r, p)))} for r, p in zip(rows, predictions)]
