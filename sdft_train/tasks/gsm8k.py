"""GSM8K test (1,319 problems): accuracy of the answer's last integer against the reference's.

Example row: {"question": "A baker makes 24 muffins and sells 18. How many are left?",
"answer": "24 - 18 = <<24-18=6>>6\\n#### 6"}
Prompt: the gsm8k recipe's evaluation template (the training system line plus "Your final
answer should be an integer ... The answer is {answer}.", the authors' gsm8k_infer).
Scorer: the gsm8k recipe's own check (the distillation check's code), so an answer counts
here exactly when a rewrite would be accepted there.
"""

from . import Data, Task, hit_rows, load_table, recipe_prompt, recipe_scorer


def load(data_dir: str | None, limit: int | None) -> Data:
    return load_table("gsm8k", data_dir=data_dir, data_file="gsm8k/gsm8k_test.json",
                      file_columns=("question", "answer"), hub=("openai/gsm8k", "main", "test"),
                      hub_columns=("question", "answer"), limit=limit)


def prompt(row: dict, tokenizer, fmt: str, layout: str | None = None) -> str:
    return recipe_prompt("gsm8k", row["input"], tokenizer, fmt, layout)


def score(rows, predictions, ctx):
    is_correct = recipe_scorer("gsm8k")
    return hit_rows(rows, predictions, lambda r, p: is_correct(r["reference"], p))


TASK = Task(name="gsm8k", version=1, description="GSM8K test, accuracy (last integer)", metric="accuracy",
            load=load, prompt=prompt, score=score, hub="openai/gsm8k (main, test)", data_file="gsm8k/gsm8k_test.json")
