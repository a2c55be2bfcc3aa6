"""The real-model tier: SmolLM2-135M-Instruct through distill, train and eval (a couple of minutes on a CPU).

These run only where the model has been fetched (`make model`, i.e.
`sdft-data fetch-model`, into models/smollm2-135m-instruct, or SDFT_REAL_MODEL
pointing at such a folder); elsewhere they are skipped, saying so. Select them
alone with `pytest -m real_model`, or leave them out with `-m "not real_model"`.

What they hold the toolkit to on a real chat model: its ChatML template and
its default system prompt (replaced by the recipe's system line, and
recorded), answers that stop at <|im_end|> with no special token left, the
distill template's markup never echoed back, the paper format refused for a
model with no Llama layout, and identity and provenance carried from the
model folder into every manifest and card.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sdft_data.backends import GenerationParams

ROOT = Path(__file__).resolve().parents[1]
MODEL = Path(os.environ.get("SDFT_REAL_MODEL") or ROOT / "models" / "smollm2-135m-instruct")
HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
FIXTURES = ROOT / "tests" / "fixtures" / "eval_data"

pytestmark = [
    pytest.mark.real_model,
    pytest.mark.skipif(not (MODEL / "config.json").is_file(),
                       reason=f"SmolLM2-135M-Instruct is not fetched into {MODEL}: run `make model` "
                              "(sdft-data fetch-model) or set SDFT_REAL_MODEL=DIR"),
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a CPU shared with other work, two spinning threads cost far more than one
    (measured on a busy 2-core machine: 4 rows x 32 new tokens in 160 s with two threads, 15 s with one)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def engine(one_thread):
    from sdft_data.backends.local import LocalBackend

    backend = LocalBackend(str(MODEL), batch_size=4)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def runs(engine, tmp_path_factory):
    """Two GSM8K and two Alpaca rows distilled by the real model (greedy, 48 new tokens)."""
    from conftest import ALPACA_ROWS

    from sdft_data.run import distill

    folder = tmp_path_factory.mktemp("real-runs")
    alpaca = folder / "alpaca.json"
    alpaca.write_text(json.dumps(ALPACA_ROWS[:2]))
    params = GenerationParams(max_new_tokens=48, temperature=0)
    out = {}
    for recipe, source in (("gsm8k", ROOT / "sdft_data" / "samples" / "gsm8k_sample.jsonl"), ("alpaca", alpaca)):
        distill(recipe=recipe, source=str(source), out=folder / recipe, engine=engine, limit=2, decoding=params,
                progress=False)
        out[recipe] = folder / recipe
    return out


def _rewrites(run: Path) -> list[dict]:
    from sdft_data.run import generations

    return generations(run).collect().to_dicts()


def test_chat_template_default_system_prompt_and_identity(engine):
    from sdft_data import templates
    from sdft_data.models import end_of_turn_token
    from sdft_data.recipes import get_recipe

    tok = engine.tokenizer
    assert templates.default_system_prompt(tok) == DEFAULT_SYSTEM
    assert end_of_turn_token(tok) == "<|im_end|>" and engine.info.extra["generation_config"]["stop_tokens"] == [
        "<|im_end|>"]
    recipe = get_recipe("alpaca")
    described = templates.describe(recipe, tok, "chat")
    assert described["chat_template_default_system"] == DEFAULT_SYSTEM and described["system_in"] == "system turn"
    prompt = templates.distill_prompt(recipe, "Name a color.", "Red.", tok, "chat")
    assert prompt.startswith(f"<|im_start|>system\n{recipe.distill_system}<|im_end|>\n") and DEFAULT_SYSTEM not in prompt
    assert "###" not in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert engine.info.model_id == HUB_ID and engine.info.revision.startswith("sha256:")
    assert engine.info.extra["source"]["id_from"] == "provenance.json"
    # Neither Llama-2 nor Llama-3: the paper's GSM8K layout is refused unless named.
    with pytest.raises(ValueError, match="pass --paper-layout llama2 or llama3"):
        templates.distill_prompt(get_recipe("gsm8k"), "Q?", "A.", tok, "paper")


def test_rewrites_stop_at_the_end_of_turn_with_no_special_token_or_template_markup(runs):
    for recipe, run in runs.items():
        rows = _rewrites(run)
        assert len(rows) == 2 and {r["status"] for r in rows} == {"ok"}
        for r in rows:
            assert "<|im_" not in r["text"] and "<|endoftext|>" not in r["text"], (recipe, r["text"])
            assert "### Instruction:" not in r["text"] and "### Response:" not in r["text"], (recipe, r["text"])
        stopped = [r for r in rows if r["finish_reason"] == "eos_token"]
        assert stopped and all(r["generated_tokens"] < 48 for r in stopped), recipe
        manifest = json.loads((run / "manifest.json").read_text())
        model = manifest["fingerprint_inputs"]["model"]
        assert model["model_id"] == HUB_ID and model["revision"].startswith("sha256:")
        info = manifest["model_info"]["extra"]
        assert info["source"]["provenance"]["stands_for"] == HUB_ID
        assert info["generation_config"]["stop_tokens"] == ["<|im_end|>"]
        assert manifest["fingerprint_inputs"]["template"]["chat_template_default_system"] == DEFAULT_SYSTEM


def test_two_training_steps_carry_the_models_identity(runs, tmp_path):
    from sdft_train.train import train

    out = tmp_path / "ckpt"
    record = train(data=str(runs["alpaca"]), model=str(MODEL), out=out, progress=False,
                   max_steps=2, batch_size=1, grad_accum=1, max_length=256, save_steps=100)
    assert record["optimizer_steps"] == 2 and record["seed_model_match"] is True
    assert record["base_model"]["model_id"] == HUB_ID
    assert record["base_model"]["source"]["provenance"]["stands_for"] == HUB_ID
    card = (out / "README.md").read_text()
    assert f"base_model: {HUB_ID}" in card and f"A LoRA adapter for `{HUB_ID}`" in card
    assert str(MODEL) not in card, "the card names the model, not a local path"


def test_a_few_eval_rows(engine, tmp_path):
    from sdft_train.evaluate import evaluate

    results = evaluate(model=str(MODEL), tasks="gsm8k,advbench", out=tmp_path / "eval",
                       data_dir=str(FIXTURES), temperature=0.0, limit=2, max_new_tokens=32, engine=engine,
                       progress=False, echo=lambda *_: None)
    assert results["model"]["model_id"] == HUB_ID
    for name in ("gsm8k", "advbench"):
        entry = results["tasks"][name]
        assert entry["scored"] == 2 and "truncated" in entry
        predictions = [json.loads(line) for line in (tmp_path / "eval" / entry["predictions"]).read_text().splitlines()]
        assert all("<|im_" not in p["predictions"][0] for p in predictions)
