"""Diff: stats known by hand, inferred verdicts, version diffs, the report files and bad input."""

from __future__ import annotations

import json
import random

import polars as pl
import pytest
from click.testing import CliRunner
from test_check import GSM8K_GENERATIONS, make_run

from sdft_data import diff as D
from sdft_data.check import check_run
from sdft_data.cli import main
from sdft_data.recipes import get_recipe

GSM8K = get_recipe("gsm8k")
ALPACA = get_recipe("alpaca")

STATS_KEYS = {
    "schema", "inputs", "recipe", "tokenizer", "rows", "accepted", "fallback", "rewrite_rate", "identical_rewrites",
    "reasons_inferred", "by_reason", "recheck", "alignment", "length", "similarity", "answer_agreement", "wording",
    "against",
}


def toolkit_frame() -> pl.DataFrame:
    """Four rows of a distilled.parquet whose statistics are worked out by hand below."""
    return pl.DataFrame(
        {
            "question": ["q0", "q1", "q2", "q3"],
            "answer": ["a b c d 7", "x 60", "z 6", "w 2"],
            "row_id": [0, 1, 2, 3],
            "original_response": ["a b c 7", "x 60", "z 6", "w 2"],
            "rewrite": ["a b c d 7", "y 61", None, "w 2"],
            "accepted": [True, False, False, True],
            "reason": ["accepted", "wrong_answer", "generation_failed", "accepted"],
        }
    )


def test_stats_known_by_hand():
    per_row = D.diff_frame(None, toolkit_frame(), GSM8K)
    assert per_row["final_chars"].to_list() == [9, 4, 3, 3]
    assert per_row["rewrite_agrees"].to_list() == [True, False, None, True]

    stats = D.summarize(per_row, GSM8K)
    assert set(stats) == STATS_KEYS
    assert (stats["rows"], stats["accepted"], stats["fallback"], stats["rewrite_rate"]) == (4, 2, 2, 0.5)
    assert stats["identical_rewrites"] == 1
    assert stats["by_reason"] == {"generation_failed": 1, "wrong_answer": 1, "accepted": 2}  # precedence order
    assert stats["reasons_inferred"] is False and stats["recheck"] is None

    chars, words = stats["length"]["chars"], stats["length"]["words"]
    # original chars 7, 4, 3, 3; rewrite 9, 4 (row 2 has none), 3; final 9, 4, 3, 3
    assert chars["original"] == {"rows": 4, "mean": 4.25, "median": 3.5, "p10": 3.0, "p90": 6.1, "max": 7.0}
    assert chars["rewrite"]["rows"] == 3 and chars["rewrite"]["mean"] == pytest.approx(16 / 3, abs=1e-4)
    assert chars["final"]["mean"] == 4.75
    assert (words["original"]["mean"], words["rewrite"]["mean"], words["final"]["mean"]) == (2.5, 3.0, 2.75)
    assert words["sampled_rows"] is None
    assert sum(chars["histogram"]["original"]) == 4 and sum(chars["histogram"]["rewrite"]) == 3

    sim = stats["similarity"]
    assert (sim["rows"], sim["sampled"]) == (3, 3)
    # ROUGE-L F1: "a b c 7" vs "a b c d 7": LCS 4, P 4/5, R 1 -> 8/9; "x 60" vs "y 61": 0; identical: 1.
    assert sim["rouge_l_f1"]["mean"] == pytest.approx((8 / 9 + 0 + 1) / 3, abs=1e-4)
    # word sets: 4/5, 0, 1
    assert sim["word_jaccard"]["mean"] == pytest.approx(0.6, abs=1e-4)

    agreement = stats["answer_agreement"]
    assert agreement["kind"] == "last_integer"
    assert agreement["rewrite"] == {"rows": 3, "agree": 2, "rate": pytest.approx(2 / 3, abs=1e-6)}
    assert agreement["final"] == {"rows": 4, "agree": 4, "rate": 1.0}


def test_answers_kept_by_check_frame_give_the_same_stats():
    from sdft_data.check import check_frame

    frame = pl.DataFrame({"reference": ["a b c 7", "x 60", "w 2"], "rewrite": ["a b c d 7", "y 61", "w 2"]})
    checked = check_frame(frame, GSM8K, keep_answers=True).with_columns(
        pl.when(pl.col("accepted")).then(pl.col("rewrite")).otherwise(pl.col("reference")).alias("answer"),
        pl.col("reference").alias("original_response"),
    )
    fast = D.summarize(D.diff_lazy(None, checked, GSM8K), GSM8K)
    slow = D.summarize(D.diff_lazy(None, checked.drop("reference_answer", "rewrite_agrees"), GSM8K), GSM8K)
    assert fast == slow
    assert fast["answer_agreement"]["rewrite"]["agree"] == 2


def test_tokens_with_a_tokenizer():
    class SpaceTokenizer:
        def __call__(self, texts, add_special_tokens=False):
            return {"input_ids": [t.split(" ") for t in texts]}

    per_row = D.diff_frame(None, toolkit_frame(), GSM8K, tokenizer=SpaceTokenizer())
    assert per_row["original_tokens"].to_list() == [4, 2, 2, 2]
    assert per_row["rewrite_tokens"].to_list() == [5, 2, None, 2]
    stats = D.summarize(per_row, GSM8K, tokenizer=SpaceTokenizer(), tokenizer_name="space")
    assert stats["length"]["tokens"]["final"]["mean"] == 2.75
    assert stats["tokenizer"] == "space"


def test_large_inputs_sample_words_and_similarity_but_count_everything():
    n = 2000
    frame = pl.DataFrame(
        {
            "answer": [f"word {i} and more" for i in range(n)],
            "original_response": [f"orig {i}" for i in range(n)],
            "rewrite": [f"word {i} and more" for i in range(n)],
            "accepted": [True] * n,
            "reason": ["accepted"] * n,
            "question": ["q"] * n,
        }
    )
    stats = D.summarize(D.diff_lazy(None, frame, GSM8K), GSM8K, length_sample=200, similarity_sample=50)
    assert stats["length"]["chars"]["original"]["rows"] == n and stats["length"]["chars"]["sampled_rows"] is None
    sampled = stats["length"]["words"]["sampled_rows"]
    assert 100 < sampled < 300 and stats["length"]["words"]["original"]["rows"] == sampled
    assert stats["length"]["words"]["final"]["mean"] == 4.0  # every final has four words, sampled or not
    assert (stats["similarity"]["rows"], stats["similarity"]["sampled"]) == (n, 50)
    assert stats["accepted"] == n


# --------------------------------------------------------------------------
# ROUGE-L and Jaccard


def lcs_dp(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def test_bit_parallel_lcs_matches_dynamic_programming():
    rng = random.Random(5)
    for _ in range(500):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 30))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 90))]  # > 64 tokens: several machine words
        assert D.lcs_length(a, b) == lcs_dp(a, b)


def test_rouge_l_and_jaccard_by_hand():
    assert D.rouge_l_f1("The cat sat.", "the cat ate") == pytest.approx(2 / 3)
    assert D.rouge_l_f1("abc", "") == 0.0
    assert D.word_jaccard("the cat sat", "The cat ate") == pytest.approx(2 / 4)
    assert D.word_jaccard("", "") == 1.0


# --------------------------------------------------------------------------
# Words and tokens by script: each CJK character is a word (Chinese and Japanese put no spaces between words)


def word_counts(texts: list[str]) -> list[int]:
    from sdft_data.diff.text import word_count

    return pl.DataFrame({"t": texts}).select(word_count(pl.col("t")))["t"].to_list()


def test_words_are_split_by_script():
    # Chinese, Japanese kana and kanji, Korean (syllables), mixed with Latin; punctuation stays with its character.
    assert word_counts(["我今天很高兴。", "私はコーヒーが好きです。", "나는 학교에 갔다", "用Python写代码", "Hello, world! 3.5 km."]) \
        == [6, 11, 7, 5, 4]
    assert D.tokens("我今天很高兴。") == ["我", "今", "天", "很", "高", "兴"]
    assert D.tokens("私はコーヒーが好き") == ["私", "は", "コ", "ー", "ヒ", "ー", "が", "好", "き"]
    assert D.tokens("나는 학교에") == ["나", "는", "학", "교", "에"]
    assert D.tokens("用Python写代码, v2!") == ["用", "python", "写", "代", "码", "v2"]
    assert D.tokens("It's 3.5 km.") == ["it", "s", "3", "5", "km"]  # other scripts as before: \w+ runs


def test_rouge_l_of_near_identical_cjk_texts():
    # One character inserted: 6 of 7 characters in common (the whole sentence was one token: ROUGE-L 0).
    assert D.rouge_l_f1("我喜欢吃苹果", "我很喜欢吃苹果") == pytest.approx(12 / 13)
    assert D.rouge_l_f1("私は紅茶が好きです", "私はコーヒーが好きです") == pytest.approx(2 * 7 / (9 + 11))
    # Korean: one ending changed; 6 syllables in common, 7 and 8 in all.
    assert D.rouge_l_f1("나는 학교에 갔다", "나는 학교에 갔어요") == pytest.approx(2 * 6 / (7 + 8))
    assert D.word_jaccard("我喜欢苹果", "我喜欢香蕉") == pytest.approx(3 / 7)
    frame = pl.DataFrame({"question": ["q"], "answer": ["我很喜欢吃苹果"], "row_id": [0], "original_response": ["我喜欢吃苹果"],
                          "rewrite": ["我很喜欢吃苹果"], "accepted": [True], "reason": ["accepted"]})
    stats = D.summarize(D.diff_lazy(None, frame, GSM8K), GSM8K)
    assert stats["similarity"]["rouge_l_f1"]["mean"] == pytest.approx(12 / 13, abs=1e-4)
    assert (stats["length"]["words"]["original"]["mean"], stats["length"]["words"]["rewrite"]["mean"]) == (6.0, 7.0)


def test_cjk_wording_openings_and_ngrams():
    from sdft_data.diff.wording import ngram_shift, openings

    n = 12
    frame = pl.DataFrame({"row_id": list(range(n)), "original": [f"答案是{i}。" for i in range(n)],
                          "rewrite": [f"当然！答案是{i}。" for i in range(n)]})
    assert openings(frame)["rewrite"][0] == {"phrase": "当然！答", "rows": n, "share": 1.0}
    shift = ngram_shift(frame, min_rows=5)
    over = {g["ngram"] for part in shift["by_n"].values() for g in part["over"]}
    assert {"当", "然", "！", "当 然", "然 ！", "当 然 ！", "！ 答 案"} <= over
    assert not any("答 案 是" in g["ngram"] for part in shift["by_n"].values() for g in part["over"] + part["under"])


def test_ngram_counts_match_counting_sets_in_python():
    from sdft_data.diff.text import ngram_tokens
    from sdft_data.diff.wording import _decode, _document_ngrams

    rng = random.Random(3)
    words = ["the", "a", "cat", "##", ":", "猫", "の", "고", "2", "x"]
    original = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(60)]
    rewrite = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(60)]
    counts, vocab = _document_ngrams(pl.Series(original), pl.Series(rewrite), 3)
    ours = {(g, side): c for g, o, r in _decode(counts, vocab).select("ngram", "original_rows", "rewrite_rows").iter_rows()
            for side, c in (("original", o), ("rewrite", r)) if c}
    expected: dict = {}
    for side, texts in (("original", original), ("rewrite", rewrite)):
        for toks in pl.DataFrame({"t": texts}).select(ngram_tokens(pl.col("t")))["t"].to_list():
            grams = {" ".join(toks[i:i + n]) for n in (1, 2, 3) for i in range(len(toks) - n + 1)}
            for g in grams:
                expected[(g, side)] = expected.get((g, side), 0) + 1
    assert ours == expected
    assert _document_ngrams(pl.Series(["  ", None]), pl.Series(["", "\t"]), 3)[0].height == 0  # no token at all
    with pytest.raises(ValueError, match="distinct tokens are too many"):
        _document_ngrams(pl.Series([" ".join(str(i) for i in range(100))]), pl.Series(["x"]), 10)


# --------------------------------------------------------------------------
# Two datasets without verdicts (like the authors' distilled_alpaca.json)

ORIGINAL = [
    {"instruction": "Name a primary color.", "input": "", "output": "Red."},
    {"instruction": "Translate the sentence into French.", "input": "Good morning.", "output": "Bonjour."},
    {"instruction": "Give a tip for staying healthy.", "input": "", "output": "Sleep well."},
    {"instruction": "Say hi.", "input": "", "output": "Hi."},
]
DISTILLED = [
    {"instruction": "Name a primary color.", "input": "", "output": "Red."},
    {"instruction": "Translate the sentence into French.", "input": "Good morning.", "output": "The French is: Bonjour."},
    {"instruction": "Give a tip for staying healthy.", "input": "", "output": "As the reference answer says, sleep well."},
    {"instruction": "Say hi.", "input": "", "output": "  Hi.\n"},
]


def write_json(path, rows):
    path.write_text(json.dumps(rows, indent=2))
    return path


def test_inferred_verdicts_and_recheck(tmp_path):
    original = write_json(tmp_path / "train.json", ORIGINAL)
    distilled = tmp_path / "distilled.jsonl"
    distilled.write_text("".join(json.dumps(r) + "\n" for r in DISTILLED))
    out = tmp_path / "report"
    stats = D.diff_files(str(original), str(distilled), ALPACA, out)

    assert stats["reasons_inferred"] is True
    assert stats["by_reason"] == {"kept": 2, "rewritten": 2}
    assert (stats["accepted"], stats["fallback"]) == (2, 2)
    assert stats["recheck"] == {"rows": 2, "passed": 1, "pass_rate": 0.5, "by_reason": {"banned_phrase": 1, "accepted": 1}}
    assert stats["alignment"]["instruction_mismatches"] == 0
    assert stats["answer_agreement"] is None
    assert stats["inputs"] == {"original": "train.json", "distilled": "distilled.jsonl"}

    plots = ["lengths", "markers", "reasons", "similarity"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        [f"{p}.{fmt}" for p in plots for fmt in ("pdf", "png")] + ["report.md", "stats.json"]
        + [f"tables/{t}.tex" for t in ("lengths", "markers", "ngrams", "openings", "outcome")])
    assert json.loads((out / "stats.json").read_text()) == json.loads(json.dumps(stats))
    for plot in plots:
        assert (out / f"{plot}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / f"{plot}.pdf").read_bytes()[:5] == b"%PDF-"
    report = (out / "report.md").read_text()
    for heading in ("## Outcome", "## The recipe's checks on the rewrites", "## Length", "## Similarity", "## Examples",
                    "### rewritten (check: banned_phrase)", "### kept"):
        assert heading in report
    assert "The French is: Bonjour." in report


def test_misaligned_instructions_are_reported(tmp_path):
    shuffled = [DISTILLED[1], DISTILLED[0], DISTILLED[2], DISTILLED[3]]
    original = write_json(tmp_path / "a.json", ORIGINAL)
    distilled = write_json(tmp_path / "b.json", shuffled)
    stats = D.diff_files(str(original), str(distilled), ALPACA, tmp_path / "out")
    assert stats["alignment"]["instruction_mismatches"] == 2
    assert "are they row-aligned?" in (tmp_path / "out" / "report.md").read_text()


# --------------------------------------------------------------------------
# Runs and versions


def test_diff_run_writes_the_report_into_the_run(tmp_path):
    run = make_run(tmp_path / "run")
    check_run(run)
    result = CliRunner().invoke(main, ["diff", str(run)])
    assert result.exit_code == 0, result.output
    assert "gsm8k: 5 rows, 3 rewritten (60.0%), 2 kept the original" in result.output
    stats = json.loads((run / "report" / "stats.json").read_text())
    assert stats["by_reason"] == {"truncated": 1, "wrong_answer": 1, "accepted": 3}
    assert stats["inputs"]["model"] == "tiny-llama"
    assert stats["answer_agreement"]["rewrite"] == {"rows": 5, "agree": 4, "rate": 0.8}


def test_diff_run_before_check_uses_the_generations(tmp_path):
    run = make_run(tmp_path / "run")
    stats = D.diff_run(run)
    assert stats["accepted"] == 3
    assert not (run / "distilled.parquet").exists()  # diff reads; only check writes the dataset


def test_version_diff(tmp_path):
    old = make_run(tmp_path / "old")
    # The new version: row 1 now right, row 3 now wrong, row 5 generated.
    new_shards = [GSM8K_GENERATIONS[0][:2] + [(2, "20 * 3 = 60.\nThe answer is 60.", "ok", "eos_token")],
                  [(1, "5 * 12 = 60.\nThe answer is 60.", "ok", "eos_token"),
                   (3, "The answer is 2,001.", "ok", "eos_token"),
                   GSM8K_GENERATIONS[1][2],
                   (5, "7 * 3 = 21.\nThe answer is 21.", "ok", "eos_token")]]
    new = make_run(tmp_path / "new", shards=new_shards)
    check_run(old)
    check_run(new)

    changes = D.compare_versions(D.diff_frame(None, pl.read_parquet(old / "distilled.parquet"), GSM8K),
                                 D.diff_frame(None, pl.read_parquet(new / "distilled.parquet"), GSM8K))
    summary = D.summarize_versions(changes, before="old")
    assert changes.filter("changed")["row_id"].to_list() == [1, 3, 5]
    assert (summary["rows_compared"], summary["only_before"], summary["only_after"]) == (5, 0, 1)
    assert (summary["changed"], summary["accepted_before"], summary["accepted_after"]) == (2, 3, 4)
    assert summary["by_reason"]["wrong_answer"] == {"before": 1, "after": 1, "delta": 0}
    assert summary["by_reason"]["accepted"] == {"before": 3, "after": 4, "delta": 1}
    assert {(t["before"], t["after"]) for t in summary["transitions"]} == {("wrong_answer", "accepted"), ("accepted", "wrong_answer")}

    result = CliRunner().invoke(main, ["diff", str(new), "--against", str(old)])
    assert result.exit_code == 0, result.output
    assert "2 of 5 final responses changed" in result.output
    assert f"## Changes against `{old}`" in (new / "report" / "report.md").read_text()


def test_compare_versions_without_row_ids_needs_equal_counts():
    a = pl.DataFrame({"output": ["x", "y"]})
    b = pl.DataFrame({"output": ["x", "z", "w"]})
    with pytest.raises(ValueError, match="row counts differ"):
        D.compare_versions(a, b, response_column="output")
    changes = D.compare_versions(a, b.head(2), response_column="output")
    assert changes["changed"].to_list() == [False, True]


# --------------------------------------------------------------------------
# Bad input: one line, non-zero exit, nothing written


def invoke(*args):
    return CliRunner().invoke(main, ["diff", *map(str, args)])


def assert_one_line_error(result, text):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], result.output


def test_row_counts_that_do_not_align(tmp_path):
    original = write_json(tmp_path / "a.json", ORIGINAL)
    distilled = write_json(tmp_path / "b.json", DISTILLED[:3])
    result = invoke("--original", original, "--distilled", distilled, "--recipe", "alpaca", "--out", tmp_path / "out")
    assert_one_line_error(result, "row counts differ: original has 4 rows, distilled has 3")
    assert not (tmp_path / "out").exists()


def test_missing_columns(tmp_path):
    original = write_json(tmp_path / "a.json", [{"instruction": "x", "response": "y"}])
    distilled = write_json(tmp_path / "b.json", [{"instruction": "x", "output": "y"}])
    result = invoke("--original", original, "--distilled", distilled, "--recipe", "alpaca", "--out", tmp_path / "out")
    assert_one_line_error(result, "original dataset lacks column(s) output")
    result = invoke("--original", distilled, "--distilled", original, "--recipe", "alpaca", "--out", tmp_path / "out")
    assert_one_line_error(result, "distilled dataset lacks the response column 'output'")
    assert not (tmp_path / "out").exists()


def test_run_with_no_generations(tmp_path):
    run = make_run(tmp_path / "run", shards=[])
    assert_one_line_error(invoke(run), "has no generations yet")
    assert not (run / "report").exists()


def test_unknown_recipe(tmp_path):
    original = write_json(tmp_path / "a.json", ORIGINAL)
    result = invoke("--original", original, "--distilled", original, "--recipe", "nope", "--out", tmp_path / "out")
    # The CLI's choices are the registry's names.
    assert result.exit_code == 2 and "'nope' is not one of 'alpaca', 'dolly', 'gsm8k'" in result.output
    assert not (tmp_path / "out").exists()


def test_missing_files_and_options(tmp_path):
    result = invoke("--original", tmp_path / "none.json", "--distilled", tmp_path / "none.json", "--recipe", "alpaca",
                    "--out", tmp_path / "out")
    assert_one_line_error(result, "no such file or folder")
    existing = write_json(tmp_path / "a.json", ORIGINAL)
    assert_one_line_error(invoke("--original", existing, "--recipe", "alpaca"), "missing --distilled, --out")
    assert_one_line_error(invoke(tmp_path, "--recipe", "alpaca"), "not both")
    assert_one_line_error(invoke(tmp_path / "nowhere"), "does not exist")
    assert not (tmp_path / "out").exists()


def test_custom_recipe_options(tmp_path):
    rows = [{"q": "2+2?", "a": "The answer is 4."}, {"q": "3+3?", "a": "The answer is 6."}]
    new = [{"q": "2+2?", "a": "Two and two make 4."}, {"q": "3+3?", "a": "It is 7."}]
    original, distilled = write_json(tmp_path / "a.json", rows), write_json(tmp_path / "b.json", new)
    result = invoke("--original", original, "--distilled", distilled, "--recipe", "custom", "--prompt-column", "q",
                    "--response-column", "a", "--check", "math", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["recheck"]["by_reason"] == {"wrong_answer": 1, "accepted": 1}
    assert stats["answer_agreement"]["final"]["agree"] == 1


# --------------------------------------------------------------------------
# Wording: marker phrases, openings and n-grams, counted by hand

WORDING_ROWS = {  # row 2 has no rewrite (its generation failed); every other rewrite is used
    "original": ["Paris is the capital, please note.", "Please use a list.", "42", "I cannot say.", "### Title\nText"],
    "rewrite": ["### Answer\nParis is the capital. I hope this helps!",
                "Sure! Here is it: use a list.\nExplanation: lists keep order. I hope it helps.",
                None,
                "Sure! Here is 7. Let me know if you need more.",
                "Here is the text: Text"],
}


def wording_frame() -> pl.DataFrame:
    frame = pl.DataFrame({"row_id": list(range(5)), **WORDING_ROWS})
    return frame.with_columns(pl.coalesce("rewrite", "original").alias("final"))


def test_wording_counts_known_by_hand():
    from sdft_data.diff.wording import ngram_shift

    w = D.wording_stats(wording_frame())
    assert w["rows_with_rewrite"] == 4  # rows 0, 1, 3, 4
    markers = {m["marker"]: m for m in w["markers"]}
    # (originals of the rewritten rows, rewrites, final responses, every original)
    expected = {"###": (1, 1, 1, 1), "Explanation:": (0, 1, 1, 0), "I hope": (0, 2, 2, 0), "refusal": (1, 0, 0, 1),
                "Sure": (0, 2, 2, 0), "Let me know": (0, 1, 1, 0), "Note:": (0, 0, 0, 0)}
    for name, counts in expected.items():
        m = markers[name]
        assert (m["original"]["rows"], m["rewrite"]["rows"], m["final"]["rows"], m["original_all"]["rows"]) == counts, name
    assert markers["I hope"]["rewrite"] == {"rows": 2, "of": 4, "share": 0.5}
    assert markers["###"]["final"] == {"rows": 1, "of": 5, "share": 0.2}

    openings = w["openings"]
    assert openings["rewrite"][:3] == [{"phrase": "Sure! Here is", "rows": 2, "share": 0.5},
                                       {"phrase": "### Answer Paris", "rows": 1, "share": 0.25},
                                       {"phrase": "Here is the", "rows": 1, "share": 0.25}]
    assert openings["original"][0]["rows"] == 1 and len(openings["original"]) == 4

    shift = ngram_shift(wording_frame(), min_rows=2, min_z=0.0)
    over = {g["ngram"]: g for part in shift["by_n"].values() for g in part["over"]}
    under = {g["ngram"]: g for part in shift["by_n"].values() for g in part["under"]}
    assert (over["here is"]["rewrite_rows"], over["here is"]["original_rows"], over["here is"]["delta"]) == (3, 0, 0.75)
    assert (over["sure"]["rewrite_rows"], over["i hope"]["rewrite_rows"], over["i hope"]["original_rows"]) == (2, 2, 0)
    assert (under["please"]["rewrite_rows"], under["please"]["original_rows"], under["please"]["delta"]) == (0, 2, -0.5)
    assert under["please"]["z"] < 0 < over["here is"]["z"]
    assert (over["the"]["rewrite_rows"], over["the"]["original_rows"], over["the"]["delta"]) == (2, 1, 0.25)
    assert "capital" not in over and "capital" not in under  # in row 0 on both sides: no change
    assert ngram_shift(wording_frame())["by_n"]["1"] == {"over": [], "under": []}  # too few rows for the defaults


def test_wording_reaches_stats_report_and_latex(tmp_path):
    frame = wording_frame().select(
        pl.lit("q").alias("question"), pl.col("final").alias("answer"), "row_id",
        pl.col("original").alias("original_response"), "rewrite",
        pl.col("rewrite").is_not_null().alias("accepted"),
        pl.when(pl.col("rewrite").is_not_null()).then(pl.lit("accepted")).otherwise(pl.lit("generation_failed")).alias("reason"))
    per_row = D.diff_lazy(None, frame, GSM8K)
    stats = D.summarize(per_row, GSM8K)
    assert {m["marker"]: m["rewrite"]["rows"] for m in stats["wording"]["markers"]}["I hope"] == 2
    out = D.write_report(stats, D.pick_examples(per_row), tmp_path / "report")
    report = (out / "report.md").read_text()
    assert "| `I hope` | chat | 0 (0.0%) | 2 (50.0%) | +50.0 pp | 2 (40.0%) |" in report
    assert "Marker phrases: Of 4 rewrites, `I hope` in 2 (against 0 of their originals)" in report
    assert "![Marker phrases](markers.png)" in report
    latex = (out / "tables" / "markers.tex").read_text()
    assert r"\texttt{\#\#\#} & template & 1 (25.0\%) & 1 (25.0\%) & +0.0 pp \\" in latex
    assert r"\begin{tabular}{llrrr}" in latex and r"\toprule" in latex


def test_skewed_lengths_get_log_bins():
    n = 400
    lengths = [5] * (n - 20) + [5000] * 20  # the 99th percentile is 1000x the median
    frame = pl.DataFrame({"question": ["q"] * n, "answer": ["x" * k for k in lengths], "row_id": list(range(n)),
                          "original_response": ["x" * k for k in lengths], "rewrite": ["x" * k for k in lengths],
                          "accepted": [True] * n, "reason": ["accepted"] * n})
    hist = D.summarize(D.diff_lazy(None, frame, GSM8K), GSM8K)["length"]["chars"]["histogram"]
    assert hist["scale"] == "log" and hist["edges"][0] == 1.0 and hist["edges"][-1] == 5000.0
    assert sum(hist["original"]) == n
    plain = D.summarize(D.diff_lazy(None, toolkit_frame(), GSM8K), GSM8K)["length"]["chars"]["histogram"]
    assert plain["scale"] == "linear"
