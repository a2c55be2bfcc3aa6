"""compare: the seed / vanilla / SDFT table from hand-made results, and refusals of results made differently."""

import copy
import csv
import io
import json
import re

import pytest
from click.testing import CliRunner

from sdft_train.cli import main
from sdft_train.compare import compare

DATA = {"kind": "file", "id": "gsm8k_test.json", "sha256": "ab" * 32, "rows": 1319, "limit": None}
DECODING = {"mode": "sample", "samples": 1, "params": {"max_new_tokens": 512, "temperature": 0.95, "top_p": 0.7}}


def _task(score, version=1, percent=True, data=DATA):
    return {"version": version, "metric": "accuracy", "percent": percent, "score": score, "std": 0.0,
            "data": data, "decoding": DECODING}


def _results(arm, dataset, scores, **over):
    train = None if arm == "seed" else {"responses": "original" if arm == "vanilla" else "sdft",
                                        "recipe": {"name": dataset}, "base_model": {"name": "llama-2-7b-chat"}}
    r = {"model": {"given": "llama-2-7b-chat" if arm == "seed" else f"ckpt/{dataset}-{arm}", "model_id": "x"},
         "arm": arm, "dataset": dataset, "train": train, "limit": None, "suite": "paper",
         "decoding": {"mode": "paper", "format": "chat", "samples": 1},
         "tasks": {name: _task(s, percent=name != "similarity") for name, s in scores.items()}}
    r.update(over)
    return r


def _write(tmp_path, name, results, rows=None):
    """An eval folder: results.json, and predictions/<task>.jsonl from `rows` ({task: [each row's sample scores]})."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results))
    for task, scores in (rows or {}).items():
        (folder / "predictions").mkdir(exist_ok=True)
        lines = [{"id": i, "input": "q", "reference": "r", "predictions": ["x"] * len(s), "scores": s}
                 for i, s in enumerate(scores)]
        (folder / "predictions" / f"{task}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(folder)


def _scored(arm, dataset, rows, train_seed=None, **over):
    """Results whose scores are the means of `rows` ({task: [per row, per sample]}), as evaluate writes them."""
    scores = {t: sum(sum(s) / len(s) for s in r) / len(r) for t, r in rows.items()}
    results = _results(arm, dataset, scores, **over)
    if train_seed is not None:
        results["train"]["config"] = {"seed": train_seed, "learning_rate": 1e-4}
    return results


@pytest.fixture
def three(tmp_path):
    return [
        _write(tmp_path, "seed", _results("seed", None, {"gsm8k": 0.294, "advbench-jailbreak": 0.8885, "similarity": None})),
        _write(tmp_path, "vanilla", _results("vanilla", "gsm8k", {"gsm8k": 0.311, "advbench-jailbreak": 0.5481,
                                                                  "similarity": 0.61})),
        _write(tmp_path, "sdft", _results("sdft", "gsm8k", {"gsm8k": 0.344, "advbench-jailbreak": 0.6558,
                                                            "similarity": 0.85})),
    ]


def test_the_on_policy_arm_is_named_by_its_record_and_is_a_third_row(three, tmp_path):
    from sdft_train.evaluate import arm_of

    # A train manifest names its arm; older ones only the responses they trained on.
    assert arm_of({"arm": "on-policy", "responses": "original"}) == "on-policy"
    assert arm_of({"arm": "vanilla", "responses": "original"}) == arm_of({"responses": "original"}) == "vanilla"
    assert arm_of({"responses": "sdft"}) == "sdft"
    on_policy = _results("on-policy", "gsm8k", {"gsm8k": 0.301, "advbench-jailbreak": 0.87, "similarity": 0.9})
    on_policy["train"] = {"arm": "on-policy", "responses": "original", "recipe": {"name": "gsm8k"},
                          "base_model": {"name": "llama-2-7b-chat"}}
    texts = compare([*three, _write(tmp_path, "on-policy", on_policy)], out=tmp_path / "table")
    lines = texts["terminal"].splitlines()
    assert [line.split("  ")[0].split(" (")[0] for line in lines[2:6]] == ["Seed", "Vanilla FT", "SDFT", "On-policy"]
    assert lines[5].startswith("On-policy (gsm8k)") and "30.10" in lines[5] and "87.00" in lines[5]
    # Every arm is measured against vanilla: 30.10 against vanilla's 31.10.
    assert "30.10 (↓1.00)" in lines[5]
    assert "| On-policy (gsm8k) | 30.10 (↓1.00) |" in texts["markdown"]


def test_the_paper_table(three, tmp_path):
    texts = compare(three, out=tmp_path / "table")
    lines = texts["terminal"].splitlines()
    assert lines[0].split() == ["Model", "gsm8k", "advbench-jailbreak", "similarity"]
    assert lines[2].split()[:3] == ["Seed", "29.40", "88.85"]
    assert "Vanilla FT (gsm8k)" in lines[3] and "31.10" in lines[3] and "54.81" in lines[3]
    sdft = lines[4]
    # No per-row predictions here: the difference without an interval, and a note saying why.
    assert sdft.startswith("SDFT (gsm8k)") and "34.40 (↑3.30)" in sdft and "65.58 (↑10.77)" in sdft
    assert "0.850 (↑0.240)" in sdft
    assert "its difference from vanilla fine-tuning on the same dataset" in texts["terminal"]
    assert "no per-row predictions for gsm8k" in texts["terminal"]
    assert "| SDFT (gsm8k) | 34.40 (↑3.30) |" in texts["markdown"]
    assert "\\toprule" in texts["latex"] and "$\\uparrow$" in texts["latex"] and "advbench-jailbreak" in texts["latex"]
    csv_rows = list(csv.DictReader(io.StringIO(texts["csv"])))
    sdft_vs_vanilla = [r for r in csv_rows if r["row"] == "SDFT (gsm8k)" and r["vs"] == "Vanilla FT (gsm8k)"
                       and r["task"] == "gsm8k"]
    assert len(sdft_vs_vanilla) == 1 and sdft_vs_vanilla[0]["difference"] == "3.3"
    assert sdft_vs_vanilla[0]["ci_low"] == "" and sdft_vs_vanilla[0]["within_noise"] == ""
    for name in ("table.md", "table.tex", "table.csv", "table.png", "table.json"):
        assert (tmp_path / "table" / name).stat().st_size > 0


def test_a_drop_gets_a_down_arrow(tmp_path):
    folders = [_write(tmp_path, "v", _results("vanilla", "alpaca", {"gsm8k": 0.30})),
               _write(tmp_path, "s", _results("sdft", "alpaca", {"gsm8k": 0.25}))]
    assert "25.00 (↓5.00)" in compare(folders)["terminal"]


def test_results_made_differently_are_refused(three, tmp_path):
    changes = {
        "task version": lambda r: r["tasks"]["gsm8k"].update(version=2),
        "data": lambda r: r["tasks"]["gsm8k"].update(data=dict(DATA, sha256="cd" * 32)),
        "decoding": lambda r: r["tasks"]["gsm8k"].update(decoding=dict(DECODING, mode="greedy")),
        "format": lambda r: r["decoding"].update(format="paper"),
        "limit": lambda r: r.update(limit=10),
    }
    for what, change in changes.items():
        other = json.loads(open(three[2] + "/results.json").read())
        change(other)
        odd = _write(tmp_path, f"odd-{what.replace(' ', '-')}", other)
        with pytest.raises(ValueError, match=f"gsm8k: {what} differs .*odd-{what.replace(' ', '-')}"):
            compare([three[0], three[1], odd])


def test_other_suite_and_other_base_model_are_flagged(three, tmp_path):
    other = _results("sdft", "alpaca", {"gsm8k": 0.3})
    other["train"]["base_model"] = {"name": "mistral-7b"}
    other["suite"] = "quick"
    texts = compare([*three, _write(tmp_path, "alpaca-sdft", other)])
    assert "not evaluated on advbench-jailbreak, similarity (suite quick)" in texts["terminal"]
    assert "fine-tuned from mistral-7b, but the seed results are of llama-2-7b-chat" in texts["terminal"]


def test_cli_compare_and_its_errors(three, tmp_path):
    runner = CliRunner()
    ok = runner.invoke(main, ["compare", *three, "--format", "markdown"])
    assert ok.exit_code == 0 and ok.output.startswith("| Model |")
    (tmp_path / "empty").mkdir()
    bad = runner.invoke(main, ["compare", three[0], str(tmp_path / "empty")])
    assert bad.exit_code == 1 and "has no results.json" in bad.output and "Traceback" not in bad.output
    two_seeds = _write(tmp_path, "seed2", copy.deepcopy(_results("seed", None, {"gsm8k": 0.3})))
    bad = runner.invoke(main, ["compare", *three, two_seeds])
    assert bad.exit_code == 1 and "name the seed with --seed" in bad.output
    ok = runner.invoke(main, ["compare", *three, two_seeds, "--seed", three[0]])
    assert ok.exit_code == 0 and "a model with no training record besides the seed" in ok.output


def test_answers_cut_at_max_new_tokens_are_marked(three, tmp_path):
    results = json.loads(open(three[2] + "/results.json").read())
    results["tasks"]["gsm8k"].update(truncated=7, rows=20)
    folders = [three[0], three[1], _write(tmp_path, "cut", results)]
    texts = compare(folders)
    sdft = next(line for line in texts["terminal"].splitlines() if line.startswith("SDFT (gsm8k)"))
    assert "34.40† (↑3.30)" in sdft and "65.58 (↑10.77)" in sdft
    assert "note: † SDFT (gsm8k), gsm8k: 7 of 20 answers cut at max_new_tokens" in texts["terminal"]
    assert "34.40$^\\dagger$" in texts["latex"]
    assert "†" not in compare(three)["terminal"]


def test_similarities_from_different_embedding_models_are_refused(three, tmp_path):
    mine = {"name": "all-MiniLM-L6-v2", "revision": "a" * 40}
    folders = []
    for folder, model in zip(three, (None, mine, dict(mine, name="e5-small"))):
        results = json.loads(open(folder + "/results.json").read())
        if model:  # the seed's similarity is not scored: it has no embedding model to compare
            results["tasks"]["similarity"]["embedding_model"] = model
        folders.append(_write(tmp_path, "e-" + folder.rsplit("/", 1)[-1], results))
    with pytest.raises(ValueError, match="similarity: embedding model differs .*all-MiniLM-L6-v2.*e5-small"):
        compare(folders)
    results = json.loads(open(folders[2] + "/results.json").read())
    results["tasks"]["similarity"]["embedding_model"] = mine
    same = compare([folders[0], folders[1], _write(tmp_path, "e-same", results)])
    assert "0.850 (↑0.240)" in same["terminal"]


# --- scores with their noise ---------------------------------------------------------------------

def _pair(tmp_path):
    """40 GSM8K prompts: SDFT gets 10 more right than vanilla and none fewer; on the jailbreak rows they differ on
    two prompts, one each way; similarity is a per-row float."""
    vanilla = {"gsm8k": [[1.0]] * 10 + [[0.0]] * 30, "advbench-jailbreak": [[1.0], [0.0]] + [[1.0]] * 38,
               "similarity": [[0.5 + 0.01 * (i % 7)] for i in range(40)]}
    sdft = {"gsm8k": [[1.0]] * 20 + [[0.0]] * 20, "advbench-jailbreak": [[0.0], [1.0]] + [[1.0]] * 38,
            "similarity": [[0.8 + 0.01 * (i % 5)] for i in range(40)]}
    seed = {"gsm8k": [[1.0]] * 15 + [[0.0]] * 25, "advbench-jailbreak": [[1.0]] * 40}
    return [_write(tmp_path, "seed", _scored("seed", None, seed), seed),
            _write(tmp_path, "vanilla", _scored("vanilla", "gsm8k", vanilla), vanilla),
            _write(tmp_path, "sdft", _scored("sdft", "gsm8k", sdft), sdft)]


def test_paired_differences_with_intervals_and_the_exact_test_in_every_output(tmp_path):
    from sdft_train import stats

    folders = _pair(tmp_path)
    texts = compare(folders)
    sdft_line = next(line for line in texts["terminal"].splitlines() if line.startswith("SDFT (gsm8k)"))
    expected = stats.paired([stats.row_scores(folders[2], "gsm8k", {})], [stats.row_scores(folders[1], "gsm8k", {})])
    low, high = (100 * v for v in expected["ci"])
    assert low > 0 and f"50.00 (↑25.00 [{low:+.2f}, {high:+.2f}])" in sdft_line
    assert "97.50 (≈+0.00 [" in sdft_line                     # one prompt each way: within noise
    assert "0.820 (↑0.291 [" in sdft_line                     # similarity: raw, with its interval
    assert f"| SDFT (gsm8k) | 50.00 (↑25.00 [{low:+.2f}, {high:+.2f}]) | 97.50 (≈+0.00 [" in texts["markdown"]
    assert f"$\\uparrow$25.00 [{low:+.2f}, {high:+.2f}]" in texts["latex"] and "$\\approx$+0.00" in texts["latex"]
    for fmt in ("terminal", "markdown", "latex"):
        assert "percentile bootstrap over the prompts, 10000 resamples, seed 0" in texts[fmt], fmt
        assert "McNemar" in texts[fmt] and "within noise" in texts[fmt], fmt

    # The comparisons table: McNemar's exact p = 2 / 2^10 for ten discordant prompts all one way.
    lines = texts["terminal"].splitlines()

    def cells(task, what):  # difference, interval, discordant, p, verdict
        return re.split(r"\s{2,}", next(x for x in lines if x.startswith(task + " ") and what in x))[-5:]

    assert cells("gsm8k", "SDFT (gsm8k) vs Vanilla FT") == ["+25.00", f"[{low:+.2f}, {high:+.2f}]", "10 / 0",
                                                            "0.002", "higher"]
    assert cells("advbench-jailbreak", "SDFT (gsm8k) vs Vanilla FT")[2:] == ["1 / 1", "1.000", "within noise"]
    # Five discordant prompts all one way: the bootstrap interval misses 0, but the exact test (p = 1/16) does
    # not reject, so the verdict is within noise.
    vs_seed = cells("gsm8k", "SDFT (gsm8k) vs Seed")
    assert vs_seed[0] == "+12.50" and not vs_seed[1].startswith("[-") and vs_seed[2:] == ["5 / 0", "0.062",
                                                                                          "within noise"]

    rows = {(r["row"], r["vs"], r["task"]): r for r in csv.DictReader(io.StringIO(texts["csv"]))}
    row = rows["SDFT (gsm8k)", "Vanilla FT (gsm8k)", "gsm8k"]
    assert (row["prompts"], row["difference"], row["within_noise"], row["only_row_right"], row["only_vs_right"],
            row["exact_p"], row["resamples"], row["bootstrap_seed"]) == ("40", "25.0", "false", "10", "0", "0.001953",
                                                                         "10000", "0")
    assert float(row["ci_low"]) == pytest.approx(low, abs=1e-4) and float(row["ci_high"]) == pytest.approx(high, abs=1e-4)
    assert rows["SDFT (gsm8k)", "Vanilla FT (gsm8k)", "advbench-jailbreak"]["within_noise"] == "true"
    similarity = rows["SDFT (gsm8k)", "Vanilla FT (gsm8k)", "similarity"]
    assert similarity["exact_p"] == "" and similarity["ci_low"] != ""   # a float score: the bootstrap only
    assert ("SDFT (gsm8k)", "Seed", "gsm8k") in rows and ("Vanilla FT (gsm8k)", "Seed", "gsm8k") in rows
    assert ("SDFT (gsm8k)", "", "gsm8k") in rows                         # the score line itself


def test_the_bootstrap_is_seeded_and_its_settings_are_options(tmp_path):
    folders = _pair(tmp_path)
    runner = CliRunner()
    one = runner.invoke(main, ["compare", *folders, "--resamples", "500", "--bootstrap-seed", "3"])
    again = runner.invoke(main, ["compare", *folders, "--resamples", "500", "--bootstrap-seed", "3"])
    other = runner.invoke(main, ["compare", *folders, "--resamples", "500", "--bootstrap-seed", "4"])
    assert one.exit_code == 0, one.output
    assert one.output == again.output and "500 resamples, seed 3" in one.output
    assert other.output != one.output and "500 resamples, seed 4" in other.output
    bad = runner.invoke(main, ["compare", *folders, "--resamples", "0"])
    assert bad.exit_code == 2 and "--resamples" in bad.output


def test_several_samples_are_averaged_per_prompt_first(tmp_path):
    two = {"gsm8k": [[1.0, 0.0]] * 10 + [[1.0, 1.0]] * 10}
    one = {"gsm8k": [[0.0, 0.0]] * 10 + [[1.0, 1.0]] * 10}
    sampled = dict(DECODING, samples=2)
    v = _scored("vanilla", "gsm8k", one)
    s = _scored("sdft", "gsm8k", two)
    for r in (v, s):
        r["tasks"]["gsm8k"]["decoding"] = sampled
    texts = compare([_write(tmp_path, "v", v, one), _write(tmp_path, "s", s, two)])
    rows = {(r["row"], r["vs"]): r for r in csv.DictReader(io.StringIO(texts["csv"]))}
    row = rows["SDFT (gsm8k)", "Vanilla FT (gsm8k)"]
    assert row["difference"] == "25.0" and row["prompts"] == "20"
    assert row["exact_p"] == ""                                          # half-right prompts are not 0/1


def test_seeds_of_one_arm_make_one_row_with_their_mean_and_spread(tmp_path):
    seed = {"gsm8k": [[1.0]] * 10 + [[0.0]] * 30}
    vanilla = {"gsm8k": [[1.0]] * 12 + [[0.0]] * 28}
    runs = {1: 16, 2: 20, 3: 24}  # SDFT right on the first 16, 20, 24 prompts
    folders = [_write(tmp_path, "seed", _scored("seed", None, seed), seed),
               _write(tmp_path, "vanilla", _scored("vanilla", "gsm8k", vanilla, train_seed=1), vanilla)]
    for train_seed, right in runs.items():
        rows = {"gsm8k": [[1.0]] * right + [[0.0]] * (40 - right)}
        folders.append(_write(tmp_path, f"sdft-seed{train_seed}", _scored("sdft", "gsm8k", rows, train_seed=train_seed),
                              rows))
    texts = compare(folders)
    line = next(x for x in texts["terminal"].splitlines() if x.startswith("SDFT (gsm8k, 3 seeds)"))
    assert "50.00 ± 10.00 (↑20.00 [" in line                             # mean of 40, 50, 60; their sd
    assert "rows with N seeds: the mean over N trainings that differ only in --seed" in texts["terminal"]
    rows = {(r["row"], r["vs"]): r for r in csv.DictReader(io.StringIO(texts["csv"]))}
    row = rows["SDFT (gsm8k, 3 seeds)", "Vanilla FT (gsm8k)"]
    assert row["seeds"] == "1;2;3" and row["spread"] == "seeds" and row["exact_p"] == ""
    assert float(row["ci_low"]) > 0
    assert rows["SDFT (gsm8k, 3 seeds)", ""]["folders"].count(";") == 2

    # The same seed twice, or replicas trained differently besides the seed, are refused.
    again = _write(tmp_path, "sdft-again", _scored("sdft", "gsm8k", seed, train_seed=2), seed)
    with pytest.raises(ValueError, match="two sdft results for gsm8k: .*sdft-seed2 and .*sdft-again, both trained "
                                         "with seed 2"):
        compare([*folders, again])
    other_lr = _scored("sdft", "gsm8k", seed, train_seed=4)
    other_lr["train"]["config"]["learning_rate"] = 2e-4
    with pytest.raises(ValueError, match=r"trained differently, not only in the seed .*config.learning_rate "
                                         r"\(0.0001 vs 0.0002\)"):
        compare([*folders, _write(tmp_path, "sdft-lr", other_lr, seed)])


def test_a_third_arm_gets_its_row_and_its_comparisons(tmp_path):
    folders = _pair(tmp_path)
    rows = {"gsm8k": [[1.0]] * 14 + [[0.0]] * 26}
    folders.append(_write(tmp_path, "on-policy", _scored("on-policy", "gsm8k", rows), rows))
    texts = compare(folders)
    labels = [x.split("  ")[0] for x in texts["terminal"].splitlines()[2:6]]
    assert labels == ["Seed", "Vanilla FT (gsm8k)", "SDFT (gsm8k)", "On-policy (gsm8k)"]
    on_policy = texts["terminal"].splitlines()[5]
    assert "35.00 (≈+10.00 [" in on_policy or "35.00 (↑10.00 [" in on_policy
    assert "On-policy (gsm8k) vs Vanilla FT (gsm8k)" in texts["terminal"]
    assert "On-policy (gsm8k) vs Seed" in texts["terminal"]


def test_unreadable_predictions_are_one_line(tmp_path):
    folders = _pair(tmp_path)
    (tmp_path / "sdft" / "predictions" / "gsm8k.jsonl").write_text("not json\n")
    result = CliRunner().invoke(main, ["compare", *folders])
    assert result.exit_code == 1 and "gsm8k.jsonl, line 1: not a prediction row" in result.output
    assert "Traceback" not in result.output


def test_a_drift_shows_four_decimals_a_similarity_three_a_rate_two(tmp_path):
    from sdft_train.compare import assemble, render

    def results(arm, kl, sim, acc):
        r = _results(arm, None if arm == "seed" else "gsm8k", {"gsm8k": acc, "similarity": sim, "drift": kl})
        r["tasks"]["drift"].update(metric="kl", percent=False)
        return r

    folders = [_write(tmp_path, "seed", results("seed", 0.0, 0.7, 0.1)),
               _write(tmp_path, "vanilla", results("vanilla", 0.00347, 0.61234, 0.31234))]
    table = assemble(folders)
    assert table["digits"] == {"gsm8k": 2, "similarity": 3, "drift": 4}
    text = render(table)["markdown"]
    assert "| 31.23 | 0.612 | 0.0035 |" in text, text
