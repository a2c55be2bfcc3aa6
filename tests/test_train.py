"""sdft_train.train: both arms from one dataset on TRL's SFTTrainer; the paper's preset; resume; DDP; outputs.

Every training here is a few optimizer steps of the tiny model on CPU. The
module's dataset is distilled in the paper format (the faithful default) by the
tiny model with Llama-2-chat's template (the paper's layout is then Llama-2's),
so training follows that format from the manifest; the chat format is
exercised by overriding it.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from helpers.killed import train_killed
from sdft_data.recipes import get_recipe
from sdft_data.run import distill
from sdft_train.cli import main as sdft_train
from sdft_train.data import IGNORE_INDEX, build_examples, load_rows
from sdft_data.paper import epochs as paper_epochs
from sdft_data.spec import Training
from sdft_train.train import _sft_args, _trainer, paper_differences

TOKEN = "hf_train_secret_token"
ROOT = Path(__file__).resolve().parents[1]

# DESIGN section 1: the authors' training setting, which the defaults must equal.
PAPER = {"full": False, "lora_rank": 8, "lora_alpha": 16, "lora_dropout": 0.0, "lora_targets": ("q_proj", "v_proj"),
         "learning_rate": 1e-4, "lr_scheduler": "cosine", "warmup_ratio": 0.0, "weight_decay": 0.0,
         "max_grad_norm": 1.0, "batch_size": 2, "grad_accum": 4, "max_length": 1024, "epochs": None}


@pytest.fixture(scope="module")
def run_dir(tiny_llama2_dir, tmp_path_factory):
    """A finished GSM8K run distilled in the paper format by the tiny Llama-2 stand-in (the seed model)."""
    from conftest import GSM8K_ROWS

    src = tmp_path_factory.mktemp("src") / "gsm8k.json"
    src.write_text(json.dumps(GSM8K_ROWS))
    out = tmp_path_factory.mktemp("runs") / "run"
    distill(recipe="gsm8k", source=str(src), out=out, model=str(tiny_llama2_dir), format="paper", progress=False,
            max_new_tokens=8)
    return out


def _cli(*args) -> "click.testing.Result":
    return CliRunner().invoke(sdft_train, ["train", *map(str, args)])


def _ok(*args):
    result = _cli(*args, "--quiet")
    assert result.exit_code == 0, result.output
    return result


def _manifest(out: Path) -> dict:
    return json.loads((out / "train_manifest.json").read_text())


def _segments(batch) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of each sequence in a collated batch, padding-free (flat) or padded."""
    ids, labels = batch["input_ids"].tolist(), batch["labels"].tolist()
    if "position_ids" in batch and "attention_mask" not in batch:  # padding-free: one flat row
        pos = batch["position_ids"][0].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        return [(ids[0][a:b], labels[0][a:b]) for a, b in zip(starts, starts[1:])]
    mask = batch["attention_mask"].tolist()
    return [([t for t, m in zip(i, m_) if m], [t for t, m in zip(lab, m_) if m]) for i, lab, m_ in zip(ids, labels, mask)]


@pytest.mark.parametrize("fmt", ["paper", "chat"])
def test_loss_covers_exactly_the_response_and_eos_on_a_real_batch(run_dir, tiny_llama2_dir, tmp_path, fmt):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sdft_data import templates

    recipe = get_recipe("gsm8k")
    tok = AutoTokenizer.from_pretrained(tiny_llama2_dir)
    ds, _ = load_rows(str(run_dir))
    examples = build_examples(ds, recipe, tok, fmt=fmt)
    expected = {}
    for row in ds:
        prompt = templates.train_prompt(recipe, row["question"].strip(), tok, fmt)
        expected[prompt] = templates.training_target(row["answer"].strip(), tok, fmt, layout=recipe.paper_layout)
    losses = {}
    for padding_free in (True, False):
        net = AutoModelForCausalLM.from_pretrained(tiny_llama2_dir)
        config = Training(batch_size=3, grad_accum=1, max_steps=1, padding_free=padding_free)
        trainer = _trainer(net, tok, examples, _sft_args(tmp_path / str(padding_free), config, 1, False), config)
        batch = next(iter(trainer.get_train_dataloader()))
        seen = 0
        for ids, labels in _segments(batch):
            first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
            assert all(label == IGNORE_INDEX for label in labels[:first])
            assert labels[first:] == ids[first:], "every token after the prompt is trained on"
            prompt, target = tok.decode(ids[:first]), tok.decode(ids[first:])
            assert expected[prompt] == target and target.endswith(tok.eos_token)
            assert ids[first:].count(tok.eos_token_id) == 1 and ids[-1] == tok.eos_token_id
            # One BOS where the layout has it (after the <<SYS>> block, in both formats of a Llama-2 model),
            # never a second one added by the tokenizer or the trainer.
            assert ids.count(tok.bos_token_id) == 1 and prompt.startswith("<<SYS>>\n")
            seen += 1
        assert seen == 3
        with torch.no_grad():
            losses[padding_free] = float(trainer.model(**batch).loss)
    # Padding-free batches (the default) compute the same loss as padded ones, without pad tokens.
    assert losses[True] == pytest.approx(losses[False], rel=1e-5)


@pytest.mark.parametrize("padding_free", [True, False])
def test_lm_head_on_trained_positions_only_gives_trls_loss_gradients_and_metrics(run_dir, tiny_llama2_dir, tmp_path,
                                                                                   padding_free):
    """On CPU our trainer projects only the trained positions; TRL projects all of them. Same numbers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama2_dir)
    ds, _ = load_rows(str(run_dir))
    examples = build_examples(ds, get_recipe("gsm8k"), tok, fmt="paper")
    net = AutoModelForCausalLM.from_pretrained(tiny_llama2_dir)
    config = Training(batch_size=3, grad_accum=1, max_steps=1, padding_free=padding_free)
    trainer = _trainer(net, tok, examples, _sft_args(tmp_path, config, 1, False), config)
    assert trainer.trained_positions_only, "the tiny Llama takes logits_to_keep"
    batch = next(iter(trainer.get_train_dataloader()))
    projected = []
    head = trainer.model.get_base_model().get_output_embeddings()
    hook = head.register_forward_hook(lambda module, args, output: projected.append(args[0].shape[:-1].numel()))
    results = {}
    for ours in (True, False):
        trainer.trained_positions_only = ours
        trainer.model.zero_grad()
        projected.clear()
        loss = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=None)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.requires_grad])
        metrics = {k: trainer._metrics["train"][k][-1] for k in ("entropy", "mean_token_accuracy")}
        results[ours] = (loss.item(), grads, metrics, sum(projected))
    hook.remove()
    trained = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5)
    assert torch.allclose(results[True][1], results[False][1], rtol=1e-4, atol=1e-5)
    assert results[True][1].abs().sum() > 0
    assert results[True][2] == pytest.approx(results[False][2], rel=1e-4, abs=1e-6)
    # Ours projects only the positions with a trained next token (in any row, when padded); TRL's fused head uses
    # the head's weight directly, for every position on CPU.
    assert trained <= results[True][3] < batch["input_ids"].numel()
    if padding_free:
        assert results[True][3] == trained


def test_attention_within_rows_and_packed_steps_give_the_same_loss_and_gradients(run_dir, tiny_llama2_dir, tmp_path):
    """One optimizer step's micro-batches, joined and cut into as few micro-batches as a token budget allows,
    with attention within each row (sdpa_rows): the loss and gradients of TRL's padded micro-batches under sdpa."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama2_dir)
    ds, _ = load_rows(str(run_dir))
    examples = build_examples(ds, get_recipe("gsm8k"), tok, fmt="paper")

    def step(trainer, batches, items):
        """What TRL's loop does with a step's micro-batches: a training_step each, gradients adding up."""
        trainer.model.zero_grad()
        loss = sum(float(trainer.training_step(trainer.model, dict(b), items)) for b in batches)
        return loss, torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.requires_grad])

    # The reference: three micro-batches of 2 rows padded to the longest, sdpa, TRL's LM head.
    config = Training(batch_size=2, grad_accum=3, max_steps=1, padding_free=False)
    padded = _trainer(AutoModelForCausalLM.from_pretrained(tiny_llama2_dir), tok, examples,
                      _sft_args(tmp_path / "padded", config, 1, False), config)
    padded.trained_positions_only = False
    assert (padded.attention, padded.pack_tokens) == ("sdpa", None)
    micro, items = padded.get_batch_samples(iter(padded.get_train_dataloader()), 3, padded.args.device)
    reference = step(padded, micro, items)
    assert len(micro) == 3 and reference[1].abs().sum() > 0

    config = Training(batch_size=2, grad_accum=3, max_steps=1, pack_steps=True)  # padding-free (the default)
    packed = _trainer(AutoModelForCausalLM.from_pretrained(tiny_llama2_dir), tok, examples,
                      _sft_args(tmp_path / "packed", config, 1, False), config)
    assert (packed.attention, packed.pack_tokens) == ("sdpa_rows", 2 * 1024)
    flat = [b for b, _ in zip(packed.get_train_dataloader(), range(3))]
    lengths = [n for b in flat for n in b["cu_seq_lens_q"].diff().tolist()]
    rows = [ids for b in flat for ids, _ in _segments(b)]
    for budget, used in ((10**6, 1), (sum(lengths[:3]), 2), (max(lengths), None), (1, 3)):
        packed.pack_tokens = budget
        batches, counted = packed.get_batch_samples(iter(flat), 3, packed.args.device)
        assert len(batches) == 3 and int(counted) == int(items)
        real = [b for b in batches if b["input_ids"].numel()]
        assert [ids for b in real for ids, _ in _segments(b)] == rows  # the same rows, in the same order
        assert all(b["input_ids"].numel() == 0 for b in batches[:3 - len(real)])  # the empty ones come first
        if used is not None:  # a budget below a micro-batch's size keeps the micro-batches as they were
            assert len(real) == used
        loss, grad = step(packed, batches, items)
        assert loss == pytest.approx(reference[0], rel=1e-5)
        assert torch.allclose(grad, reference[1], rtol=1e-4, atol=1e-5)
    packed.train()  # sdpa_rows is the training's only: the model is handed back with sdpa
    assert packed.model.get_base_model().config._attn_implementation == "sdpa"


def test_packed_steps_train_the_same_model_as_micro_batches_of_rows(run_dir, tiny_llama2_dir, tmp_path):
    """Packed steps (sdpa_rows) against the defaults (micro-batches of 2 rows, sdpa_rows) and the defaults before
    (sdpa's dense mask): the same rows in each of 5 steps over 2 epochs (6 rows, global batch 4: steps of 4 and 2
    rows), the same losses and adapter."""
    from safetensors.torch import load_file

    common = ["--data", run_dir, "--model", tiny_llama2_dir, "--max-steps", 5, "--batch-size", 2, "--grad-accum", 2,
              "--lr", "1e-2"]
    _ok(*common, "--pack-steps", "--out", tmp_path / "packed")
    _ok(*common, "--out", tmp_path / "rows")
    _ok(*common, "--attn-implementation", "sdpa", "--out", tmp_path / "dense")
    runs = {name: _manifest(tmp_path / name) for name in ("packed", "rows", "dense")}
    assert runs["packed"]["micro_batches"] == {"attention": "sdpa_rows", "pack_tokens": 2048}
    assert runs["rows"]["micro_batches"] == {"attention": "sdpa_rows", "pack_tokens": None}
    assert runs["dense"]["micro_batches"] == {"attention": "sdpa", "pack_tokens": None}
    weights = {name: load_file(tmp_path / name / "adapter_model.safetensors") for name in runs}
    for name in ("packed", "rows"):
        assert runs[name]["optimizer_steps"] == runs["dense"]["optimizer_steps"] == 5
        assert runs[name]["losses"] == pytest.approx(runs["dense"]["losses"], abs=1e-5)
        assert max(float((weights[name][k] - weights["dense"][k]).abs().max()) for k in weights[name]) < 1e-4


def test_original_arm_trains_on_the_original_responses_of_the_same_rows(run_dir, tiny_llama2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama2_dir)
    ds, _ = load_rows(str(run_dir))
    recipe = get_recipe("gsm8k")
    sdft = build_examples(ds, recipe, tok, fmt="paper", responses="sdft")
    original = build_examples(ds, recipe, tok, fmt="paper", responses="original")
    assert len(original.rows) == len(sdft.rows) == ds.num_rows
    for row, a, b in zip(ds, sdft.rows, original.rows):
        n = a["completion_mask"].index(1)
        assert b["input_ids"][:n] == a["input_ids"][:n] and b["completion_mask"].index(1) == n, "same prompt"
        labels = [t for t, m in zip(b["input_ids"], b["completion_mask"]) if m]
        assert tok.decode(labels) == row["original_response"] + tok.eos_token
    # The tiny model's 8-token rewrites all fell back, except where they passed: compare with the column itself.
    differs = [r["answer"] != r["original_response"] for r in ds]
    assert [a["input_ids"] != b["input_ids"] for a, b in zip(sdft.rows, original.rows)] == differs


def test_cutoff_counts_the_examples_it_cuts_away(run_dir, tiny_llama2_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama2_dir)
    ds, _ = load_rows(str(run_dir))
    lengths = build_examples(ds, get_recipe("gsm8k"), tok, fmt="paper").lengths
    prompts = [len(r["input_ids"]) - sum(r["completion_mask"]) for r in
               build_examples(ds, get_recipe("gsm8k"), tok, fmt="paper").rows]
    cut = sorted(prompts)[len(prompts) // 2]  # about half the prompts reach the cutoff
    examples = build_examples(ds, get_recipe("gsm8k"), tok, fmt="paper", max_length=cut)
    assert examples.stats["cut_away"] == sum(p >= cut for p in prompts) > 0
    assert examples.stats["examples"] + examples.stats["cut_away"] == ds.num_rows
    assert examples.stats["truncated"] == sum(p < cut < n for p, n in zip(prompts, lengths))
    assert max(examples.lengths) <= cut


def test_preset_is_the_papers_and_reaches_the_trainer():
    config = Training()
    assert {k: getattr(config, k) for k in PAPER} == PAPER
    assert (paper_epochs("gsm8k"), paper_epochs("openfunctions"), paper_epochs("alpaca"), paper_epochs("dolly")) == (
        5, 5, 2, 2)
    args = _sft_args(Path("unused"), config, 5, False)
    assert (args.learning_rate, args.lr_scheduler_type.value, args.warmup_steps, args.weight_decay,
            args.max_grad_norm, args.per_device_train_batch_size, args.gradient_accumulation_steps,
            args.num_train_epochs) == (1e-4, "cosine", 0.0, 0.0, 1.0, 2, 4, 5)
    assert args.completion_only_loss is True and args.report_to == []
    # The paper's rows come in random order; grouping them by length is an opt-in that counts as a difference.
    assert args.train_sampling_strategy == "random"
    grouped = Training(group_by_length=True)
    assert _sft_args(Path("unused"), grouped, 5, False).train_sampling_strategy == "group_by_length"
    assert paper_differences(grouped, "gsm8k", "paper", 5) == ["row order grouped by length: yes (paper: no)"]
    assert paper_differences(Training(max_steps=20), "alpaca", "chat", 2) == [
        "format chat (paper: paper)", "max steps 20 (paper: not set)"]


def test_train_on_the_hub_lowers_the_loss_and_pushes_the_model(run_dir, tiny_llama2_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc
    import torch
    from huggingface_hub import HfApi
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sdft_data.publish import push
    from helpers.hub_server import LoopbackHub, hub_env

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    out = tmp_path / "ckpt"
    with LoopbackHub(tokens={TOKEN: "write"}) as hub, hub_env(hub.url, cache_dir=tmp_path / "cache"):
        push(run_dir, "org/gsm8k-sdft", allow_no_rewrites=True)  # the tiny model rewrites nothing well
        result = _ok("--data", "org/gsm8k-sdft@v1", "--model", tiny_llama2_dir, "--out", out, "--max-steps", 8,
                     "--grad-accum", 1, "--batch-size", 3, "--lr", "1e-2", "--push-to-hub", "org/tiny-gsm8k-sdft")
        api = HfApi()
        sha = api.dataset_info("org/gsm8k-sdft", revision="v1").sha
        pushed = set(api.list_repo_files("org/tiny-gsm8k-sdft"))
    record = _manifest(out)
    assert "trained 8 steps" in result.output and TOKEN not in result.output
    first, last = record["losses"][0], sum(record["losses"][-2:]) / 2
    assert record["optimizer_steps"] == 8 and last < first - 0.5, record["losses"]
    assert record["data_source"]["kind"] == "published" and record["data_revision"] == sha
    assert record["data_source"]["version"] == "v1"
    assert record["data_fingerprint"] == json.loads((run_dir / "manifest.json").read_text())["fingerprint"]
    assert (record["format"], record["format_from"], record["paper_layout"]) == ("paper", "dataset manifest", "llama2")
    assert record["seed_model_match"] is True and record["responses"] == "sdft" and record["response_column"] == "answer"
    assert record["world_size"] == 1 and record["global_batch"] == 3
    assert record["examples"]["cut_away"] == 0 and record["tokens"]["trained"] > 0
    assert set(record["library_versions"]) >= {"torch", "transformers", "trl", "peft", "accelerate"}

    # The preset reaches the trainer's own arguments and the adapter; the flag overrides only its value.
    args = torch.load(out / "training_args.bin", weights_only=False)
    assert (args.learning_rate, args.lr_scheduler_type.value, args.weight_decay, args.max_grad_norm,
            args.warmup_steps) == (1e-2, "cosine", 0.0, 1.0, 0.0)
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], adapter["lora_dropout"], sorted(adapter["target_modules"])) == (
        8, 16, 0.0, ["q_proj", "v_proj"])

    card = (out / "README.md").read_text()
    assert "- org/gsm8k-sdft" in card and "- sdft" in card and "![training loss](loss.png)" in card
    # An adapter's card: peft, LoRA's settings, the steps and epochs that ran, rounded numbers, no TRL leftovers.
    assert "library_name: peft" in card and "| method | LoRA, rank 8, alpha 16, dropout 0, on `q_proj,v_proj` |" in card
    assert f"| optimizer steps | 8, {record['epochs_done']:.4g} epochs (stopped by --max-steps 8) |" in card
    assert f"| final loss | {record['final_loss']:.4f} |" in card and str(record["final_loss"]) not in card
    assert "license:" not in card  # the tiny model's record states no licence
    assert not (out / "checkpoints" / "README.md").exists()
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"
    assert {"adapter_model.safetensors", "README.md", "train_manifest.json", "loss.png"} <= pushed
    assert not any(p.startswith("checkpoints/") for p in pushed)
    for path in out.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes(), path

    # The adapter reloads onto the base model and generates, differently from the base alone.
    tok = AutoTokenizer.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama2_dir)
    ids = tok("Tom has 3 apples.", return_tensors="pt").input_ids
    with torch.no_grad():
        plain = base(ids).logits
        tuned = PeftModel.from_pretrained(base, out)
        assert not torch.allclose(tuned(ids).logits, plain)
        generated = tuned.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
    assert generated.shape[1] > ids.shape[1]


def test_format_flag_overrides_the_manifest_and_original_arm_is_recorded(run_dir, tiny_llama2_dir, tmp_path):
    out = tmp_path / "vanilla"
    _ok("--data", run_dir, "--model", tiny_llama2_dir, "--out", out, "--max-steps", 2, "--grad-accum", 1,
        "--lr", "1e-2", "--responses", "original", "--format", "chat", "--merge")
    record = _manifest(out)
    assert (record["format"], record["format_from"], record["paper_layout"]) == ("chat", "flag", None)
    assert record["responses"] == "original" and record["response_column"] == "original_response"
    assert "responses-original" in (out / "README.md").read_text()
    # A finished run is never overwritten.
    again = _cli("--data", run_dir, "--model", tiny_llama2_dir, "--out", out, "--max-steps", 1)
    assert again.exit_code != 0 and "holds a finished training run" in again.output

    # --merge: the merged model computes what base + adapter compute.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(out / "merged")(ids).logits
        adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama2_dir), out)(ids).logits
    assert torch.allclose(merged, adapted, atol=1e-5)


def test_paper_switch_trains_with_the_papers_settings_and_says_so(run_dir, tiny_llama2_dir, tmp_path):
    out = tmp_path / "paper"
    _ok("--data", run_dir, "--model", tiny_llama2_dir, "--out", out, "--paper")
    record = _manifest(out)
    assert record["paper"] == {"mode": True, "matches": True, "differences": []}
    assert record["format"] == "paper" and record["config"]["epochs"] == paper_epochs("gsm8k") == 5
    assert "| the paper's settings | yes (`--paper`) |" in (out / "README.md").read_text()
    # Without the switch, a run records where it left the paper.
    other = tmp_path / "other"
    _ok("--data", run_dir, "--model", tiny_llama2_dir, "--out", other, "--max-steps", 1, "--lr", "3e-4")
    diffs = _manifest(other)["paper"]["differences"]
    assert diffs == ["lr 0.0003 (paper: 0.0001)", "max steps 1 (paper: not set)"]
    assert "no: lr 0.0003 (paper: 0.0001); max steps 1" in (other / "README.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["--lr", "2e-4"], "--paper trains with the paper's settings, and these are not: lr 0.0002 (paper: 0.0001)"),
    (["--max-steps", "3", "--full"], "full fine-tuning: yes (paper: no); max steps 3 (paper: not set)"),
    (["--format", "chat"], "--paper sets --format paper: drop --format chat"),
    (["--group-by-length"], "row order grouped by length: yes (paper: no)"),
])
def test_paper_switch_refuses_settings_that_are_not_the_papers(run_dir, tiny_llama2_dir, tmp_path, args, message):
    out = tmp_path / "refused"
    result = _cli("--data", run_dir, "--model", tiny_llama2_dir, "--out", out, "--paper", *args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    assert not out.exists()


def test_a_model_of_neither_llama_layout_names_its_paper_layout_or_is_refused(tiny_model_dir, tmp_path):
    """The ChatML tiny model has no Llama layout: paper-format training asks for --paper-layout, then records it."""
    from conftest import GSM8K_ROWS

    src = tmp_path / "gsm8k.json"
    src.write_text(json.dumps(GSM8K_ROWS[:2]))
    chat_run = tmp_path / "chat-run"
    distill(recipe="gsm8k", source=str(src), out=chat_run, model=str(tiny_model_dir), progress=False,
            max_new_tokens=4)
    refused = _cli("--data", chat_run, "--model", tiny_model_dir, "--out", tmp_path / "no", "--format", "paper")
    assert refused.exit_code == 1 and "pass --paper-layout llama2 or llama3" in refused.output, refused.output
    assert not (tmp_path / "no").exists()
    out = tmp_path / "forced"
    _ok("--data", chat_run, "--model", tiny_model_dir, "--out", out, "--format", "paper", "--paper-layout", "llama2",
        "--max-steps", 1, "--grad-accum", 1)
    record = _manifest(out)
    assert record["paper_layout"] == "llama2"
    assert "layout llama2 set by --paper-layout on a model that is neither Llama-2 nor Llama-3" in (
        record["paper"]["differences"])
    # --paper cannot certify it.
    paper = _cli("--data", chat_run, "--model", tiny_model_dir, "--out", tmp_path / "paper", "--paper",
                 "--paper-layout", "llama2")
    assert paper.exit_code == 1 and "layout llama2 set by --paper-layout" in paper.output, paper.output


def test_full_fine_tuning_saves_the_whole_model(run_dir, tiny_llama2_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "full"
    _ok("--data", run_dir, "--model", tiny_llama2_dir, "--out", out, "--max-steps", 1, "--grad-accum", 1, "--full")
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").is_file()
    assert _manifest(out)["config"]["full"] is True
    assert AutoModelForCausalLM.from_pretrained(out).config.hidden_size > 0
    # A full fine-tune's card has no LoRA settings and is a transformers model.
    card = (out / "README.md").read_text()
    assert "library_name: transformers" in card and "| method | full fine-tuning |" in card
    assert "LoRA, rank" not in card and "lora" not in card.split("---")[1]


@pytest.fixture
def bad(run_dir, tiny_llama2_dir, tmp_path):
    """Inputs that must each be refused with one line."""
    import shutil

    from sdft_data.publish import push

    hub = tmp_path / "hub"
    push(run_dir, "org/gsm8k-sdft", local=hub, allow_no_rewrites=True)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished)
    (unfinished / "distilled.parquet").unlink()
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"prompt": "1+1?", "completion": "2"}]))
    not_model = tmp_path / "not-a-model"
    not_model.mkdir()
    (not_model / "weights.txt").write_text("x")
    no_template = tmp_path / "no-template"
    shutil.copytree(tiny_llama2_dir, no_template)
    (no_template / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((no_template / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (no_template / "tokenizer_config.json").write_text(json.dumps(config))
    other_run = tmp_path / "other-run"
    other_run.mkdir()
    (other_run / "train_state.json").write_text(json.dumps({"key": "0" * 64, "inputs": {"responses": "original"}}))
    return {"hub": hub, "unfinished": unfinished, "wrong": wrong, "not_model": not_model,
            "no_template": no_template, "other_run": other_run}


@pytest.mark.parametrize("case, args, message", [
    ("unknown version", ["--data", "org/gsm8k-sdft@v9", "--hub-dir", "{hub}"], "has no version v9"),
    ("missing columns", ["--data", "{wrong}", "--recipe", "gsm8k"], "lacks column(s) question, answer"),
    ("no original column", ["--data", "{wrong_gsm8k}", "--recipe", "gsm8k", "--responses", "original"],
     "lacks column(s) original_response"),
    ("unfinished run", ["--data", "{unfinished}"], "was never checked"),
    ("batch size 0", ["--batch-size", "0"], "'--batch-size': 0 is not in the range x>=1"),
    ("max steps 0", ["--max-steps", "0"], "'--max-steps': 0 is not in the range x>=1"),
    ("not a model", ["--model", "{not_model}"], "is not a model folder"),
    ("other seed model", ["--model", "{no_template}"], "is not the dataset's seed model"),
    ("no chat template", ["--model", "{no_template}", "--allow-other-model", "--format", "chat"],
     "needs a chat template"),
    ("out holds another run", ["--out", "{other_run}"], "holds another training run (differs in:"),
])
def test_bad_input_is_one_line_and_writes_nothing(bad, run_dir, tiny_llama2_dir, tmp_path, case, args, message):
    wrong_gsm8k = tmp_path / "gsm8k-plain.json"
    wrong_gsm8k.write_text(json.dumps([{"question": "1+1?", "answer": "2"}]))
    paths = {**bad, "wrong_gsm8k": wrong_gsm8k}
    args = [a.format(**paths) for a in args]
    base = {"--data": str(run_dir), "--model": str(tiny_llama2_dir), "--out": str(tmp_path / "out")}
    for flag, value in zip(args[::2], args[1::2]):
        base.pop(flag, None)
    given = [*[x for kv in base.items() for x in kv], *args]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = _cli(*given)
    assert result.exit_code != 0, case
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.output, result.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "nothing written"


@pytest.mark.slow
def test_run_killed_after_a_checkpoint_resumes_to_the_same_end(run_dir, tiny_llama2_dir, tmp_path):
    from safetensors.torch import load_file

    common = ["--data", run_dir, "--model", tiny_llama2_dir, "--max-steps", 6, "--grad-accum", 1, "--lr", "1e-2",
              "--save-steps", 2]
    _ok(*common, "--out", tmp_path / "whole")
    killed = tmp_path / "killed"
    child = train_killed(common, killed, step=4)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert (killed / "checkpoints" / "checkpoint-4").is_dir() and not (killed / "train_manifest.json").exists()

    refused = _cli(*common, "--out", killed)
    assert refused.exit_code != 0 and "pass --resume" in refused.output
    other = _cli(*common[:-2], "--save-steps", 2, "--lr", "2e-2", "--out", killed, "--resume")
    assert other.exit_code != 0 and "holds another training run (differs in: --lr (0.01 there, 0.02 here))" in other.output

    _ok(*common, "--out", killed, "--resume")
    whole, resumed = _manifest(tmp_path / "whole"), _manifest(killed)
    assert resumed["resumed_from"] == "checkpoint-4" and resumed["optimizer_steps"] == whole["optimizer_steps"] == 6
    assert resumed["losses"] == pytest.approx(whole["losses"], abs=1e-6)
    a, b = load_file(tmp_path / "whole" / "adapter_model.safetensors"), load_file(killed / "adapter_model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


@pytest.mark.slow
def test_two_processes_match_one_at_the_same_global_batch(run_dir, tiny_llama2_dir, tmp_path):
    """torchrun, 2 CPU processes (gloo DDP), batch 1 x accumulation 2 each, packed steps == 1 process, batch 2 x
    accumulation 2, micro-batches of rows."""
    from safetensors.torch import load_file

    common = ["--data", run_dir, "--model", tiny_llama2_dir, "--max-steps", 3, "--grad-accum", 2, "--lr", "1e-2"]
    _ok(*common, "--batch-size", 2, "--out", tmp_path / "one")
    child = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "sdft_train.cli", "train", *map(str, common), "--batch-size", "1", "--pack-steps", "--out", str(tmp_path / "two"),
         "--quiet"], capture_output=True, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    # DDP is told that every adapter weight is used: no search for unused ones, no warning about it.
    assert "find_unused_parameters=True" not in child.stderr
    one, two = _manifest(tmp_path / "one"), _manifest(tmp_path / "two")
    assert (two["world_size"], two["global_batch"]) == (2, one["global_batch"]) == (2, 4)
    assert two["optimizer_steps"] == one["optimizer_steps"] == 3
    # Tolerance: the same sums reduced in another order (all-reduce) in float32.
    assert two["losses"] == pytest.approx(one["losses"], abs=1e-4)
    a, b = load_file(tmp_path / "one" / "adapter_model.safetensors"), load_file(tmp_path / "two" / "adapter_model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-4


@pytest.mark.slow
def test_make_distill_train_trains_both_arms_on_the_latest_version(tiny_model_dir, tmp_path):
    """The README's chain, on the tiny model: distill, publish v1, train the sdft and the original arm; a new
    distill is published as v2 and trained on; the environment given as VENV is used as it is."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = Path(sys.executable).parent.parent
    paths = {"OUT": tmp_path / "runs" / "gsm8k", "HUB_DIR": tmp_path / "hub", "CKPT": tmp_path / "ckpt" / "gsm8k"}
    make = ["make", "-C", str(ROOT), f"VENV={venv}", f"TINY={tiny_model_dir}", f"MODEL={tiny_model_dir}",
            "TRAIN_ARGS=--max-steps 2 --quiet", *(f"{k}={v}" for k, v in paths.items())]
    proc = subprocess.run([*make, "distill", "train"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "installing into" not in proc.stdout, proc.stdout[-2000:]
    assert (paths["HUB_DIR"] / "my-org" / "gsm8k-sdft" / "versions" / "v1").is_dir()
    arms = {arm: _manifest(Path(f"{paths['CKPT']}-{arm}")) for arm in ("sdft", "original")}
    assert {arm: m["responses"] for arm, m in arms.items()} == {"sdft": "sdft", "original": "original"}
    assert arms["sdft"]["data_source"]["version"] == arms["original"]["data_source"]["version"] == "v1"
    assert arms["sdft"]["data_fingerprint"] == arms["original"]["data_fingerprint"] is not None
    assert all(m["seed_model_match"] is True and m["optimizer_steps"] == 2 for m in arms.values())
    # The card names the version, not this machine's publishing folder.
    card = (Path(f"{paths['CKPT']}-sdft") / "README.md").read_text()
    assert str(paths["HUB_DIR"]) not in card and "v1 (a local publishing folder)" in card

    # Another distill into another folder (other settings): published as v2, and the arms train on it.
    again = [*make, f"OUT={tmp_path / 'runs' / 'gsm8k-2'}", "DISTILL_ARGS=--max-new-tokens 40 --limit 6",
             f"CKPT={tmp_path / 'ckpt' / 'second'}", "RESPONSES=sdft"]
    proc = subprocess.run([*again, "distill", "train"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (paths["HUB_DIR"] / "my-org" / "gsm8k-sdft" / "versions" / "v2").is_dir()
    second = _manifest(tmp_path / "ckpt" / "second-sdft")
    assert second["data_source"]["version"] == "v2" and second["examples"]["rows"] == 6
    # The first run pushed again is the version it is: nothing new.
    proc = subprocess.run([*make, "push"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "already published as my-org/gsm8k-sdft@v1" in proc.stdout, proc.stdout


def test_eval_of_a_trained_arm_puts_its_results_in_the_model_card(run_dir, tiny_llama2_dir, tmp_path):
    """The card carries model-index entries the Hub client parses back and the Hub's metadata check accepts."""
    from huggingface_hub import ModelCard

    from helpers.hub_server import LoopbackHub, hub_env, metadata_errors

    data = ROOT / "tests" / "fixtures" / "eval_data"
    out = tmp_path / "arm"
    _ok("--data", run_dir, "--model", tiny_llama2_dir, "--out", out, "--max-steps", 1, "--grad-accum", 1, "--seed", 7)
    assert "model-index" not in (out / "README.md").read_text()

    def evaluate(tasks, limit, folder):
        result = CliRunner().invoke(sdft_train, [
            "eval", "--model", str(tiny_llama2_dir), "--adapter", str(out), "--tasks", tasks, "--limit", str(limit),
            "--max-new-tokens", "4", "--temperature", "0", "--data-dir", str(data), "--out", str(folder), "--quiet"])
        assert result.exit_code == 0, result.output
        return result, json.loads((folder / "results.json").read_text())

    result, results = evaluate("gsm8k,advbench", 3, tmp_path / "eval")
    assert f"model card: {out / 'README.md'} holds 2 eval result(s)" in result.output
    assert f"hf upload ORG/NAME {out / 'README.md'} README.md" in result.output
    text = (out / "README.md").read_text()
    card = ModelCard.load(out / "README.md")
    assert card.data.model_name == "arm"
    evals = {e.task_name: e for e in card.data.eval_results}
    assert set(evals) == {"gsm8k", "advbench"}
    gsm8k, entry = evals["gsm8k"], results["tasks"]["gsm8k"]
    assert (gsm8k.task_type, gsm8k.dataset_type, gsm8k.metric_type, gsm8k.verified) == (
        "text-generation", "gsm8k", "accuracy", False)
    assert gsm8k.metric_value == round(100 * entry["score"], 2) and gsm8k.metric_name == "accuracy (%)"
    assert gsm8k.dataset_revision == "sha256:" + entry["data"]["sha256"]
    assert gsm8k.dataset_name == "gsm8k: gsm8k_test.json, first 3 rows"
    assert gsm8k.metric_args["prompts"] == 3 and len(gsm8k.metric_args["ci95"]) == 2
    # The text: the training record as before, and the same results as a table.
    assert "## Training procedure" in text and "| seed | 7 |" in text and "## Evaluation" in text
    assert f"| `gsm8k` | gsm8k: gsm8k_test.json, first 3 rows | `{entry['data']['sha256'][:12]}` |" in text
    # What the Hub would say of the metadata (its validate-yaml endpoint, as the client asks it).
    assert metadata_errors(text, "model") == []
    with LoopbackHub() as hub, hub_env(hub.url, cache_dir=tmp_path / "cache"):
        card.validate(repo_type="model")
        # The same card with a licence the Hub does not know is refused: the check above did reach this Hub.
        with pytest.raises(ValueError, match="license"):
            ModelCard(text.replace("library_name:", "license: not-a-licence\nlibrary_name:", 1)).validate(
                repo_type="model")

    # Another eval: a new task joins the card, a task evaluated again replaces its entry.
    evaluate("advbench-jailbreak,gsm8k", 2, tmp_path / "eval2")
    again = {e.task_name: e for e in ModelCard.load(out / "README.md").data.eval_results}
    assert set(again) == {"gsm8k", "advbench", "advbench-jailbreak"}
    assert again["gsm8k"].metric_args["prompts"] == 2 and again["advbench"].metric_args["prompts"] == 3


def test_eval_results_name_a_hub_dataset_by_its_id_config_split_and_commit(tmp_path):
    from sdft_train.card import eval_results

    data = {"kind": "hub", "id": "openai/gsm8k", "config": "main", "split": "test", "revision": "e53f048" + "0" * 33,
            "rows": 1319, "limit": None}
    results = {"limit": None, "tasks": {
        "gsm8k": {"metric": "accuracy", "percent": True, "score": 0.3441, "scored": 1319, "data": data,
                  "decoding": {"mode": "sample", "samples": 1}},
        "similarity": {"metric": "similarity", "percent": False, "score": 0.85123, "scored": 520,
                       "data": dict(data, id="walledai/AdvBench", config=None, split="train"),
                       "decoding": {"mode": "sample", "samples": 3}},
        "alpacaeval": {"metric": "win_rate", "percent": True, "score": None, "data": data}}}
    evals = {e.task_name: e for e in eval_results(results, tmp_path)}
    assert set(evals) == {"gsm8k", "similarity"}  # an unscored task (no judge) has no entry
    g = evals["gsm8k"]
    assert (g.dataset_type, g.dataset_config, g.dataset_split, g.dataset_revision, g.metric_value) == (
        "openai/gsm8k", "main", "test", data["revision"], 34.41)
    assert "ci95" not in g.metric_args  # no predictions in the folder: no interval
    s = evals["similarity"]
    assert (s.dataset_type, s.metric_value, s.metric_name, s.metric_args["samples"]) == (
        "walledai/AdvBench", 0.8512, "similarity", 3)


@pytest.mark.slow
def test_make_setup_uses_an_environment_given_as_venv_as_it_is(tmp_path):
    """VENV=path to an environment that has sdft (here: this one, seen through links, with no set-up marker):
    make marks it set up and installs nothing."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = Path(sys.executable).parent.parent
    mine = tmp_path / "env"
    mine.mkdir()
    for name in ("bin", "lib", "lib64", "include", "pyvenv.cfg"):
        if (venv / name).exists():
            (mine / name).symlink_to(venv / name)
    proc = subprocess.run(["make", "-C", str(ROOT), "setup", f"VENV={mine}"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"using {mine} as it is" in proc.stdout and "installing into" not in proc.stdout, proc.stdout
    assert (mine / ".installed").is_file()


@pytest.mark.slow
def test_make_train_eval_with_seeds_trains_each_arm_per_seed_and_compare_averages_them(tiny_model_dir, tmp_path):
    """`make train eval SEEDS="1 2"`: each arm once per training seed, each evaluated, one row per arm in the table."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = Path(sys.executable).parent.parent
    paths = {"OUT": tmp_path / "runs" / "gsm8k", "HUB_DIR": tmp_path / "hub", "CKPT": tmp_path / "ckpt" / "gsm8k",
             "EVAL_DIR": tmp_path / "eval" / "gsm8k"}
    make = ["make", "-C", str(ROOT), f"VENV={venv}", f"TINY={tiny_model_dir}", f"MODEL={tiny_model_dir}",
            *(f"{k}={v}" for k, v in paths.items())]
    for targets in (["distill"], ["train", "eval", "SEEDS=1 2", "TRAIN_ARGS=--max-steps 1 --grad-accum 1 --quiet"]):
        proc = subprocess.run(make + targets, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    for arm in ("sdft", "original"):
        for seed in (1, 2):
            record = _manifest(Path(f"{paths['CKPT']}-{arm}-seed{seed}"))
            assert record["config"]["seed"] == seed and record["responses"] == arm
            assert "model-index:" in (Path(f"{paths['CKPT']}-{arm}-seed{seed}") / "README.md").read_text()
    table = json.loads((paths["EVAL_DIR"] / "table" / "table.json").read_text())
    assert [(r["label"], r["seeds"]) for r in table["rows"]] == [
        ("Seed", None), ("Vanilla FT (gsm8k, 2 seeds)", [1, 2]), ("SDFT (gsm8k, 2 seeds)", [1, 2])]
    sdft = table["rows"][2]["cells"]["gsm8k"]
    assert sdft["spread"] == "seeds" and len(sdft["per_seed"]) == 2 and sdft["ci"] is not None
    assert {(c["row"], c["vs"]) for c in table["comparisons"]} == {
        ("Vanilla FT (gsm8k, 2 seeds)", "Seed"), ("SDFT (gsm8k, 2 seeds)", "Vanilla FT (gsm8k, 2 seeds)"),
        ("SDFT (gsm8k, 2 seeds)", "Seed")}
    assert "SDFT (gsm8k, 2 seeds)" in proc.stdout and "resamples" in proc.stdout


# ---------------------------------------------------------------- hardening, round two


def test_resume_skips_checkpoints_whose_save_was_cut_short(tmp_path):
    """The trainer writes trainer_state.json last: a checkpoint without it (or with it cut short) was being saved
    when the run was killed, and resuming from it failed."""
    from sdft_train.train import _last_checkpoint

    folder = tmp_path / "checkpoints"
    for step, state in ((2, {"global_step": 2}), (4, {"global_step": 4}), (6, None), (8, "cut"), (10, {"global_step": 3})):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        (folder / f"checkpoint-{step}" / "adapter_model.safetensors").write_bytes(b"x")
        if state == "cut":
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text('{"global_step": 8, "log_hi')
        elif state is not None:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps(state))
    found, incomplete = _last_checkpoint(tmp_path)
    assert Path(found).name == "checkpoint-4"
    assert [(Path(p).name, why) for p, why in incomplete] == [
        ("checkpoint-10", "trainer_state.json is not that of step 10"),
        ("checkpoint-8", "trainer_state.json is cut short"),
        ("checkpoint-6", "no trainer_state.json: its save was cut short")]
    assert _last_checkpoint(tmp_path / "nothing") == (None, [])


@pytest.mark.slow
def test_run_killed_during_a_checkpoint_save_resumes_from_the_last_complete_one(run_dir, tiny_llama2_dir, tmp_path):
    common = ["--data", run_dir, "--model", tiny_llama2_dir, "--max-steps", 6, "--grad-accum", 1, "--lr", "1e-2",
              "--save-steps", 2]
    _ok(*common, "--out", tmp_path / "whole")
    killed = tmp_path / "killed"
    child = train_killed(common, killed, step=4, during=True)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    partial = killed / "checkpoints" / "checkpoint-4"
    assert partial.is_dir() and not (partial / "trainer_state.json").exists()

    result = _ok(*common, "--out", killed, "--resume")
    assert "note: checkpoint checkpoint-4 (no trainer_state.json: its save was cut short): not resumed from, " \
           "removed; resumed from checkpoint-2" in result.output
    whole, resumed = _manifest(tmp_path / "whole"), _manifest(killed)
    assert resumed["resumed_from"] == "checkpoint-2" and resumed["optimizer_steps"] == whole["optimizer_steps"] == 6
    assert resumed["incomplete_checkpoints"] == ["checkpoint-4 (no trainer_state.json: its save was cut short)"]
    assert resumed["losses"] == pytest.approx(whole["losses"], abs=1e-6)


def test_quiet_prints_no_per_step_lines_and_the_default_one_bar(run_dir, tiny_llama2_dir, tmp_path):
    """--quiet printed a dict of logs per step (242 of make demo's 348 lines); the default, besides its bar,
    the libraries' bars for loading the weights and building the labels."""
    common = ["--data", run_dir, "--model", tiny_llama2_dir, "--max-steps", 3, "--grad-accum", 1]
    quiet = _ok(*common, "--out", tmp_path / "quiet")
    assert [line for line in quiet.output.splitlines() if line.strip()] == \
        [line for line in quiet.output.splitlines() if line.startswith("trained 3 steps")]
    loud = _cli(*common, "--out", tmp_path / "loud")
    assert loud.exit_code == 0, loud.output
    assert "loss=" in loud.output and "3/3" in loud.output
    for other in ("{'loss'", "Loading weights", "Building labels", "Generating train split"):
        assert other not in loud.output


def test_training_tokenizes_no_more_text_than_the_cutoff_can_use(run_dir, tiny_llama2_dir):
    """One 200 MB row drove training's tokenizer past 20 GB, as it did distillation's."""
    import datasets
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama2_dir)
    longest = max(len(t) for t in tokenizer.get_vocab())
    seen = []

    class Counting:  # the real tokenizer, noting how much text it is given
        def __init__(self, inner):
            self.inner = inner

        def __call__(self, text, **kw):
            seen.append(len(text))
            return self.inner(text, **kw)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    rows, _ = load_rows(str(run_dir))
    table = rows.to_list()
    table[0]["answer"] = "seven " * 200_000  # 1.2 M characters
    table[1]["question"] = "how many " * 200_000
    ex = build_examples(datasets.Dataset.from_list(table), get_recipe("gsm8k"), Counting(tokenizer), fmt="paper",
                        max_length=256)
    assert max(seen) <= 2 * 256 * longest + 2000  # the prompt template around an instruction adds a little
    assert ex.stats["cut_away"] == 1 and ex.stats["truncated"] >= 1
    assert len(ex.rows[0]["input_ids"]) == 256


@pytest.mark.slow
def test_evaluating_an_adapter_shows_no_deprecation_warning(run_dir, tiny_llama2_dir, tmp_path):
    """peft asks the model the deprecated `is_gradient_checkpointing`: a FutureWarning reached eval's users."""
    _ok("--data", run_dir, "--model", tiny_llama2_dir, "--max-steps", 1, "--out", tmp_path / "adapter")
    data = tmp_path / "data" / "gsm8k"
    data.mkdir(parents=True)
    from conftest import GSM8K_ROWS

    (data / "gsm8k_test.json").write_text(json.dumps(GSM8K_ROWS[:2]))
    child = subprocess.run([sys.executable, "-W", "default", "-m", "sdft_train.cli", "eval", "--model",
                            str(tiny_llama2_dir), "--adapter", str(tmp_path / "adapter"), "--tasks", "gsm8k",
                            "--data-dir", str(tmp_path / "data"), "--max-new-tokens", "4", "--out",
                            str(tmp_path / "eval"), "--quiet"], capture_output=True, text=True, cwd=ROOT,
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    assert "Warning" not in child.stderr, child.stderr[-2000:]


@pytest.mark.slow
def test_the_readmes_multi_process_commands_train_from_a_local_hub(run_dir, tiny_llama2_dir, tmp_path):
    """`torchrun --nproc_per_node 2 $(which sdft-train) train --data org/name@v1 --local hub ...` stopped with
    "ambiguous option: --local could match --local-ranks-filter"; now --hub-dir, run for real: torchrun with the
    installed script (2 CPU processes, gloo) and accelerate launch -m sdft_train.cli (one process: accelerate
    runs several CPU processes only through MPI)."""
    from sdft_data.publish import push

    hub = tmp_path / "hub"
    push(run_dir, "org/name", local=hub, allow_no_rewrites=True)
    bin_dir = Path(sys.executable).parent
    args = ["train", "--data", "org/name@v1", "--hub-dir", str(hub), "--model", str(tiny_llama2_dir),
            "--max-steps", "2", "--grad-accum", "1", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launches = {
        "torchrun": [str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node", "2", str(bin_dir / "sdft-train")],
        "accelerate": [str(bin_dir / "accelerate"), "launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
                       "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "sdft_train.cli"],
    }
    for name, launch in launches.items():
        out = tmp_path / name
        child = subprocess.run([*launch, *args, "--out", str(out)], capture_output=True, text=True, cwd=tmp_path,
                               env=env, timeout=600)
        assert child.returncode == 0, (name, child.stderr[-3000:])
        manifest = _manifest(out)
        assert manifest["data"] == "org/name@v1" and manifest["data_revision"] == str(hub / "org/name/versions/v1")
        assert manifest["world_size"] == (2 if name == "torchrun" else 1) and manifest["optimizer_steps"] == 2
        assert "trained 2 steps" in child.stdout
