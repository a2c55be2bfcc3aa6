"""Checks: the Polars expressions against the authors' Python, the fallback, check_run on a hand-built run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import GSM8K_ROWS
from polars.testing import assert_frame_equal

from sdft_data import check as C
from sdft_data.check import (
    INVALID,
    check_frame,
    check_run,
    find_last_integer,
    last_integer_expr,
    recipe_from_manifest,
)
from sdft_data.cli import main
from sdft_data.recipes import Check, custom_recipe, get_recipe, replace
from sdft_data.recipes import gsm8k as gsm8k_recipe
from sdft_data.recipes import magicoder as magicoder_recipe
from sdft_data.recipes import openfunctions as openfunctions_recipe

# --------------------------------------------------------------------------
# The authors' check functions, verbatim (github sail-sg/sdft at bfb6c25):
# eval/utils.py (find_last_integer, strip_dict), eval/gen_distilled_data.py
# (verify, get_check_func and the acceptance line of get_output_data_list),
# eval/eval_math.py (check_math), eval/eval_openfunction.py
# (standardize_function_call, check_openfunction), eval/eval_magicoder.py
# (contains_keywords, starts_right, check_magicoder). Only the names are
# prefixed with `authors_`, and the imports are at the top of this file.
import re  # noqa: E402


def authors_find_last_integer(s):
    INVALID = "-999999999"
    pattern = r"-?\d+(?:[,\s]\d+)*(?:\.\d+)?"
    numbers = re.findall(pattern, s)
    number = numbers[-1].replace(",", "").replace(" ", "") if numbers else INVALID
    if len(number.split(".")) > 1 and int(number.split(".")[1]) != 0:
        return INVALID
    return number.split(".")[0]


def authors_strip_dict(d):
    for k, v in d.items():
        if isinstance(v, str):
            d[k] = v.strip()


def authors_verify(predict_data):
    ban_set = {
        "reference answer",
        "your response",
        "my response",
        "your own response",
        "now it's your turn"
    }
    for ban in ban_set:
        if ban.lower() in predict_data["predict"].lower():
            return False
    if predict_data["predict"].startswith("Your turn"):
        return False
    return True


def authors_check_math(predict_data):
    ground_truth = authors_find_last_integer(predict_data["label"])
    prediction = predict_data["predict"].strip()
    answer = authors_find_last_integer(prediction)
    try:
        int_ground_truth = int(ground_truth)
        int_answer = int(answer)
        return int_ground_truth == int_answer
    except ValueError:
        return False


def authors_standardize_function_call(function_call):
    function_call = re.sub(r'\s+', ' ', function_call.strip())
    function_call = function_call.replace("'", '"').replace(", ", ",")
    return function_call


def authors_check_openfunction(predict_data):
    reference_answer = predict_data['label']
    reference_answer = authors_standardize_function_call(reference_answer)
    answer = predict_data['predict']
    answer = authors_standardize_function_call(answer)
    match = re.match(r'([a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z_][a-zA-Z0-9_]*)*)\((.*)\)', reference_answer)
    if not match:
        raise ValueError(f"Target function call is not in the correct format.\n{reference_answer}")
    func_name, params = match.groups()
    pattern = r'\b' + re.escape(func_name) + r'\(' + re.escape(params) + r'\)'
    return re.search(pattern, authors_standardize_function_call(answer)) is not None


def authors_contains_keywords(answer):
    keywords = {
        "```python"
    }
    for key in keywords:
        if key in answer:
            return True
    return False


def authors_starts_right(answer):
    start_words = {
        "I have",
        "Here is",
        "I implemented"
    }
    for start_word in start_words:
        if answer.startswith(start_word):
            return True
    return False


def authors_check_magicoder(predict_data):
    reference_answer = predict_data["label"].strip()
    answer = predict_data["predict"].strip()
    if not authors_contains_keywords(answer):
        return False
    if not authors_starts_right(answer):
        return False
    return True


def authors_get_check_func(dataset):
    if "gsm8k" in dataset or "MultiArith" in dataset:
        return authors_check_math
    if "openfunction" in dataset:
        return authors_check_openfunction
    if "magicoder" in dataset:
        return authors_check_magicoder
    return lambda x: True


def authors_accept(dataset, reference, rewrite):
    """get_output_data_list's decision for one row: strip_dict, then verify(...) and check_func(...)."""
    predict_data = {"label": reference, "predict": rewrite}
    authors_strip_dict(predict_data)
    return bool(authors_verify(predict_data) and authors_get_check_func(dataset)(predict_data))
# --------------------------------------------------------------------------


def P(reference, rewrite):  # noqa: N802 - the authors' functions take a prediction record
    return {"label": reference, "predict": rewrite}


GSM8K = get_recipe("gsm8k")
FUNCS = get_recipe("openfunctions")
CODE = get_recipe("magicoder")
ALPACA = get_recipe("alpaca")


def reasons(recipe, references, rewrites, *, strict=False, status=None, finish=None) -> list[str]:
    frame = pl.DataFrame(
        {
            "reference": references,
            "rewrite": rewrites,
            "status": status or ["ok"] * len(rewrites),
            "finish_reason": finish or ["eos_token"] * len(rewrites),
        },
        schema={"reference": pl.String, "rewrite": pl.String, "status": pl.String, "finish_reason": pl.String},
    )
    return check_frame(frame, recipe, strict=strict).collect()["reason"].to_list()


def polars_last_integers(texts: list[str]) -> list[int | None]:
    out = pl.DataFrame({"t": texts}).select(last_integer_expr(pl.col("t")))["t"].to_list()
    return [None if x is None else int(x) for x in out]


def python_last_integer(text: str) -> int | None:
    """The authors' value as check_math sees it: an int, or None where int() fails or INVALID."""
    found = authors_find_last_integer(text)
    if found == INVALID:
        return None
    try:
        return int(found)
    except ValueError:
        return None


# --------------------------------------------------------------------------
# Last integer


@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 72.", "72"),
        ("She earned $1,080 in total. The answer is 1,080.", "1080"),  # thousands separators
        ("It fell to -5 degrees.", "-5"),  # negatives
        ("Each costs 0.5 dollars, 3.00 in all", "3"),  # zero decimal part is an integer
        ("It weighs 2.5 kg", INVALID),  # non-zero decimal part: invalid
        ("no number here", INVALID),  # no number
        ("", INVALID),
        ("A town of 12 500 people", "12500"),  # the authors' regex takes a space as a separator
        ("had 12\n34 more", "12\n34"),  # ...and any whitespace, which int() then refuses
        ("1.5.3", "3"),  # findall restarts after "1.5"
        ("Up 1,2,3.00", "123"),
        ("x = -0", "-0"),
        ("007 agents", "007"),
    ],
)
def test_find_last_integer_golden(text, expected):
    assert authors_find_last_integer(text) == expected
    assert find_last_integer(text) == expected


def test_last_integer_expr_matches_the_authors_on_golden_cases():
    texts = ["The answer is 72.", "$1,080. The answer is 1,080.", "-5 degrees", "3.00 in all", "2.5 kg", "none", "",
             "12 500 people", "12\n34", "1.5.3", "1,2,3.00", "-0", "007", "10\t000", "9" * 38 + " big",
             "answer: 42, not 41.", "12,\n3", "- 5", "--5", "5-", "-5.0", "5.", ".5", "1.0.0"]
    assert polars_last_integers(texts) == [python_last_integer(t) for t in texts]


def test_last_integer_expr_matches_the_authors_on_fuzzed_text():
    # Strings built from the characters the regex cares about, plus words and
    # other whitespace: every path of findall + split + int().
    rng = random.Random(7)
    pieces = ["1", "23", "456", "0", "00", ",", ", ", ".", "-", " ", "\n", "\t", "\u00a0", "\x1c", "apples", "$", "x", "The answer is "]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) for _ in range(4000)]
    texts = [t for t in texts if "999999999" not in t]  # the authors' INVALID sentinel is itself a number
    assert polars_last_integers(texts) == [python_last_integer(t) for t in texts]


def test_numbers_beyond_int128_are_unreadable():
    # Documented limit: Python's int() reads any length; GSM8K answers are far below 38 digits.
    assert python_last_integer("9" * 40) == int("9" * 40)
    assert polars_last_integers(["9" * 40]) == [None]


def test_math_check_matches_authors_check_math():
    rng = random.Random(3)
    references = ["Tom has 3 + 4 = 7 apples.\nThe answer is 7.", "1250 + 750 = 2000.\nThe answer is 2,000.",
                  "It is -3 degrees.\nThe answer is -3.", "10 - 4 = 6\nThe answer is 6."]
    endings = ["The answer is 7.", "The answer is 7.0", "The answer is 7.5", "so 2000", "so 2,000 pens", "2 000",
               "-3", "3", "6 dollars", "six", "", "The answer is 6.\nHope this helps!", "7 apples and 1 pear"]
    pairs = [(rng.choice(references), "Let me think.\n" + rng.choice(endings)) for _ in range(300)]
    refs, rews = zip(*pairs)
    ours = [r == "accepted" for r in reasons(GSM8K, list(refs), list(rews))]
    theirs = [authors_accept("gsm8k", rf, rw) for rf, rw in pairs]
    assert [gsm8k_recipe.is_correct(rf, rw) for rf, rw in pairs] == [authors_check_math(P(rf, rw)) for rf, rw in pairs]
    assert ours == theirs


def test_reference_without_an_answer_is_its_own_reason():
    # The authors' check_math accepts this pair: int(INVALID) == int(INVALID).
    # A rewrite cannot be checked against a reference that has no answer.
    assert authors_check_math(P("no number", "none either")) is True
    assert reasons(GSM8K, ["no number"], ["none either"]) == ["reference_no_answer"]


# --------------------------------------------------------------------------
# The paper's verify()


def test_banned_phrases_match_the_authors_verify():
    texts = ["Here is MY RESPONSE to that.", "As the Reference Answer says", "your own response", "Now it's your turn!",
             "Your turn: solve it", "your turn: lowercase is allowed by the authors", "Fine. Your turn comes later.",
             "A plain answer.", "Your Response", "\u212a is Kelvin", "reſponse with a long s: your reſponse",
             "now it’s your turn (typographic apostrophe)", "  Your turn after spaces"]
    ours = [r == "accepted" for r in reasons(ALPACA, ["ref"] * len(texts), texts)]
    assert ours == [authors_accept("alpaca", "ref", t) for t in texts]
    assert [C.verify(t.strip()) for t in texts] == ours


def test_whitespace_set_is_pythons():
    every = [chr(i) for i in range(0x110000) if not 0xD800 <= i <= 0xDFFF]
    assert set(C.PY_WHITESPACE) == {c for c in every if c.isspace()}


# --------------------------------------------------------------------------
# OpenFunctions


@pytest.mark.parametrize(
    "rewrite, accepted",
    [
        ("pyarrow.Timestamp(unit='s')", True),
        ("Sure! Here is the call:\n```\npyarrow.Timestamp(unit=\"s\")\n```\nIt creates a timestamp.", True),  # text around
        ("pyarrow.Timestamp( unit='s' )", False),  # spaces inside the parentheses change the params
        ("x = pyarrow.Timestamp(unit='s')", True),
        ("mypyarrow.Timestamp(unit='s')", False),  # no word boundary before the name
        ("np.pyarrow.Timestamp(unit='s')", True),  # "." is a boundary, as in the authors' regex
        ("mypyarrow.Timestamp(unit='s') then pyarrow.Timestamp(unit='s')", True),  # a later occurrence counts
        ("pyarrow.Timestamp(unit='ms')", False),
        ("", False),
    ],
)
def test_function_call_golden(rewrite, accepted):
    reference = "pyarrow.Timestamp(unit='s')"
    assert authors_check_openfunction(P(reference, rewrite)) is accepted
    assert openfunctions_recipe.is_correct(reference, rewrite) is accepted
    expected = "accepted" if accepted else ("empty" if not rewrite else "call_mismatch")
    assert reasons(FUNCS, [reference], [rewrite]) == [expected]


def test_function_call_normalises_quotes_commas_and_whitespace():
    reference = "requests.get(url='https://x.org', params={'a': 1},\n   timeout=5)"
    rewrite = 'Use requests.get(url="https://x.org",params={"a": 1},timeout=5) here.'
    assert authors_check_openfunction(P(reference, rewrite))
    assert reasons(FUNCS, [reference], [rewrite]) == ["accepted"]


def test_reference_that_is_not_a_call_does_not_crash():
    reference = "```\nf(x)\n```"
    with pytest.raises(ValueError):
        authors_check_openfunction(P(reference, "f(x)"))
    assert openfunctions_recipe.is_correct(reference, "f(x)") is False
    assert reasons(FUNCS, [reference], ["f(x)"]) == ["reference_not_a_call"]


def test_function_call_check_matches_the_authors_on_fuzzed_rewrites():
    rng = random.Random(11)
    references = ["f(x)", "pkg.mod.fn(a='1', b=2)", "g()", "torch.zeros(3, 4)", "h(x)(y)", "a_b.c(d=[1, 2])"]
    noise = ["", " ", "x", "_", ".", "(", ")", "'", '"', ", ", ",", "\n", "call ", "é", "1"]
    pairs = []
    for _ in range(1500):
        ref = rng.choice(references)
        call = C.standardize_function_call(ref) if rng.random() < 0.5 else ref
        parts = [rng.choice(noise) for _ in range(rng.randint(0, 3))] + [call] * rng.randint(0, 2)
        parts += [rng.choice(noise) for _ in range(rng.randint(0, 3))]
        rng.shuffle(parts)
        pairs.append((ref, "".join(parts)))
    refs, rews = zip(*pairs)
    ours = reasons(FUNCS, list(refs), list(rews))
    theirs = [authors_accept("openfunction", rf, rw) for rf, rw in pairs]
    # Empty rewrites are "empty" for us and a mismatch for the authors: both reject.
    assert [r == "accepted" for r in ours] == theirs


# --------------------------------------------------------------------------
# MagiCoder


@pytest.mark.parametrize(
    "rewrite, accepted",
    [
        ("Here is the implementation:\n```python\ndef f():\n    return 1\n```", True),
        ("I have implemented it.\n```python\nx = 1\n```", True),
        ("I implemented the class below.\n```python\nclass A: pass\n```", True),
        ("  \nHere is the code:\n```python\nx = 1\n```", True),  # stripped first
        ("Sure! Here is the code:\n```python\nx = 1\n```", False),  # wrong opening
        ("Here is the code:\n```\nx = 1\n```", False),  # no python fence
        ("Here is the code:\n```Python\nx = 1\n```", False),  # case-sensitive
        ("here is the code:\n```python\nx = 1\n```", False),
    ],
)
def test_code_format_golden(rewrite, accepted):
    assert authors_check_magicoder(P("ref", rewrite)) is accepted
    assert magicoder_recipe.is_correct("ref", rewrite) is accepted
    assert reasons(CODE, ["ref"], [rewrite]) == ["accepted" if accepted else "code_format"]


def test_strict_code_must_parse():
    good = "Here is the code:\n```python\ndef f(x):\n    return x\n```"
    bad = "Here is the code:\n```python\ndef f(x)\n    return x\n```"
    unterminated = "Here is the code:\n```python\nprint('ok')"
    assert reasons(CODE, ["r"] * 3, [good, bad, unterminated]) == ["accepted"] * 3
    assert reasons(CODE, ["r"] * 3, [good, bad, unterminated], strict=True) == ["accepted", "code_does_not_parse", "accepted"]


def test_strict_math_wants_the_answer_form():
    ref = "3 + 4 = 7\nThe answer is 7."
    rewrites = ["3 + 4 = 7.\nThe answer is 7.", "3 + 4 = 7, so she has 7 apples.", "The answer is 7", "The answer is 1,000."]
    refs = [ref, ref, ref, "The answer is 1,000."]
    assert reasons(GSM8K, refs, rewrites) == ["accepted"] * 4
    assert reasons(GSM8K, refs, rewrites, strict=True) == ["accepted", "answer_form", "accepted", "accepted"]


def test_template_headers_in_a_rewrite_are_counted_and_rejected_under_strict(tmp_path):
    rewrites = ["### Instruction:\nName a color.\n\n### Response:\nRed.", "###Response: Red.",
                "Red.\n\n### Instruction:\nName another color.", "### Notes\nRed is a primary color.", "Red."]
    refs = ["Red."] * len(rewrites)
    assert reasons(ALPACA, refs, rewrites) == ["accepted"] * 5  # the paper's checks and ours let them through
    # ("### Reference Answer:" is already a banned phrase: it says "reference answer".)
    assert reasons(ALPACA, ["Red."], ["### Reference Answer:\nRed."], strict=True) == ["banned_phrase"]
    assert reasons(ALPACA, refs, rewrites, strict=True) == ["template_leak"] * 3 + ["accepted"] * 2
    assert reasons(GSM8K, ["The answer is 7."], ["### Response:\nThe answer is 7."], strict=True) == ["template_leak"]
    assert "(strict)" in C.REASON_MEANINGS["template_leak"]
    # A run's check summary counts them under every rule set (the diff report shows the marker).
    source = [{"instruction": "Name a color.", "input": "", "output": "Red."}] * 3
    shards = [[(0, rewrites[0], "ok", "eos_token"), (1, rewrites[3], "ok", "eos_token"), (2, "Red.", "ok", "eos_token")]]
    run = make_run(tmp_path / "run", recipe=ALPACA, source=source, shards=shards)
    check_run(run)
    check = json.loads((run / "manifest.json").read_text())["check"]
    assert check["template_leaks"] == 1 and check["by_reason"] == {"accepted": 3}
    assert check_run(run, rules="strict")["reason"].to_list() == ["template_leak", "accepted", "accepted"]


# --------------------------------------------------------------------------
# Precedence and the fallback


def test_reason_precedence():
    ref = "The answer is 7."
    rows = [
        ("failed", "length", "Your turn. As the reference answer says, 8", "generation_failed"),
        ("ok", "length", "   ", "empty"),
        ("ok", "length", "As the reference answer says, 8", "truncated"),
        ("ok", "eos_token", "Your turn. As the reference answer says, 8", "banned_phrase"),
        ("ok", "eos_token", "Your turn: the answer is 8", "your_turn"),
        ("ok", "eos_token", "The answer is 8.", "wrong_answer"),
        ("ok", None, "The answer is 7.", "accepted"),
    ]
    status, finish, rewrites, expected = zip(*rows)
    assert reasons(GSM8K, [ref] * len(rows), list(rewrites), status=list(status), finish=list(finish)) == list(expected)


def test_check_frame_keeps_other_columns_and_defaults_status():
    frame = pl.DataFrame({"row_id": [0, 1], "reference": ["a", "b"], "rewrite": ["x", None]})
    out = check_frame(frame.lazy(), ALPACA).collect()
    assert out.columns == ["row_id", "reference", "rewrite", "status", "finish_reason", "accepted", "reason"]
    assert out["reason"].to_list() == ["accepted", "empty"]


def test_check_frame_needs_reference_and_rewrite():
    with pytest.raises(ValueError, match="missing column"):
        check_frame(pl.DataFrame({"reference": ["a"]}), ALPACA)


# --------------------------------------------------------------------------
# check_run on a hand-built run directory (docs/run-directory.md)

GSM8K_SOURCE = GSM8K_ROWS

# Shard 1 and shard 2; row 2 failed first and was re-run; row 5 has no record yet.
GSM8K_GENERATIONS = [
    [
        (0, "Tom starts with 3 and buys 4, so 3 + 4 = 7.\nThe answer is 7.", "ok", "eos_token"),
        (1, "5 * 12 = 61 eggs.\nThe answer is 61.", "ok", "eos_token"),
        (2, None, "failed", None),
    ],
    [
        (2, "  20 * 3 = 60.\nThe answer is 60.  ", "ok", "eos_token"),
        (3, "1250 + 750 = 2,000 pens in total.\nThe answer is 2,000.", "ok", "eos_token"),
        (4, "As the reference answer says, 10 - 4 = 6.\nThe answer is 6.", "ok", "length"),
    ],
]


def make_run(root: Path, recipe=GSM8K, source=GSM8K_SOURCE, shards=GSM8K_GENERATIONS) -> Path:
    """A run directory as `sdft-data distill` leaves it, written by hand."""
    root.mkdir(parents=True, exist_ok=True)
    manifest = {
        "fingerprint": "f" * 64,
        "fingerprint_inputs": {
            "source": {"kind": "file", "id": "small.json", "sha256": "0" * 64},
            "recipe": recipe.describe(),
            "template": {"mode": "chat"},
            "model": {"backend": "local", "model_id": "tiny-llama", "revision": None},
            "generation": {"max_new_tokens": 64, "temperature": 0.95, "top_p": 0.7},
            "seed": 0,
        },
        "sdft_version": "0.1.0",
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
        "counts": {"ok": 4, "failed": 0},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    pl.DataFrame(source).with_row_index("row_id").with_columns(pl.col("row_id").cast(pl.Int64)).write_parquet(
        root / "source.parquet"
    )
    (root / "generations").mkdir(exist_ok=True)
    for i, shard in enumerate(shards, start=1):
        pl.DataFrame(
            {
                "row_id": [r[0] for r in shard],
                "text": [r[1] for r in shard],
                "status": [r[2] for r in shard],
                "finish_reason": [r[3] for r in shard],
                "prompt_tokens": [10] * len(shard),
                "generated_tokens": [5] * len(shard),
                "error": [None if r[2] == "ok" else "timeout" for r in shard],
                "attempts": [1] * len(shard),
                "seed": [r[0] for r in shard],
            },
            schema={"row_id": pl.Int64, "text": pl.String, "status": pl.String, "finish_reason": pl.String,
                    "prompt_tokens": pl.Int64, "generated_tokens": pl.Int64, "error": pl.String,
                    "attempts": pl.Int64, "seed": pl.Int64},
        ).write_parquet(root / "generations" / f"{i:06d}.parquet")
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_check_run_falls_back_and_keeps_reasons(tmp_path):
    run = make_run(tmp_path / "run")
    generations = snapshot(run / "generations")
    distilled = check_run(run)

    expected = pl.DataFrame(
        {
            "question": [r["question"] for r in GSM8K_SOURCE[:5]],
            "answer": [
                "Tom starts with 3 and buys 4, so 3 + 4 = 7.\nThe answer is 7.",
                "5 boxes hold 5 * 12 = 60 eggs.\nThe answer is 60.",  # wrong answer: the normalised reference
                "20 * 3 = 60.\nThe answer is 60.",  # the re-run record wins, stripped
                "1250 + 750 = 2,000 pens in total.\nThe answer is 2,000.",
                "10 - 4 = 6 dollars.\nThe answer is 6.",  # truncated (before its banned phrase)
            ],
            "row_id": [0, 1, 2, 3, 4],
            "original_response": [
                "Tom has 3 + 4 = 7 apples.\nThe answer is 7.",
                "5 boxes hold 5 * 12 = 60 eggs.\nThe answer is 60.",
                "He reads 20 * 3 = 60 pages.\nThe answer is 60.",
                "1250 + 750 = 2000 pens.\nThe answer is 2,000.",
                "10 - 4 = 6 dollars.\nThe answer is 6.",
            ],
            "rewrite": [
                "Tom starts with 3 and buys 4, so 3 + 4 = 7.\nThe answer is 7.",
                "5 * 12 = 61 eggs.\nThe answer is 61.",
                "20 * 3 = 60.\nThe answer is 60.",
                "1250 + 750 = 2,000 pens in total.\nThe answer is 2,000.",
                "As the reference answer says, 10 - 4 = 6.\nThe answer is 6.",
            ],
            "accepted": [True, False, True, True, False],
            "reason": ["accepted", "wrong_answer", "accepted", "accepted", "truncated"],
        },
        schema_overrides={"row_id": pl.Int64},
    )
    assert_frame_equal(distilled, expected)
    assert_frame_equal(pl.read_parquet(run / "distilled.parquet"), expected)

    manifest = json.loads((run / "manifest.json").read_text())
    check = manifest["check"]
    assert check["strict"] is False
    assert (check["rows"], check["accepted"], check["pending"]) == (5, 3, 1)
    assert check["by_reason"] == {"truncated": 1, "wrong_answer": 1, "accepted": 3}
    assert manifest["fingerprint"] == "f" * 64  # the rest of the manifest is kept
    assert manifest["updated_at"] == check["checked_at"]
    assert snapshot(run / "generations") == generations  # never touched
    assert not list(run.glob(".*tmp"))


def test_recheck_strict_is_recorded(tmp_path):
    run = make_run(tmp_path / "run")
    check_run(run)
    distilled = check_run(run, strict=True)
    # "2,000 pens in total.\nThe answer is 2,000." keeps the form; all accepted rows do here.
    assert distilled["reason"].to_list() == ["accepted", "wrong_answer", "accepted", "accepted", "truncated"]
    assert json.loads((run / "manifest.json").read_text())["check"]["strict"] is True


def test_run_with_no_generations(tmp_path):
    run = make_run(tmp_path / "run", shards=[])
    with pytest.raises(ValueError, match="no generations yet"):
        check_run(run)
    assert not (run / "distilled.parquet").exists()


def test_not_a_run_directory(tmp_path):
    with pytest.raises(ValueError, match="no manifest.json"):
        check_run(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        check_run(tmp_path / "missing")


def test_unknown_recipe_in_manifest(tmp_path):
    run = make_run(tmp_path / "run")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["fingerprint_inputs"]["recipe"] = {"name": "nope", "version": 1}
    (run / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        check_run(run)


def test_source_missing_a_recipe_column(tmp_path):
    run = make_run(tmp_path / "run", source=[{"question": "q", "solution": "s"}], shards=[[(0, "x", "ok", "eos_token")]])
    with pytest.raises(ValueError, match="lacks column"):
        check_run(run)


def test_recipe_from_manifest_rebuilds_custom_recipes():
    recipe = custom_recipe(prompt_column="q", response_column="a", template="refer", check="function_call", name="mine")
    rebuilt = recipe_from_manifest({"fingerprint_inputs": {"recipe": recipe.describe()}})
    assert rebuilt == recipe
    assert recipe_from_manifest({"fingerprint_inputs": {"recipe": GSM8K.describe()}}) is GSM8K
    with pytest.raises(ValueError, match="fingerprint_inputs"):
        recipe_from_manifest({})


def test_cli_check(tmp_path):
    run = make_run(tmp_path / "run")
    result = CliRunner().invoke(main, ["check", str(run)])
    assert result.exit_code == 0, result.output
    assert "5 rows checked: 3 rewrites accepted, 2 fell back" in result.output
    assert "wrong_answer" in result.output


def test_cli_check_bad_input_is_one_line(tmp_path):
    run = make_run(tmp_path / "run", shards=[])
    result = CliRunner().invoke(main, ["check", str(run)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: run {run} has no generations yet: run sdft-data distill first"]
    assert sorted(p.name for p in run.iterdir()) == ["generations", "manifest.json", "source.parquet"]


def test_source_columns_named_like_the_check_columns(tmp_path):
    # A custom dataset whose columns are called "status" and "reference".
    recipe = custom_recipe(prompt_column="status", response_column="reference", check="math")
    source = [{"status": "2+2?", "reference": "It is 4."}, {"status": "3+3?", "reference": "It is 6."}]
    run = make_run(tmp_path / "run", recipe=recipe, source=source,
                   shards=[[(0, "Two and two: 4.", "ok", "eos_token"), (1, "It is 7.", "ok", "eos_token")]])
    distilled = check_run(run)
    assert distilled.columns == ["status", "reference", "row_id", "original_response", "rewrite", "accepted", "reason"]
    assert distilled["reference"].to_list() == ["Two and two: 4.", "It is 6."]
    assert distilled["reason"].to_list() == ["accepted", "wrong_answer"]


# --------------------------------------------------------------------------
# Rule sets: `paper` is the authors' acceptance exactly; `default` differs only where listed

PAPER_CASES = {
    # dataset name as the authors' get_check_func reads it -> (recipe, [(reference, rewrite, finish_reason)])
    "gsm8k": (GSM8K, [
        ("3 + 4 = 7\nThe answer is 7.", "So 7 apples.\nThe answer is 7.", "eos_token"),
        ("3 + 4 = 7\nThe answer is 7.", "So 8.", "eos_token"),
        ("no number at all", "none here either", "eos_token"),  # no integer on either side: the authors accept
        ("no number at all", "but 5 here", "eos_token"),
        ("It is 2.5 kg", "It is 3.5 kg", "eos_token"),  # two non-zero decimals: both INVALID, accepted
        ("The answer is 7.", "The answer is 7.", "length"),  # truncated: the authors keep it
        ("The answer is 7.", "", "eos_token"),  # empty
        ("The answer is 12\n34", "The answer is 1234", "eos_token"),  # int() refuses the reference
        ("no number", "The answer is -999999999", "eos_token"),  # the authors' sentinel
        ("The answer is 7.", "As the reference answer says, 7.", "eos_token"),
        ("The answer is 7.", "Your turn: 7", "eos_token"),
        ("The answer is 1,000.", "so 1 000", "eos_token"),
        ("The answer is 7.", "  The answer is 7.0  ", "length"),
    ]),
    "alpaca": (ALPACA, [
        ("Red.", "Red is a primary color.", "eos_token"),
        ("Red.", "", "eos_token"),  # the authors would train on an empty response
        ("Red.", "Red, blue and", "length"),
        ("Red.", "My response: red.", "eos_token"),
    ]),
    "openfunction": (FUNCS, [
        ("f(a='1')", 'Call f(a="1").', "eos_token"),
        ("f(a='1')", "f(a='2')", "eos_token"),
        ("f(a='1')", "f(a='1')", "length"),
        ("f(a='1')", "", "eos_token"),
    ]),
    "magicoder": (CODE, [
        ("x", "Here is it:\n```python\nx = 1\n```", "eos_token"),
        ("x", "Here is it:\n```python\nx = (", "length"),
        ("x", "Sure:\n```python\nx = 1\n```", "eos_token"),
    ]),
}


def _frame(rows):
    refs, rws, finish = zip(*rows)
    return pl.DataFrame({"reference": refs, "rewrite": rws, "finish_reason": finish})


@pytest.mark.parametrize("dataset", list(PAPER_CASES))
def test_paper_rules_agree_with_the_authors_code(dataset):
    recipe, rows = PAPER_CASES[dataset]
    ours = check_frame(_frame(rows), recipe, rules="paper").collect()["accepted"].to_list()
    assert ours == [authors_accept(dataset, ref, rw) for ref, rw, _ in rows]


def test_paper_rules_agree_on_fuzzed_math():
    rng = random.Random(5)
    pieces = ["1", "23", "7", "0", ",", ".", ".5", "-", " ", "\n", "apples", "The answer is ", "none", "999999999"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 8))) for _ in range(3000)]
    rows = [(rng.choice(texts), rng.choice(texts), rng.choice(["eos_token", "length"])) for _ in range(3000)]
    ours = check_frame(_frame(rows), GSM8K, rules="paper").collect()["accepted"].to_list()
    assert ours == [authors_accept("gsm8k", ref, rw) for ref, rw, _ in rows]
    # The scorer the evaluation uses is the same rule.
    assert [gsm8k_recipe.is_correct(ref, rw) for ref, rw, _ in rows] == [authors_check_math(P(ref, rw)) for ref, rw, _ in rows]


def test_default_rules_differ_from_paper_only_where_listed():
    for dataset, (recipe, rows) in PAPER_CASES.items():
        paper = check_frame(_frame(rows), recipe, rules="paper").collect()
        ours = check_frame(_frame(rows), recipe).collect()
        for p_ok, reason in zip(paper["accepted"], ours["reason"]):
            if p_ok and reason != "accepted":
                # Everything the paper accepts and we do not has one of the listed reasons.
                assert reason in ("truncated", "empty", "reference_no_answer"), (dataset, reason)
        # And nothing the paper rejects is accepted by the default rules.
        assert not any(o and not p for o, p in zip(ours["accepted"], paper["accepted"]))
    reasons_ = check_frame(_frame(PAPER_CASES["gsm8k"][1]), GSM8K).collect()["reason"].to_list()
    assert {"truncated", "empty", "reference_no_answer"} <= set(reasons_)


def test_unknown_rule_set():
    with pytest.raises(ValueError, match="unknown rule set 'lenient'"):
        check_frame(pl.DataFrame({"reference": ["a"], "rewrite": ["b"]}), ALPACA, rules="lenient")


def test_check_run_uses_the_runs_rule_set_and_records_it(tmp_path):
    run = make_run(tmp_path / "run")
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["fingerprint_inputs"]["rules"] = "paper"
    (run / "manifest.json").write_text(json.dumps(manifest))
    distilled = check_run(run)
    # Row 4 was cut at max_new_tokens and mentions the reference answer: banned under paper rules too.
    assert distilled["reason"].to_list() == ["accepted", "wrong_answer", "accepted", "accepted", "banned_phrase"]
    assert json.loads((run / "manifest.json").read_text())["check"]["rules"] == "paper"
    check_run(run, rules="default")
    assert json.loads((run / "manifest.json").read_text())["check"]["rules"] == "default"


def test_a_custom_recipe_brings_its_own_check(tmp_path):
    # Accept a rewrite only when it is shorter than the reference.
    shorter = Check(
        name="shorter",
        description="the rewrite is shorter than the reference",
        reasons=(("too_long", "the rewrite is not shorter than the reference"),),
        failures=lambda ref, rw, rules: [("too_long", rw.str.len_chars() >= ref.str.len_chars())],
    )
    recipe = replace(custom_recipe(prompt_column="q", response_column="a"), check=shorter)
    frame = pl.DataFrame({"reference": ["a long answer", "short"], "rewrite": ["brief", "much longer now"]})
    assert check_frame(frame, recipe).collect()["reason"].to_list() == ["accepted", "too_long"]
    assert C.reason_meanings(recipe)["too_long"] == "the rewrite is not shorter than the reference"
    run = make_run(tmp_path / "run", recipe=recipe, source=[{"q": "?", "a": "a long answer"}],
                   shards=[[(0, "brief", "ok", "eos_token")]])
    with pytest.raises(ValueError, match="its own check 'shorter'"):
        check_run(run)
    assert check_run(run, recipe=recipe)["reason"].to_list() == ["accepted"]


def test_recipes_expose_their_scorers():
    assert gsm8k_recipe.extract_answer("So 3 + 4 = 7.\nThe answer is 7.") == 7
    assert gsm8k_recipe.extract_answer("It weighs 2.5 kg") is None
    assert GSM8K.check.is_correct("The answer is 1,000.", "so 1000") is True
    assert openfunctions_recipe.extract_answer("pyarrow.Timestamp(unit='s')") == 'pyarrow.Timestamp(unit="s")'
    assert FUNCS.check.is_correct("f(a='1')", 'Use f(a="1") here') is True
    assert CODE.check.is_correct("", "Here is it:\n```python\nx = 1\n```") is True
