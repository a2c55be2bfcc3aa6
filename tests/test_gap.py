"""The gap (sdft_data.gap): the seed model's log-likelihood of each row's original and rewrite, per token.

Against a hand computation from the model's logits on the tokens training builds; batched, chunked and one
at a time alike; resumable after SIGKILL; the columns in distilled.parquet (and after a re-check); the
report's section and the card's line; `sdft-data gap` on an imported run; bad input in one line.
"""

import json
import os
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
import torch
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from sdft_data.backends.local import LocalBackend
from sdft_data.cli import main
from sdft_data.gap import GAP_COLUMNS, score_run, token_scores
from sdft_data.run import distill

from conftest import ALPACA_ROWS, GSM8K_ROWS

PARAMS = dict(max_new_tokens=8, temperature=0.0)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return LocalBackend(str(tiny_model_dir), batch_size=4)


def _hand_mean_logprob(model, input_ids: list[int], mask: list[int]) -> float:
    """The mean log-probability of the tokens where mask is 1, from the model's own full logits."""
    with torch.no_grad():
        logits = model(torch.tensor([input_ids])).logits[0].double()
    lp = torch.log_softmax(logits, dim=-1)
    picked = [lp[t - 1, input_ids[t]].item() for t in range(1, len(input_ids)) if mask[t]]
    return sum(picked) / len(picked)


def test_gap_equals_a_hand_computation_on_the_tokens_training_builds(engine, gsm8k_file, tmp_path):
    import datasets

    from sdft_data.recipes import get_recipe
    from sdft_train.data import build_examples

    summary = distill(recipe="gsm8k", source=str(gsm8k_file), out=tmp_path / "run", engine=engine, progress=False,
                      **PARAMS)
    distilled = pl.read_parquet(summary.distilled)
    ds = datasets.Dataset.from_polars(distilled.drop([c for c in GAP_COLUMNS]))
    recipe = get_recipe("gsm8k")
    for responses, column in (("original", "gap_original_logprob"), ("sdft", None)):
        examples = build_examples(ds, recipe, engine.tokenizer, responses=responses)
        for row, ex in zip(distilled.iter_rows(named=True), examples.rows):
            hand = _hand_mean_logprob(engine.model, ex["input_ids"], ex["completion_mask"])
            # The SDFT arm trains on the rewrite where it was accepted, else on the original.
            col = column or ("gap_rewrite_logprob" if row["accepted"] else "gap_original_logprob")
            assert row[col] == pytest.approx(hand, abs=1e-4)
            tokens = row[col.replace("logprob", "tokens")]
            assert tokens == sum(ex["completion_mask"])
    # The rewrites too: the raw rewrite, scored after the same prompt, with the end-of-turn token.
    as_rewrite = distilled.with_columns(pl.col("rewrite").alias("original_response"))
    examples = build_examples(datasets.Dataset.from_polars(as_rewrite.drop(list(GAP_COLUMNS))), recipe,
                              engine.tokenizer, responses="original")
    for row, ex in zip(distilled.iter_rows(named=True), examples.rows):
        hand = _hand_mean_logprob(engine.model, ex["input_ids"], ex["completion_mask"])
        assert row["gap_rewrite_logprob"] == pytest.approx(hand, abs=1e-4)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["gap"]["scored_under"]["model"]["model_id"] == engine.info.model_id
    assert manifest["gap"]["scored_under"]["eos_token"] == "<|im_end|>"
    assert manifest["gap"]["summary"]["rows"] == len(GSM8K_ROWS)


def test_batched_and_chunked_equal_one_at_a_time(engine):
    tok = engine.tokenizer
    texts = ["Tom has 3 + 4 = 7 apples. The answer is 7.", "Red.", "Great! Let's think step by step. " * 6,
             "Bonjour.", "1. Eat a balanced diet.\n2. Exercise regularly."]
    seqs = [(tok(t, add_special_tokens=False)["input_ids"], 2) for t in texts]
    alone = [token_scores(engine.model, [s], batch_size=1)[0]["logprobs"] for s in seqs]
    batched = token_scores(engine.model, seqs, batch_size=8)
    # Two positions per LM-head chunk: many chunks, none of them the whole [batch, sequence, vocabulary].
    chunked = token_scores(engine.model, seqs, batch_size=3, chunk_elements=2 * engine.model.config.vocab_size)
    for a, b, c, (ids, start) in zip(alone, batched, chunked, seqs):
        assert len(a) == len(ids) - start
        torch.testing.assert_close(b["logprobs"], a, atol=1e-5, rtol=0)
        torch.testing.assert_close(c["logprobs"], a, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="1 <= start < its length"):
        token_scores(engine.model, [([1, 2], 2)])


KILL_SCRIPT = """
import sys, time
from sdft_data.backends.local import LocalBackend
from sdft_data.gap import score_run

class Slow(LocalBackend):
    def score(self, sequences, **kw):
        time.sleep(0.3)
        return super().score(sequences, **kw)

score_run(sys.argv[1], Slow(sys.argv[2], batch_size=1), window=2, flush_rows=2, progress=False)
"""


@pytest.mark.slow
def test_a_killed_gap_pass_resumes_to_the_same_columns(engine, tiny_model_dir, tmp_path):
    rows = [dict(r, question=f"{r['question']} (variant {i})") for i in range(4) for r in GSM8K_ROWS]
    source = tmp_path / "gsm8k24.json"
    source.write_text(json.dumps(rows))
    for name in ("killed", "whole"):
        distill(recipe="gsm8k", source=str(source), out=tmp_path / name, engine=engine, progress=False, gap=False,
                **PARAMS)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, killed, tiny_model_dir], env=env)
    deadline = time.monotonic() + 120
    while len(list((killed / "gap").glob("*.parquet"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "the pass ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = pl.concat([pl.read_parquet(p) for p in (killed / "gap").glob("*.parquet")])
    assert 0 < partial.height < 2 * len(rows)

    entry = score_run(killed, engine, progress=False)
    assert entry["scored_now"] == 2 * len(rows) - partial.height, "only what the killed pass had not scored"
    score_run(tmp_path / "whole", engine, progress=False)
    got, want = (pl.read_parquet(tmp_path / n / "distilled.parquet") for n in ("killed", "whole"))
    assert got.columns[-4:] == list(GAP_COLUMNS)
    assert_frame_equal(got, want, abs_tol=1e-5)
    again = score_run(killed, engine, progress=False)
    assert again["scored_now"] == 0


def test_columns_survive_a_recheck_and_reach_the_report_and_the_card(engine, gsm8k_file, tmp_path):
    from sdft_data.check import check_run
    from sdft_data.diff import diff_run

    run = tmp_path / "run"
    distill(recipe="gsm8k", source=str(gsm8k_file), out=run, engine=engine, progress=False, **PARAMS)
    before = pl.read_parquet(run / "distilled.parquet").select("row_id", *GAP_COLUMNS)
    check_run(run, rules="paper")
    assert_frame_equal(pl.read_parquet(run / "distilled.parquet").select("row_id", *GAP_COLUMNS), before)
    assert before["gap_original_logprob"].null_count() == 0

    stats = diff_run(run)
    assert stats["gap"]["original"]["rows"] == len(GSM8K_ROWS) and stats["gap"]["model"] == engine.info.model_id
    assert len(stats["gap"]["points"]["original"]) == stats["gap"]["paired"]["rows"]
    report = (run / "report" / "report.md").read_text()
    assert "## Likelihood under the seed model" in report and "![Log-likelihood" in report
    assert (run / "report" / "gap.png").is_file() and (run / "report" / "tables" / "gap.tex").is_file()

    result = CliRunner().invoke(main, ["push", str(run), "--repo", "t/gsm8k", "--hub-dir", str(tmp_path / "hub"),
                                       "--allow-no-rewrites"])
    assert result.exit_code == 0, result.output
    card = (tmp_path / "hub" / "t" / "gsm8k" / "README.md").read_text()
    line = next(x for x in card.splitlines() if "nats/token" in x)
    assert f"{len(GSM8K_ROWS)} rows" in line and engine.info.model_id in line
    assert "`gap_original_logprob`, `gap_rewrite_logprob`" in card


def test_card_line_counts_the_sdft_responses(engine):
    from sdft_data.gap import headline, summarize

    frame = pl.DataFrame({"accepted": [True, True, False], "gap_original_logprob": [-2.0, -3.0, -1.0],
                          "gap_original_tokens": [5, 6, 7], "gap_rewrite_logprob": [-1.0, -1.0, -4.0],
                          "gap_rewrite_tokens": [4, 4, 4]})
    s = summarize(frame, {"scored_under": {"model": {"model_id": "seed"}}})
    assert s["sdft"] == {"rows": 3, "mean_gain": 1.0, "accepted": 2}  # (1 + 2 + 0) / 3
    assert s["paired"]["rewrite_more_likely"] == 2 and s["fallback"]["mean"] == -3.0
    assert headline(s).startswith("Under `seed` and the training prompt, the SDFT responses are 1.000 nats/token "
                                  "more likely than the originals, over 3 rows")


def test_gap_command_on_an_imported_run_and_bad_input(tiny_model_dir, tmp_path):
    from sdft_data.tiny import build_tiny_model

    original, distilled = tmp_path / "original.json", tmp_path / "distilled.json"
    original.write_text(json.dumps(ALPACA_ROWS))
    distilled.write_text(json.dumps([dict(r, output=r["output"] + " Done.") if i % 2 else r
                                     for i, r in enumerate(ALPACA_ROWS)]))
    run = tmp_path / "imported"
    runner = CliRunner()
    result = runner.invoke(main, ["import", "--original", str(original), "--distilled", str(distilled), "--recipe",
                                  "alpaca", "--out", str(run)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["gap", str(run), "--model", str(tiny_model_dir), "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "nats/token" in result.output
    frame = pl.read_parquet(run / "distilled.parquet")
    assert frame["gap_original_logprob"].null_count() == 0
    # Only the rows the maker rewrote have a rewrite to score.
    assert frame["gap_rewrite_logprob"].is_not_null().to_list() == frame["rewrite"].is_not_null().to_list()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["gap"]["spec"]["model"] == str(tiny_model_dir) and manifest["gap"]["spec"]["batch_size"] == 2

    other = build_tiny_model(tmp_path / "other", seed=1)
    cases = [
        ([str(tmp_path / "nope"), "--model", str(tiny_model_dir)], "does not exist"),
        ([str(run), "--model", str(tmp_path / "no-model")], "does not exist"),
        ([str(run), "--model", str(other)], "holds scores made otherwise (differs in: --model"),
    ]
    for args, message in cases:
        result = runner.invoke(main, ["gap", *args])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) <= 3, result.output
    import fcntl

    with open(run / ".lock", "w") as held:  # another writer of the run
        fcntl.flock(held, fcntl.LOCK_EX)
        result = runner.invoke(main, ["gap", str(run), "--model", str(tiny_model_dir)])
    assert result.exit_code == 1 and "another process is writing" in result.output, result.output
    assert_frame_equal(pl.read_parquet(run / "distilled.parquet"), frame)  # nothing lost


def test_a_served_run_says_how_to_score_it(engine, gsm8k_file, tmp_path):
    class Served:  # an engine without token log-probabilities, as a server is here
        def __init__(self, inner):
            self.inner, self.info, self.tokenizer = inner, inner.info, inner.tokenizer

        def generate(self, requests, params):
            return self.inner.generate(requests, params)

    summary = distill(recipe="gsm8k", source=str(gsm8k_file), out=tmp_path / "run", engine=Served(engine),
                      progress=False, **PARAMS)
    assert summary.gap["status"] == "not computed" and "sdft-data gap" in summary.gap["why"]
    assert not set(GAP_COLUMNS) & set(pl.read_parquet(summary.distilled).columns)
