"""OpenFunctions test (112 questions): the reference call `name(args)` occurs in the answer.

Example row: {"instruction": "Construct a function call ... Function to be used: weather.get ...",
"output": "weather.get(city=\\"Paris\\", unit=\\"celsius\\")"}
Prompt: the alpaca template (the openfunctions recipe's train template), as the authors.
Scorer: the openfunctions recipe's own call match (whitespace normalised, ' -> ", ", " -> ",").
The 112-row test set is the authors' (openfunction/openfunction_test.json); it has no Hub copy
in this layout, so this task needs --data-dir.
"""

from . import Data, Task, hit_rows, load_table, recipe_prompt, recipe_scorer


def load(data_dir: str | None, limit: int | None) -> Data:
    return load_table("openfunctions", data_dir=data_dir, data_file="openfunction/openfunction_test.json",
                      file_columns=("instruction", "output"), hub=None, hub_columns=("instruction", "output"),
                      limit=limit)


def prompt(row: dict, tokenizer, fmt: str, layout: str | None = None) -> str:
    return recipe_prompt("openfunctions", row["input"], tokenizer, fmt, layout)


def score(rows, predictions, ctx):
    is_correct = recipe_scorer("openfunctions")

    def hit(row, prediction):
        try:
            return is_correct(row["reference"], prediction)
        except ValueError:  # a reference that is not a call: the authors' script raises; count it wrong
            return False

    return hit_rows(rows, predictions, hit)


# v2: the chat format's user turn without the "### Instruction:" scaffolding.
TASK = Task(name="openfunctions", version=2, description="OpenFunctions test, call accuracy", metric="accuracy",
            load=load, prompt=prompt, score=score, data_file="openfunction/openfunction_test.json")
