"""The settings objects keep the command line, the manifest and the card in step (sdft_data.spec).

Round trips: every spec the CLI can make survives to_argv -> parse and to_dict -> from_dict, over every
recipe, format, rule set and backend; every option of distill, import, train and eval is a spec field
with help; the paper's settings are instances and the defaults differ from them only where documented;
a published card's reproduce command, run as printed, makes the same fingerprint.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import shlex

import pytest
from click.testing import CliRunner

from sdft_data import paper, spec
from sdft_data.backends import BACKENDS
from sdft_data.cli import main as data_cli
from sdft_data.recipes import RULE_SETS, recipe_names
from sdft_data.spec import DistillSpec, EvalSpec, GapSpec, ImportSpec, Training, TrainSpec
from sdft_data.templates import FORMATS
from sdft_train.cli import main as train_cli

from conftest import GSM8K_ROWS

COMMANDS = {DistillSpec: data_cli.commands["distill"], ImportSpec: data_cli.commands["import"],
            TrainSpec: train_cli.commands["train"], EvalSpec: train_cli.commands["eval"],
            GapSpec: data_cli.commands["gap"]}
# Options that are actions of a command, not settings of the run (and gap's RUN_DIR argument).
ACTIONS = {"retry_failed", "resume", "quiet", "help", "run_dir"}


def _distill_specs():
    for recipe, fmt, rules, backend in itertools.product([*recipe_names(), "custom"], FORMATS, RULE_SETS, BACKENDS):
        flat = dict(recipe=recipe, format=fmt, rules=rules, backend=backend, out="runs/x", model="org/model")
        if recipe == "custom":
            flat |= dict(prompt_column="q", response_column="a", input_column="ctx", template="refer", check="math")
        if recipe == "magicoder":
            flat["lang"] = "rust"
        if backend != "local":
            flat |= dict(endpoints=("http://gpu1:8080", "http://gpu2:8080"), concurrency=7, request_timeout=12.5,
                         retry_budget=60.0, tokenizer="org/tok")
        else:
            flat |= dict(batch_size=3, max_prompt_tokens=100, max_prompt_chars=5000)
        if fmt == "paper":
            flat["paper_layout"] = "llama3"
        yield DistillSpec.make(**flat)
    # --paper with everything it pins, and the odd values: greedy, top-k off, a revision, a limit.
    yield DistillSpec.make(recipe="gsm8k", paper=True, out="o", model="m", source="file.json", seed=3)
    yield DistillSpec.make(recipe="alpaca", out="o", model="m", source="org/data", config="c", split="test",
                           revision="abc", limit=5, temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=7, gap=False)


def _train_specs():
    yield TrainSpec.make(data="org/d@v1", model="m", out="o")
    yield TrainSpec.make(data="org/d@v1", hub_dir="hub", model="m", out="o", paper=True)
    yield TrainSpec.make(data="runs/x", model="m", out="o", revision="r", recipe="gsm8k", format="chat",
                         responses="original", full=True, lora_targets=("q_proj", "k_proj", "v_proj"), learning_rate=2e-5,
                         lr_scheduler="linear", warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=0.5,
                         batch_size=1, grad_accum=8, epochs=1.5, max_steps=3, max_length=256, seed=7,
                         group_by_length=True, save_steps=2, save_total_limit=1, bf16=False,
                         gradient_checkpointing=True, padding_free=False, attn_implementation="sdpa",
                         allow_other_model=True, push_to_hub="org/m", private=True)
    yield TrainSpec.make(data="d.parquet", model="m", out="o", format="paper", paper_layout="llama2", merge=True,
                         lora_rank=16, lora_alpha=32, lora_dropout=0.05)
    yield TrainSpec.make(data="org/d@v1", model="m", out="o", method="on-policy")
    yield TrainSpec.make(data="org/d@v1", model="m", out="o", method="on-policy", full=True, generations=4,
                         max_completion_length=64, rollout_temperature=0.7, teacher="ema", vllm=False,
                         teacher_template="Question: {prompt}\nAn answer to it:\n{privileged_context}\n{{Yours}}:")


def _eval_specs():
    for backend in BACKENDS:
        extra = dict(endpoints=("http://e:1",)) if backend != "local" else dict(adapter="ckpt/a")
        yield EvalSpec.make(model="m", suite="quick", out="o", backend=backend, **extra)
    yield EvalSpec.make(model="m", tasks="gsm8k,humaneval", out="o", paper=True, data_dir="data", seed=2, samples=3)
    yield EvalSpec.make(model="m", tasks=("toy-target",), out="o", temperature=0.0, max_new_tokens=48, limit=4,
                        judge_endpoint="http://j", judge_model="jm", seed_results="eval/seed",
                        embedding_model="emb", format="paper", seed_model="models/seed")


def _import_specs():
    yield ImportSpec.make(original="a.json", distilled="b.json", recipe="alpaca", out="o")
    yield ImportSpec.make(original="org/a@r", distilled="org/b", recipe="custom", prompt_column="q",
                          response_column="a", check="code", split="test", model="m", note="from them", out="o")


def _gap_specs():
    yield GapSpec.make(model="m")
    yield GapSpec.make(model="org/m", revision="r", format="paper", paper_layout="llama2", batch_size=4)


ALL = [*_distill_specs(), *_train_specs(), *_eval_specs(), *_import_specs(), *_gap_specs()]


@pytest.mark.parametrize("made", ALL, ids=lambda s: f"{type(s).__name__}:{' '.join(spec.to_argv(s))[:60]}")
def test_argv_and_dict_round_trip(made):
    cls = type(made)
    argv = spec.to_argv(made)
    run_dir = ["runs/x"] if cls is GapSpec else []  # gap's argument, not a setting
    assert spec.parse(COMMANDS[cls], cls, run_dir + argv) == made
    assert spec.from_dict(cls, json.loads(json.dumps(spec.to_dict(made)))) == made


def test_round_trips_cover_every_recipe_format_rule_set_and_backend():
    distill = [s for s in ALL if isinstance(s, DistillSpec)]
    assert {s.recipe.recipe for s in distill} == {*recipe_names(), "custom"}
    assert {s.prompt.format for s in distill} == set(FORMATS)
    assert {s.rules for s in distill} == set(RULE_SETS)
    assert {s.backend.backend for s in distill} == set(BACKENDS)


@pytest.mark.parametrize("cls", list(COMMANDS))
def test_every_option_is_a_documented_setting(cls):
    command = COMMANDS[cls]
    names = {p.name for p in command.params} - ACTIONS
    settings = {leaf.name for leaf in spec.leaves(cls) if leaf.meta.get("cli", True) is not False}
    assert names == settings
    for leaf in spec.leaves(cls):
        if leaf.meta.get("cli", True) is not False:
            text = leaf.meta["help"]() if callable(leaf.meta["help"]) else leaf.meta["help"]
            assert len(text) > 10 and text.endswith("."), f"{leaf.flag} needs help"


def test_distill_and_eval_share_one_set_of_backend_and_decoding_options():
    def group(cls, name):
        return [leaf.name for leaf in spec.leaves(cls) if leaf.path[0] == name]

    for name in ("backend", "decoding", "prompt"):
        assert group(DistillSpec, name) == group(EvalSpec, name)
    # The same defaults on both commands (they differed once: top-k 0 against 50).
    assert DistillSpec.make(recipe="gsm8k", out="o").decoding == EvalSpec.make(model="m", suite="quick", out="o").decoding


def test_the_papers_settings_are_instances_and_the_defaults_differ_only_in_format_and_rules():
    ours = DistillSpec.make(recipe="gsm8k", out="o")
    assert ours.paper_differences() == ["format chat (paper: paper)", "rules default (paper: paper)"]
    assert DistillSpec.make(recipe="gsm8k", out="o", paper=True).paper_differences() == []
    for recipe in recipe_names():
        default = dataclasses.replace(Training(), epochs=paper.epochs(recipe))
        assert spec.differences(default, paper.training(recipe)) == []
    assert spec.differences(Training(lora_rank=4, learning_rate=2e-4), paper.training("gsm8k"))[:2] == [
        "lora rank 4 (paper: 8)", "lr 0.0002 (paper: 0.0001)"]
    with pytest.raises(ValueError, match="--paper sets --rules paper: drop --rules strict"):
        DistillSpec.make(recipe="gsm8k", out="o", paper=True, rules="strict")
    with pytest.raises(ValueError, match="--paper sets --top-k 50: drop --top-k 0"):
        EvalSpec.make(model="m", suite="quick", out="o", paper=True, top_k=0)


@pytest.mark.parametrize("flat, message", [
    (dict(max_new_tokens=0), "--max-new-tokens must be at least 1 (got 0)"),
    (dict(top_p=0.0), "--top-p must be above 0.0 (got 0.0)"),
    (dict(top_p=1.5), "--top-p must be at most 1.0 (got 1.5)"),
    (dict(temperature=float("nan")), "--temperature must be a number"),
    (dict(top_k=2.5), "--top-k must be an integer"),
    (dict(backend="vllm"), "unknown --backend 'vllm'; choose one of: local, tgi, openai"),
    (dict(format="raw"), "unknown --format 'raw'; choose one of: chat, paper"),
    (dict(prompt_column="q"), "--prompt-column is for --recipe custom, not gsm8k"),
])
def test_library_checks_the_same_bounds_as_the_cli(flat, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DistillSpec.make(recipe="gsm8k", out="o", **flat)


def test_training_options_survive_torchrun():
    """`torchrun ... sdft-train train --hub-dir hub`: no train option may be a prefix of one of torchrun's
    (argparse would take `--local` for its own --local-addr and stop, as it once did)."""
    from torch.distributed.run import get_args_parser

    theirs = [o for action in get_args_parser()._actions for o in action.option_strings if o.startswith("--")]
    ours = [o for p in COMMANDS[TrainSpec].params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
    clashes = [(o, t) for o in ours for t in theirs if t.startswith(o)]
    assert not clashes


def test_public_records_name_local_paths_by_name_and_drop_the_token_file():
    made = DistillSpec.make(recipe="gsm8k", source="/home/me/data/train.json", model="/srv/models/smol",
                            token_file="/home/me/.token", out="/scratch/run", backend="openai",
                            endpoints=("http://e:1",))
    shown = spec.public(made, out="runs/gsm8k-sdft")
    assert (shown.source.source, shown.backend.model, shown.out) == ("train.json", "smol", "runs/gsm8k-sdft")
    assert "token_file" not in spec.to_dict(made)["backend"] and shown.backend.token_file is None
    assert "--token-file" not in spec.to_argv(made)


def test_a_cards_reproduce_command_makes_the_same_run(tiny_model_dir, tmp_path, monkeypatch):
    """Distill, push to a local hub, read the card's command, paste it into a shell: the same fingerprint."""
    import os

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "gsm8k.json").write_text(json.dumps(GSM8K_ROWS))
    os.symlink(tiny_model_dir, tmp_path / "tiny")
    runner = CliRunner()
    first = ["distill", "--recipe", "gsm8k", "--source", "data/gsm8k.json", "--model", "tiny", "--out", "made",
             "--limit", "3", "--max-new-tokens", "4", "--temperature", "0.5", "--top-k", "20", "--seed", "9",
             "--rules", "strict", "--batch-size", "2"]
    assert runner.invoke(data_cli, first).exit_code == 0
    result = runner.invoke(data_cli, ["push", "made", "--repo", "org/gsm8k-sdft", "--hub-dir", "hub",
                                      "--allow-no-rewrites"])
    assert result.exit_code == 0, result.output
    card = (tmp_path / "hub" / "org" / "gsm8k-sdft" / "versions" / "v1" / "README.md").read_text()
    block = card.split("## How to reproduce this version")[1].split("```bash\n")[1].split("```")[0]
    lines = block.strip().splitlines()
    assert lines[2] == "sdft-data push runs/gsm8k-sdft --repo org/gsm8k-sdft --hub-dir hub"
    argv = shlex.split(lines[0])
    assert argv[:2] == ["sdft-data", "distill"]
    again = runner.invoke(data_cli, argv[1:])
    assert again.exit_code == 0, again.output
    made, remade = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("made", "runs/gsm8k-sdft"))
    assert remade["fingerprint"] == made["fingerprint"]
    assert remade["spec"] == {**made["spec"], "out": "runs/gsm8k-sdft"}
