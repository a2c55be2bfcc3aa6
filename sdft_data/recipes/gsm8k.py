"""GSM8K (openai/gsm8k, config main): grade-school math word problems.

Example row: {"question": "A baker makes 24 muffins in the morning and 18 in the afternoon. ...",
"answer": "... so 24 + 18 = <<24+18=42>>42 muffins.\\n#### 42"}
Answers are normalised first (calculator annotations dropped, "#### 72" ->
"The answer is 72."). The distill prompt is the question and the reference
answer in one user turn; the assistant turn is pre-filled with "Great! Let's
think step by step. " and the model continues it. A rewrite passes when its
last integer equals the reference's.
"""

import polars as pl

from . import Recipe

DISTILL_SYSTEM = (
    "You are an expert in math. "
    "Below are a math question and its reference answer. "
    "Refer to the reference answer and write a response that appropriately answers the question."
)
TRAIN_SYSTEM = (
    "You are an expert in math. "
    "Below is a math question. "
    "Write a response that appropriately answers the question."
)
EVAL_SYSTEM = TRAIN_SYSTEM + (
    " Your final answer should be an integer at the end of your response, formatted as: The answer is {answer}."
)

def normalize_gsm8k_answer(answer: pl.Expr) -> pl.Expr:
    """Drop `<<48/2=24>>` annotations; turn the final `#### 72` into `The answer is 72.`.

    Already-normalised answers (as in the authors' copy) pass through unchanged.
    """
    text = answer.str.replace_all(r"<<[^>]*>>", "")
    text = text.str.replace(r"\n?####\s*([^\n]+?)\s*$", "\nThe answer is ${1}.")
    return text.str.strip_chars()


RECIPE = Recipe(
    name="gsm8k",
    version=1,
    description="GSM8K grade-school math, 7473 training problems.",
    source="openai/gsm8k",
    config="main",
    split="train",
    prompt_column="question",
    response_column="answer",
    distill_system=DISTILL_SYSTEM,
    distill_user="{instruction}\n\n{response}",
    prefill="Great! Let's think step by step. ",
    paper_layout="llama2",
    train_system=TRAIN_SYSTEM,
    train_user="{instruction}",
    eval_system=EVAL_SYSTEM,
    check="math",
    license="mit",
    task_categories=("text-generation", "question-answering"),
    citation=(
        "@article{cobbe2021gsm8k,\n  title={Training Verifiers to Solve Math Word Problems},\n"
        "  author={Cobbe, Karl and Kosaraju, Vineet and Bavarian, Mohammad and others},\n"
        "  journal={arXiv preprint arXiv:2110.14168},\n  year={2021}\n}"
    ),
    normalize_response=normalize_gsm8k_answer,
)
