"""GSM8K (openai/gsm8k, config main): grade-school math word problems.

Example row: {"question": "A baker makes 24 muffins in the morning and 18 in the afternoon. ...",
"answer": "... so 24 + 18 = <<24+18=42>>42 muffins.\\n#### 42"}
Answers are normalised first (calculator annotations dropped, "#### 72" ->
"The answer is 72."). The distill prompt is the question and the reference
answer in one user turn; the assistant turn is pre-filled with "Great! Let's
think step by step. " and the model continues it. In the paper's format the
layout follows the model: Llama-2 ([INST], <<SYS>> before BOS) or Llama-3.

The check, also MultiArith's and the evaluation scorer's: the last integer of
the rewrite equals the reference's (the authors' find_last_integer +
check_math, eval/utils.py and eval/eval_math.py).

    extract_answer("So 3 + 4 = 7.\\nThe answer is 7.")   -> 7
    is_correct("The answer is 7.", "I get 7")            -> True

Rules: `paper` accepts a pair where neither side has an integer (the authors
compare int(INVALID) == int(INVALID)); `default` rejects it
(reference_no_answer: a row without an answer proves nothing); `strict` also
wants the rewrite to end with "The answer is N.".
"""

from __future__ import annotations

import re

import polars as pl

from . import Check, Recipe

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
DISTILL_USER = "{instruction}\n\n{response}"
PREFILL = "Great! Let's think step by step. "


def normalize_gsm8k_answer(answer: pl.Expr) -> pl.Expr:
    """Drop `<<48/2=24>>` annotations; turn the final `#### 72` into `The answer is 72.`.

    Already-normalised answers (as in the authors' copy) pass through unchanged.
    """
    text = answer.str.replace_all(r"<<[^>]*>>", "")
    text = text.str.replace(r"\n?####\s*([^\n]+?)\s*$", "\nThe answer is ${1}.")
    return text.str.strip_chars()


# --------------------------------------------------------------------------
# Answer extraction: the authors' find_last_integer, in Python and in Polars

INVALID = "-999999999"  # the authors' "no answer" value; itself an integer, which matters (see is_correct)

# The authors' number pattern (eval/utils.py). Their `[,\s]` also accepts any
# whitespace, newlines included, as a thousands separator ("12 500" is 12500);
# we keep that behaviour. They then delete "," and " " only, so a number joined
# across a newline ("12\n34") stays invalid: int() refuses it.
NUMBER_PATTERN = r"-?\d+(?:[,\s]\d+)*(?:\.\d+)?"
_NUMBER_PATTERN_RS = r"-?\d+(?:[,\s\x1C-\x1F]\d+)*(?:\.\d+)?"
_NUMBER_CHAR = r"[-,.\s\x1C-\x1F\d]"
_LAST_NUMBER_RUN = rf"{_NUMBER_CHAR}*\d{_NUMBER_CHAR}*\D*$"
# Strict form: the paper's evaluation prompt asks for "The answer is N."
ANSWER_FORM_PATTERN = r"The answer is -?\d[\d,]*(?:\.0+)?\.?$"


def find_last_integer(s: str) -> str:
    """The authors' find_last_integer: the last number in `s` as an integer string, or INVALID."""
    numbers = re.findall(NUMBER_PATTERN, s)
    number = numbers[-1].replace(",", "").replace(" ", "") if numbers else INVALID
    if len(number.split(".")) > 1 and int(number.split(".")[1]) != 0:
        return INVALID
    return number.split(".")[0]


def extract_answer(text: str) -> int | None:
    """The last integer of `text` (stripped), None when it has none (no number, a non-zero decimal, or unreadable)."""
    found = find_last_integer(text.strip())
    if found == INVALID:
        return None
    try:
        return int(found)
    except ValueError:
        return None


def is_correct(reference: str, prediction: str) -> bool:
    """The authors' check_math, the scorer of GSM8K and MultiArith: equal last integers.

    As theirs, two texts without any integer compare equal (INVALID == INVALID),
    and a number int() cannot read (digits joined across a newline) is wrong.
    """
    try:
        return int(find_last_integer(reference.strip())) == int(find_last_integer(prediction.strip()))
    except ValueError:
        return False


def _last_number(text: pl.Expr) -> pl.Expr:
    # findall over the whole text is the costly part, and only its last match
    # matters. Characters that no number can contain (anything but digits,
    # "-", ",", "." and whitespace) reset findall's left-to-right scan, so its
    # last match is the last match within the last run of such characters
    # that holds a digit: cut out that run plus the digit-free tail after it
    # (one anchored regex, no capture groups: those cost a second engine),
    # then run findall on that short piece alone.
    run = text.str.extract(_LAST_NUMBER_RUN, 0)
    return run.str.extract_all(_NUMBER_PATTERN_RS).list.last()


def last_integer_expr(text: pl.Expr) -> pl.Expr:
    """extract_answer as an expression: the integer (Int128), null when there is none.

    Known differences from Python's int(), outside any real data we know of:
    numbers beyond Int128 (38 digits) and non-ASCII digits, which Python's
    int() reads, are unreadable here (null); a decimal part written in
    non-ASCII zeros counts as non-zero.
    """
    # The authors delete "," and " " and drop a zero decimal part; what is left
    # is an integer only when no other whitespace joined the digit groups (int()
    # fails on "12\n34") and the decimal part was zero ("3.5" stays unreadable).
    # One replace_all and the cast do both, cheaper than validating the number
    # with a capture group first (capture groups need a slower regex engine).
    return _last_number(text).str.replace_all(r"[, ]|\.0+$", "").cast(pl.Int128, strict=False)


def authors_value_expr(text: pl.Expr) -> pl.Expr:
    """int(find_last_integer(text)) as the authors' check_math sees it: INVALID (-999999999)
    when there is no number or a non-zero decimal part, null where int() raises."""
    number = _last_number(text)
    invalid = number.is_null() | number.str.contains(r"\.\d*[1-9]\d*$")
    whole = number.str.replace(r"\.\d+$", "").str.replace_all(r"[, ]", "").cast(pl.Int128, strict=False)
    return pl.when(invalid).then(pl.lit(int(INVALID), pl.Int128)).otherwise(whole)


def answers_agree_expr(reference: pl.Expr, rewrite: pl.Expr) -> pl.Expr:
    """Both have a last integer and they are equal (no answer on either side: false)."""
    return (last_integer_expr(reference) == last_integer_expr(rewrite)).fill_null(False)


def _failures(reference: pl.Expr, rewrite: pl.Expr, rules: str) -> list[tuple[str, pl.Expr]]:
    if rules == "paper":
        ref, rw = authors_value_expr(reference), authors_value_expr(rewrite)
        return [
            ("reference_no_answer", ref.is_null()),  # int() raised on the reference: the authors reject
            ("wrong_answer", rw.is_null() | (rw != ref)),
        ]
    ref, rw = last_integer_expr(reference), last_integer_expr(rewrite)
    failures = [
        # The authors' int(INVALID) == int(INVALID) accepts a rewrite when
        # neither side has an answer; a row without an answer proves nothing.
        ("reference_no_answer", ref.is_null()),
        ("wrong_answer", rw.is_null() | (rw != ref)),
    ]
    if rules == "strict":
        failures.append(("answer_form", ~rewrite.str.contains(ANSWER_FORM_PATTERN)))
    return failures


CHECK = Check(
    name="math",
    description="the rewrite's last integer equals the reference's",
    reasons=(
        ("reference_no_answer", "the reference has no integer answer to compare with"),
        ("wrong_answer", "the rewrite's last integer differs from the reference's"),
        ("answer_form", "the rewrite does not end with \"The answer is N.\" (strict)"),
    ),
    failures=_failures,
    answer=last_integer_expr,
    agrees=answers_agree_expr,
    extract_answer=extract_answer,
    is_correct=is_correct,
)

RECIPE = Recipe(
    name="gsm8k",
    # v2: the paper format follows the authors' fork byte for byte and the model
    # (Llama-2 or Llama-3); the check moved into this module.
    version=2,
    description="GSM8K grade-school math, 7473 training problems.",
    source="openai/gsm8k",
    config="main",
    split="train",
    # The Hub's columns; the authors' gsm8k_train.json has the same ones (answers already normalised).
    prompt_column="question",
    response_column="answer",
    layout_name="hub/authors",
    distill_system=DISTILL_SYSTEM,
    distill_user=DISTILL_USER,
    chat_distill_user=DISTILL_USER,  # the question and the reference in one turn, in both formats
    prefill=PREFILL,
    paper_layout="llama",
    train_system=TRAIN_SYSTEM,
    train_user="{instruction}",
    chat_train_user="{instruction}",
    eval_system=EVAL_SYSTEM,
    check=CHECK,
    license="mit",
    task_categories=("text-generation", "question-answering"),
    citation=(
        "@article{cobbe2021gsm8k,\n  title={Training Verifiers to Solve Math Word Problems},\n"
        "  author={Cobbe, Karl and Kosaraju, Vineet and Bavarian, Mohammad and others},\n"
        "  journal={arXiv preprint arXiv:2110.14168},\n  year={2021}\n}"
    ),
    normalize_response=normalize_gsm8k_answer,
)
