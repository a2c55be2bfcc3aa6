"""Drift (sdft_train.tasks.drift): a tuned model's KL from its seed model on the seed's own greedy answers.

A model scored against itself drifts 0 (loaded twice, or as its own seed); a perturbed one drifts more than
0, by the KL a hand computation from both models' logits gives; the seed model comes from the training
record by default; what was used is recorded; bad input is one line.
"""

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from sdft_train.cli import main
from sdft_train.evaluate import evaluate

DATA = Path(__file__).parent / "fixtures" / "eval_data"
ARGS = dict(tasks="drift", data_dir=str(DATA), limit=3, temperature=0.0, max_new_tokens=10, progress=False)


@pytest.fixture(scope="module")
def perturbed(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with noise on every weight: a stand-in for a fine-tuned model, with its training record."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tmp_path_factory.mktemp("perturbed")
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    (folder / "train_manifest.json").write_text(json.dumps(
        {"responses": "original", "recipe": {"name": "alpaca", "version": 1}, "base_model": {"name": str(tiny_model_dir)}}))
    return folder


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions" / "drift.jsonl").read_text().splitlines()]


def test_a_model_against_itself_drifts_zero(tiny_model_dir, tmp_path):
    # Loaded a second time as --seed-model, and as its own seed (no training record): 0 both ways.
    for name, extra in (("twice", dict(seed_model=str(tiny_model_dir))), ("itself", {})):
        results = evaluate(model=str(tiny_model_dir), out=tmp_path / name, **ARGS, **extra)
        entry = results["tasks"]["drift"]
        assert entry["scored"] == 3 and entry["score"] == pytest.approx(0.0, abs=1e-6)
        rows = _rows(tmp_path / name)
        assert all(abs(r["scores"][0]) < 1e-6 and r["tokens"][0] > 0 for r in rows)
        details = entry["details"]
        assert details["seed_logprob"]["difference"] == pytest.approx(0.0, abs=1e-6)
        assert details["seed_model"]["chosen_by"] == ("--seed-model" if name == "twice" else
                                                      "the model itself (no training record)")
        assert details["seed_answers"] == {"run": "runs/drift-seed/greedy", "decoding": "greedy",
                                           "max_new_tokens": 10, "rows": 3}


def test_a_perturbed_model_drifts_by_the_kl_of_their_logits(tiny_model_dir, perturbed, tmp_path):
    from transformers import AutoModelForCausalLM

    from sdft_data.run import generations

    out = tmp_path / "eval"
    results = evaluate(model=str(perturbed), out=out, **ARGS)
    entry = results["tasks"]["drift"]
    assert entry["score"] > 0.01
    details = entry["details"]
    # The training record names the seed model.
    assert details["seed_model"]["chosen_by"] == "the training record's base model"
    assert details["seed_model"]["given"] == str(tiny_model_dir)
    assert details["seed_model"]["revision"].startswith("sha256:")
    assert details["seed_logprob"]["of_model_answers"] < 0 and details["kl"]["tokens"] > 0

    # By hand, on row 0: the seed's greedy answer after the prompt, both models' full logits, KL(seed || tuned).
    from sdft_train.tasks import get_task

    seed_model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tuned = AutoModelForCausalLM.from_pretrained(perturbed)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = get_task("drift").load(str(DATA), 3).rows[0]
    prompt = tok(get_task("drift").prompt(row, tok, "chat"), add_special_tokens=False)["input_ids"]
    gen = generations(out / "runs" / "drift-seed" / "greedy").collect().row(0, named=True)
    answer = tok(gen["text"], add_special_tokens=False)["input_ids"]
    if gen["finish_reason"] == "eos_token":
        answer += [tok.eos_token_id]
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        lp = torch.log_softmax(seed_model(ids).logits[0].double(), -1)[len(prompt) - 1:-1]
        lq = torch.log_softmax(tuned(ids).logits[0].double(), -1)[len(prompt) - 1:-1]
    hand = (lp.exp() * (lp - lq)).sum(-1).mean().item()
    assert _rows(out)[0]["scores"][0] == pytest.approx(hand, rel=1e-3)


def test_bad_input_is_one_line(tiny_model_dir, tmp_path):
    from sdft_data.tiny import build_tiny_model

    other_vocab = build_tiny_model(tmp_path / "other", vocab_size=300)
    base = ["eval", "--tasks", "drift", "--data-dir", str(DATA), "--limit", "2", "--temperature", "0",
            "--max-new-tokens", "4", "--quiet"]
    cases = [
        (["--model", str(tiny_model_dir), "--backend", "openai", "--endpoint", "http://127.0.0.1:9",
          "--out", str(tmp_path / "a")], "needs the model's logits"),
        (["--model", str(tiny_model_dir), "--seed-model", str(other_vocab), "--out", str(tmp_path / "b")],
         "another tokenizer"),
        (["--model", str(tiny_model_dir), "--seed-model", str(tmp_path / "missing"), "--out", str(tmp_path / "c")],
         "does not exist"),
    ]
    for args, message in cases:
        result = CliRunner().invoke(main, [*base, *args])
        last = result.output.strip().splitlines()[-1]
        assert result.exit_code == 1 and last.startswith("Error: ") and message in last, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "a").exists(), "refused before anything is written"


def test_the_seed_models_own_eval_lends_its_greedy_answers(tiny_model_dir, perturbed, tmp_path):
    # The seed model evaluated first (as the make chain does); the tuned model's eval with --seed-results copies
    # the seed's greedy answers instead of generating them again, and scores as it would have.
    messages = []
    evaluate(model=str(tiny_model_dir), out=tmp_path / "seed", **ARGS)
    lent = evaluate(model=str(perturbed), out=tmp_path / "lent", seed_results=str(tmp_path / "seed"),
                    echo=messages.append, **ARGS)
    own = evaluate(model=str(perturbed), out=tmp_path / "own", **ARGS)
    assert any("the seed model's greedy answers from" in m for m in messages), messages
    assert lent["tasks"]["drift"]["score"] == pytest.approx(own["tasks"]["drift"]["score"], abs=1e-7)
    # Answers made another way (other max_new_tokens) are not lent.
    messages.clear()
    evaluate(model=str(perturbed), out=tmp_path / "other", seed_results=str(tmp_path / "seed"), echo=messages.append,
             **(ARGS | {"max_new_tokens": 8}))
    assert not any("greedy answers from" in m for m in messages)
