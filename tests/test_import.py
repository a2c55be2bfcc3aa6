"""sdft-data import: a hand-made original/distilled pair becomes a run that check, diff and push accept."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner
from conftest import ALPACA_ROWS

from sdft_data.cli import main as cli
from sdft_data.importer import import_pair

# The distilled side of ALPACA_ROWS, worked out by hand: row 0 rewritten, row 1 kept, row 2 rewritten but
# parroting the template (the alpaca recipe's banned phrase check rejects it), row 3 kept (with extra spaces).
DISTILLED = [
    {**ALPACA_ROWS[0], "output": "Eat well, move every day, and sleep eight hours."},
    dict(ALPACA_ROWS[1]),
    {**ALPACA_ROWS[2], "output": "As the reference answer says: A firefighter saved the cat."},
    {**ALPACA_ROWS[3], "output": "  Red.\n"},
]


def write(path, rows):
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture
def pair(tmp_path):
    return write(tmp_path / "original.json", ALPACA_ROWS), write(tmp_path / "distilled.json", DISTILLED)


def test_import_pairs_rows_applies_checks_and_claims_nothing_unknown(pair, tmp_path):
    original, distilled = pair
    run = tmp_path / "run"
    summary = import_pair(original=str(original), distilled=str(distilled), recipe="alpaca", out=run,
                          model="meta-llama/Llama-2-7b-chat-hf", note="made by hand")
    assert (summary.rows, summary.differing, summary.accepted, summary.aligned_by) == (4, 2, 1, "position")
    assert summary.by_reason == {"no_rewrite": 2, "banned_phrase": 1, "accepted": 1}

    table = pl.read_parquet(run / "distilled.parquet")
    assert table["reason"].to_list() == ["accepted", "no_rewrite", "banned_phrase", "no_rewrite"]
    assert table["rewrite"].to_list() == [DISTILLED[0]["output"], None, DISTILLED[2]["output"], None]
    # The response column: the accepted rewrite, else the original (the rejected rewrite falls back).
    assert table["output"].to_list() == [DISTILLED[0]["output"], "Bonjour.", "A firefighter saved the cat.", "Red."]
    assert table.columns[:3] == ["instruction", "input", "output"]

    manifest = json.loads((run / "manifest.json").read_text())
    inputs = manifest["fingerprint_inputs"]
    assert inputs["source"]["id"] == "original.json" and inputs["distilled"]["id"] == "distilled.json"
    assert len(inputs["distilled"]["sha256"]) == 64
    assert inputs["model"] == {"backend": "imported", "model_id": "meta-llama/Llama-2-7b-chat-hf", "revision": None}
    # What the files do not say is not in the manifest: no template, parameters, seed or tokens.
    assert not {"template", "generation", "seed"} & set(inputs) and "tokens" not in manifest
    assert manifest["imported"]["note"] == "made by hand" and "not verified" in manifest["imported"]["model"]
    assert manifest["counts"] == {"rows": 4, "ok": 2, "failed": 0, "absent": 2, "pending": 0}
    assert manifest["check"]["by_reason"] == summary.by_reason
    again = import_pair(original=str(original), distilled=str(distilled), recipe="alpaca", out=run,
                        model="meta-llama/Llama-2-7b-chat-hf", note="made by hand")
    assert again.already and "nothing to do" in again.message()
    with pytest.raises(ValueError, match="is not empty"):
        import_pair(original=str(original), distilled=str(distilled), recipe="alpaca", out=run)


def test_rows_in_another_order_are_aligned_by_instruction(pair, tmp_path):
    original, _ = pair
    shuffled = write(tmp_path / "shuffled.json", [DISTILLED[i] for i in (2, 0, 3, 1)])
    summary = import_pair(original=str(original), distilled=str(shuffled), recipe="alpaca", out=tmp_path / "run")
    assert summary.aligned_by == "instruction"
    table = pl.read_parquet(tmp_path / "run" / "distilled.parquet")
    assert table["reason"].to_list() == ["accepted", "no_rewrite", "banned_phrase", "no_rewrite"]


@pytest.mark.parametrize("rows, message", [
    ([DISTILLED[0], DISTILLED[1], DISTILLED[3]], "1 original row(s) have no distilled row (first: row 2, "
                                                 "instruction 'Rewrite the sentence using gender-neutral"),
    ([DISTILLED[0], {**DISTILLED[1], "instruction": "Translate into German."}, DISTILLED[2], DISTILLED[3]],
     "1 original row(s) have no distilled row (first: row 1"),
    ([*DISTILLED, {**DISTILLED[0], "instruction": "An extra row."}], "1 distilled row(s) match no original row"),
    ([DISTILLED[0], {**DISTILLED[1], "output": None}, DISTILLED[2], DISTILLED[3]],
     "1 distilled row(s) have no 'output' (first: distilled row 1)"),
])
def test_missing_extra_and_misaligned_rows_are_clear_errors_and_write_nothing(pair, tmp_path, rows, message):
    original, _ = pair
    bad = write(tmp_path / "bad.json", rows)
    with pytest.raises(ValueError) as e:
        import_pair(original=str(original), distilled=str(bad), recipe="alpaca", out=tmp_path / "run")
    assert message in str(e.value)
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run.import-*"))


def test_repeated_instructions_out_of_order_cannot_be_paired(tmp_path):
    rows = [{"instruction": "Say hi.", "input": "", "output": "Hi."}, {"instruction": "Say hi.", "input": "", "output": "Hello."},
            {"instruction": "Count.", "input": "", "output": "1 2 3"}]
    original = write(tmp_path / "o.json", rows)
    distilled = write(tmp_path / "d.json", [rows[2], rows[0], rows[1]])
    with pytest.raises(ValueError, match=r"rows are misaligned \(row 0: original instruction 'Say hi.', distilled"
                                         r" 'Count.'\), and repeated instructions"):
        import_pair(original=str(original), distilled=str(distilled), recipe="alpaca", out=tmp_path / "run")


def test_cli_import_then_check_diff_push_and_load(pair, tmp_path):
    import datasets

    original, distilled = pair
    run, hub, runner = tmp_path / "run", tmp_path / "hub", CliRunner()
    steps = [
        ["import", "--original", original, "--distilled", distilled, "--recipe", "alpaca", "--out", run,
         "--model", "meta-llama/Llama-2-7b-chat-hf"],
        ["check", run],
        ["diff", run],
        ["push", run, "--repo", "org/alpaca-sdft", "--hub-dir", hub],
    ]
    outputs = []
    for args in steps:
        result = runner.invoke(cli, list(map(str, args)))
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    assert "imported 4 rows" in outputs[0] and "no_rewrite" in outputs[0]
    assert "1 rewrites accepted, 3 fell back" in outputs[1]
    assert "published org/alpaca-sdft@v1, 4 rows" in outputs[3]
    ds = datasets.load_dataset(str(hub / "org" / "alpaca-sdft"), split="train", cache_dir=str(tmp_path / "c"))
    assert ds["reason"] == ["accepted", "no_rewrite", "banned_phrase", "no_rewrite"]
    bad = runner.invoke(cli, ["import", "--original", str(original), "--distilled", str(tmp_path / "nope.json"),
                              "--recipe", "alpaca", "--out", str(tmp_path / "run2")])
    assert bad.exit_code == 1 and "--distilled: source" in bad.output and "does not exist" in bad.output
