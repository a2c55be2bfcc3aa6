"""compare: the seed / vanilla / SDFT table from hand-made results, and refusals of results made differently."""

import copy
import json

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


def _write(tmp_path, name, results):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(results))
    return str(folder)


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
    assert "↑" not in lines[5] and "↓" not in lines[5], "arrows compare SDFT with vanilla only"
    assert "| On-policy (gsm8k) | 30.10 |" in texts["markdown"]


def test_the_paper_table(three, tmp_path):
    texts = compare(three, out=tmp_path / "table")
    lines = texts["terminal"].splitlines()
    assert lines[0].split() == ["Model", "gsm8k", "advbench-jailbreak", "similarity"]
    assert lines[2].split()[:3] == ["Seed", "29.40", "88.85"]
    assert "Vanilla FT (gsm8k)" in lines[3] and "31.10" in lines[3] and "54.81" in lines[3]
    sdft = lines[4]
    assert sdft.startswith("SDFT (gsm8k)") and "34.40 (↑3.30)" in sdft and "65.58 (↑10.77)" in sdft
    assert "0.850 (↑0.240)" in sdft
    assert "| SDFT (gsm8k) | 34.40 (↑3.30) |" in texts["markdown"]
    assert "\\toprule" in texts["latex"] and "$\\uparrow$" in texts["latex"] and "advbench-jailbreak" in texts["latex"]
    csv_rows = texts["csv"].splitlines()
    assert csv_rows[0] == "row,role,dataset,folder,task,score,std,delta_vs_vanilla"
    assert any(r.startswith("SDFT (gsm8k),sdft,gsm8k,") and r.endswith(",3.3") for r in csv_rows)
    for name in ("table.md", "table.tex", "table.csv", "table.png"):
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
