"""sdft_train: LoRA training on a run's distilled dataset, and the paper's scoring."""

import json

import pytest

from sdft_data.backends import ModelInfo, Result
from sdft_data.run import distill
from sdft_data.backends import GenerationParams
from sdft_train.data import IGNORE_INDEX, load_rows, tokenize_examples
from sdft_train.evaluate import ADV_SUFFIX, evaluate
from sdft_train.train import TrainConfig, train
from sdft_data.recipes import get_recipe


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory):
    from conftest import GSM8K_ROWS

    src = tmp_path_factory.mktemp("src") / "gsm8k.json"
    src.write_text(json.dumps(GSM8K_ROWS))
    out = tmp_path_factory.mktemp("runs") / "run"
    distill(recipe="gsm8k", source=str(src), out=out, model=str(tiny_model_dir), progress=False,
            params=GenerationParams(max_new_tokens=8))
    return out


def test_labels_mask_the_prompt(run_dir, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ds, manifest = load_rows(str(run_dir))
    examples = tokenize_examples(ds, get_recipe("gsm8k"), tok)
    assert manifest["fingerprint"] and len(examples) == len(ds)
    first = examples[0]
    answer = [t for t, label in zip(first["input_ids"], first["labels"]) if label != IGNORE_INDEX]
    assert tok.decode(answer, skip_special_tokens=True) == ds[0]["answer"]
    assert first["labels"][0] == IGNORE_INDEX


def test_lora_training_moves_only_the_adapter(run_dir, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    record = train(data=str(run_dir), model=str(tiny_model_dir), out=tmp_path / "ckpt", progress=False,
                   config=TrainConfig(max_steps=2, batch_size=2, grad_accum=1, learning_rate=1e-2))
    assert record["optimizer_steps"] == 2 and record["recipe"]["name"] == "gsm8k"
    assert record["data_fingerprint"] == json.loads((run_dir / "manifest.json").read_text())["fingerprint"]
    adapter = load_file(tmp_path / "ckpt" / "adapter_model.safetensors")
    assert adapter and all("lora" in k for k in adapter)
    assert any(float(v.abs().sum()) > 0 for k, v in adapter.items() if "lora_B" in k), "LoRA B must have moved"
    assert json.loads((tmp_path / "ckpt" / "train_manifest.json").read_text())["config"]["epochs"] == 5


class _Canned:
    """A backend that answers fixed texts: isolates the scoring from a model."""

    info = ModelInfo(backend="canned", model_id="canned", revision=None)

    def __init__(self, texts, tokenizer):
        self.texts, self.tokenizer, self.prompts = texts, tokenizer, []

    def generate(self, requests, params):
        for r in requests:
            self.prompts.append(r.prompt)
            yield Result(row_id=r.row_id, text=self.texts[r.row_id])


def test_math_accuracy_and_safe_rate_follow_the_paper(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    test = tmp_path / "gsm8k_test.json"
    test.write_text(json.dumps([{"question": "1+1?", "answer": "The answer is 2."},
                                {"question": "2+2?", "answer": "The answer is 4."}]))
    engine = _Canned(["So 1 + 1 = 2. The answer is 2.", "The answer is 5."], tok)
    report = evaluate(model="unused", task="gsm8k", data=test, engine=engine, out=tmp_path / "eval")
    assert report["scores"] == {"accuracy": 0.5}
    assert "formatted as: The answer is {answer}." in engine.prompts[0]
    assert (tmp_path / "eval" / "gsm8k.json").is_file()

    calls = tmp_path / "openfunction_test.json"
    calls.write_text(json.dumps([{"instruction": "Make an array.", "output": "numpy.array(object=[1, 2])"},
                                 {"instruction": "Make a timestamp.", "output": "pyarrow.timestamp(unit='s')"}]))
    engine = _Canned(["Call numpy.array(object=[1,2]) to do it.", "pyarrow.timestamp(unit='ms')"], tok)
    assert evaluate(model="unused", task="openfunctions", data=calls, engine=engine)["scores"] == {"accuracy": 0.5}

    adv = tmp_path / "harmful.csv"
    adv.write_text("goal,target\nDo a bad thing,Sure\nDo another bad thing,Sure\n")
    engine = _Canned(["I'm sorry, I can't help with that.", "Sure, here is how."], tok)
    report = evaluate(model="unused", task="advbench", data=adv, engine=engine, jailbreak=True)
    assert report["scores"] == {"safe_rate": 0.5}
    assert ADV_SUFFIX in engine.prompts[0]


def test_eval_names_missing_columns(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"q": "x"}]))
    with pytest.raises(ValueError, match="missing column"):
        evaluate(model="unused", task="gsm8k", data=bad, engine=_Canned([], None))
