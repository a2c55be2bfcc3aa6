"""Fine-tune the seed model on a distilled dataset with TRL's SFTTrainer: either arm, one GPU or many.

    train(data="my-org/gsm8k-sdft@v1", model="meta-llama/Llama-2-7b-chat-hf", out="ckpt/gsm8k-sdft")
    train(data="my-org/gsm8k-sdft@v1", model="meta-llama/Llama-2-7b-chat-hf", out="ckpt/gsm8k-vanilla",
          responses="original")
    train(TrainSpec.make(data=..., model=..., out=..., lr=2e-4))   # the same, from a spec (sdft_data.spec)
    train(data=..., model=..., out="ckpt/gsm8k-on-policy", method="on-policy")  # a third arm: sdft_train.onpolicy

The defaults are the paper's preset (sdft_data.spec.Training, sdft_data.paper.training). The same entry point runs
alone, under `torchrun` or under `accelerate launch` (DDP, FSDP or DeepSpeed
through an accelerate config file): every process runs this function, the
trainer splits the batches, and process 0 writes the outputs.

`out` holds, when training finished: the LoRA adapter (or the full model with
`full=True`; `merge=True` adds the merged model under `merged/`), the
tokenizer, `train_manifest.json` (how it was made, written last), a model card
`README.md` and `loss.png`. While training it holds `train_state.json` (what is
being trained, so that `resume=True` continues only the same training) and
`checkpoints/` (every `save_steps` optimizer steps).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import warnings
from dataclasses import replace
from pathlib import Path

from sdft_data import paper, templates
from sdft_data.spec import ON_POLICY_SETTINGS, Training, TrainSpec, differences
from sdft_data.rundir import diff_keys, now
from sdft_data.recipes import Recipe, get_recipe

from .card import model_card
from .data import Examples, TrainData, build_examples, open_data, read_json, response_column

STATE = "train_state.json"
MANIFEST = "train_manifest.json"
CHECKPOINTS = "checkpoints"

# Settings that change what is trained; the others (how often to save, where) may change on --resume.
# Padding-free and the attention implementation change how a batch is computed, not what is trained.
_NOT_IN_KEY = {"save_steps", "save_total_limit", "merge", "padding_free", "attn_implementation", "pack_steps"}
# What only the on-policy method reads stays out of an SFT run's key (a run started before it existed resumes).
_SFT_NOT_IN_KEY = {"method", *ON_POLICY_SETTINGS}


def arm_name(config: Training) -> str:
    """The arm a training run is: sdft, vanilla (the original responses) or on-policy."""
    if config.method == "on-policy":
        return "on-policy"
    return "vanilla" if config.responses == "original" else "sdft"


def paper_differences(config: Training, recipe: str, fmt: str, epochs: float) -> list[str]:
    """How a training run's settings differ from the paper's (sdft_data.paper), one phrase each ([]: none)."""
    diffs = [f"format {fmt} (paper: {paper.PROMPT.format})"] if fmt != paper.PROMPT.format else []
    return diffs + differences(replace(config, epochs=epochs), paper.training(recipe))


def same_model(seed: dict, ours: dict) -> bool:
    """Revisions decide when both are known (a folder's content hash, a Hub commit); else the ids."""
    if seed.get("revision") and ours.get("revision"):
        return seed["revision"] == ours["revision"]
    return seed.get("model_id") == ours.get("model_id")


def _label(model: dict) -> str:
    rev = model.get("revision") or ""
    return model.get("model_id", "?") + (f"@{rev.split(':')[-1][:12]}" if rev else "")


def _resolve_format(prompt, manifest: dict | None) -> tuple[str, str | None, str]:
    """(format, paper layout override, where they came from): the flags, else what the dataset was distilled in."""
    template = ((manifest or {}).get("fingerprint_inputs") or {}).get("template") or {}
    recorded = (manifest or {}).get("format") or template.get("format")
    fmt, source = (prompt.format, "flag") if prompt.format else (recorded, "dataset manifest") if recorded \
        else ("chat", "default")
    layout = prompt.paper_layout
    if layout is None and fmt == "paper" and template.get("layout") in ("llama2", "llama3"):
        layout = template["layout"]
    return fmt, layout, source


def _recipe_for(data: TrainData, recipe: str | Recipe | None) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    name = recipe or ((data.manifest or {}).get("fingerprint_inputs", {}).get("recipe", {}).get("name"))
    if not name or name == "custom":
        raise ValueError(f"which recipe's train template? pass --recipe ({data.spec} does not name one)")
    return get_recipe(name)


def _key(inputs: dict) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _check_out(out: Path, inputs: dict, resume: bool) -> bool:
    """Whether `out` holds a resumable run of this same training; ValueError when it holds anything else."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    if (out / MANIFEST).is_file():
        raise ValueError(f"--out {out} holds a finished training run: choose another folder")
    state = read_json(out / STATE)
    if state is None:
        raise ValueError(f"--out {out} is not empty and holds no training run: choose another folder")
    if state.get("key") != _key(inputs):
        differs = diff_keys(state.get("inputs") or {}, inputs)
        raise ValueError(f"--out {out} holds another training run (differs in: {', '.join(differs) or 'unknown'}):"
                         " choose another folder, or the same settings to resume it")
    if not resume:
        raise ValueError(f"--out {out} holds an unfinished run of this training: pass --resume to continue it,"
                         " or choose another folder")
    return True


def _library_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "huggingface-hub"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def train(spec: TrainSpec | None = None, *, resume: bool = False, progress: bool = True, **settings) -> dict:
    """Fine-tune as `spec` says (one arm, `spec.training.responses`) into `spec.out`. Returns the train manifest.

    `spec` is a TrainSpec (sdft_data.spec), or its settings as keywords with the command line's names:
    train(data="my-org/gsm8k-sdft@v1", model="models/tiny", out="ckpt/x", max_steps=20). `spec.paper`
    (--paper) refuses any setting that is not the paper's (format and preset); every run records how its
    settings differ from the paper's. `resume` continues an unfinished run of the same training in `out`.
    `model` is a Hub id, a model folder or a .gguf file (sdft_data.models); --model-id names a local
    model's Hub id.

    Every check that can refuse the run (the settings, the dataset and its
    columns, the model and its tokenizer, the seed model, `out`) runs before
    anything is written; a refusal is a ValueError with one line.
    """
    if spec is None:
        spec = TrainSpec.make(**settings)
    elif settings:
        raise TypeError("give a TrainSpec or keyword settings, not both")
    config, data, model, revision = spec.training, spec.data, spec.model, spec.revision
    recipe, local, push_to_hub, private = spec.recipe, spec.hub_dir, spec.push_to_hub, spec.private
    allow_other_model, paper_mode, model_id = spec.allow_other_model, spec.paper, spec.model_id
    out = Path(spec.out)
    if push_to_hub:
        from sdft_data.publish import parse_repo

        parse_repo(push_to_hub)
    from sdft_data.source import quiet_datasets

    with quiet_datasets():  # reading the rows is no progress bar of its own: the one bar is the training's
        opened = open_data(data, local=local)
    rec = _recipe_for(opened, recipe)
    fmt, layout, fmt_source = _resolve_format(spec.prompt, opened.manifest)
    if fmt not in templates.FORMATS:
        raise ValueError(f"{data} was distilled in format {fmt!r}, which training does not know: pass --format")
    from .data import check_columns

    check_columns(opened.rows.column_names, rec, config.responses, data)
    from sdft_data.source import check_text_columns

    check_text_columns(opened.rows, [*rec.columns, response_column(rec, config.responses)], data)

    from sdft_data.models import hub_commit, load_tokenizer, resolve_model

    resolved = resolve_model(model, revision=revision, model_id=model_id)
    ours = {"model_id": resolved.model_id, "revision": hub_commit(resolved)}
    seed = ((opened.manifest or {}).get("fingerprint_inputs") or {}).get("model")
    matches = same_model(seed, ours) if seed else None
    if matches is False and not allow_other_model:
        raise ValueError(f"--model {_label(ours)} is not the dataset's seed model {_label(seed)}: train the model"
                         " that distilled it, or pass --allow-other-model")

    try:
        tokenizer = load_tokenizer(resolved)
    except ValueError as e:
        raise ValueError(f"cannot load the tokenizer of {model}: {str(e).partition(': ')[2] or e}") from None
    if fmt == "chat" and getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"--format chat needs a chat template and {model}'s tokenizer has none: use --format paper")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    on_policy = config.method == "on-policy"
    if on_policy:
        from . import onpolicy

        prompts = onpolicy.Prompts(rec, tokenizer, fmt, layout)
        examples = onpolicy.build_prompts(opened.rows, prompts, max_length=config.max_length)
    else:
        examples = build_examples(opened.rows, rec, tokenizer, fmt=fmt, responses=config.responses,
                                  max_length=config.max_length, layout=layout)
    forced = None
    if fmt == "paper":
        given = layout
        layout = templates.resolve_layout(rec.paper_layout, tokenizer, layout)
        if rec.paper_layout != "alpaca" and given:
            forced = templates.layout_difference({
                "layout": layout, "model_layout": templates.model_layout(tokenizer),
                "layout_from": "--paper-layout" if spec.prompt.paper_layout else "the dataset (distilled with --paper-layout)"})
    epochs = config.epochs if config.epochs is not None else paper.epochs(rec.name)
    diffs = paper_differences(config, rec.name, fmt, epochs) + ([forced] if forced else [])
    if paper_mode and diffs:
        raise ValueError(f"--paper trains with the paper's settings, and these are not: {'; '.join(diffs)}."
                         " Drop those options, or drop --paper")

    inputs = {
        "data": {k: v for k, v in opened.describe().items() if k != "spec"},
        "recipe": {"name": rec.name, "version": rec.version},
        "format": fmt,
        "paper_layout": layout,
        "responses": config.responses,
        "model": ours,
        "config": {k: v for k, v in config.to_dict().items()
                   if k not in _NOT_IN_KEY and not (k in _SFT_NOT_IN_KEY and not on_policy)} | {"epochs": epochs},
    }
    resuming = _check_out(out, inputs, resume)
    if on_policy:
        args = onpolicy.sdft_args(out, config, epochs, progress, revision=revision)
    else:
        args = _sft_args(out, config, epochs, progress)

    from accelerate import PartialState

    # Set up the processes (gloo DDP on CPU under torchrun, NCCL on GPU; FSDP/DeepSpeed from an
    # accelerate config) before loading the model, as TRL's own scripts do, so ZeRO-3 can shard it while loading.
    args.device
    state = PartialState()
    net = _load_model(resolved, config)
    # Every process has checked `out` before process 0 writes to it.
    state.wait_for_everyone()
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if not resuming:
            (out / STATE).write_text(json.dumps({"key": _key(inputs), "inputs": inputs, "started_at": now()},
                                                indent=2) + "\n")
    state.wait_for_everyone()

    t0 = time.monotonic()
    if on_policy:
        trainer = onpolicy.make_trainer(net, tokenizer, examples, args, config, prompts)
    else:
        trainer = _trainer(net, tokenizer, examples, args, config)
    checkpoint, incomplete = _last_checkpoint(out) if resuming else (None, [])
    if state.is_main_process:
        for path, _ in incomplete:  # a save cut short (a kill): what it holds is partial, and it would be saved over
            shutil.rmtree(path, ignore_errors=True)
    state.wait_for_everyone()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.monotonic() - t0

    history = [(e["step"], e["loss"]) for e in trainer.state.log_history if "loss" in e]
    world = trainer.args.world_size
    staging = out / ".final"
    if state.is_main_process and staging.exists():
        shutil.rmtree(staging)
    state.wait_for_everyone()
    # All processes take part: FSDP and ZeRO-3 gather the weights for process 0 to write.
    trainer.save_model(str(staging))
    record = {
        "sdft_version": _sdft_version(),
        "data": data,
        "data_source": opened.describe(),
        "data_fingerprint": (opened.manifest or {}).get("fingerprint"),
        "data_revision": opened.revision,
        "recipe": {"name": rec.name, "version": rec.version},
        "format": fmt,
        "paper_layout": layout,
        "format_from": fmt_source,
        "arm": arm_name(config),
        "responses": config.responses,
        "response_column": response_column(rec, config.responses),
        "base_model": ours | {"name": model, "source": resolved.describe() | {"revision": ours["revision"]}},
        "seed_model": seed,
        "seed_model_match": matches,
        "allow_other_model": allow_other_model,
        "paper": {"mode": paper_mode, "matches": not diffs, "differences": diffs},
        "config": config.to_dict() | {"epochs": epochs, "format": fmt, "paper_layout": layout,
                                      "bf16": bool(trainer.args.bf16),
                                      "gradient_checkpointing": bool(trainer.args.activation_checkpointing)},
        "world_size": world,
        "global_batch": config.batch_size * config.grad_accum * world,
        # How the micro-batches were computed (not what was trained): attention, and the token budget of a
        # packed step's micro-batches (null: batch_size rows each).
        "micro_batches": {"attention": getattr(trainer, "attention", None),
                          "pack_tokens": getattr(trainer, "pack_tokens", None)},
        "precision": "bf16" if trainer.args.bf16 else "fp32",
        "examples": examples.stats,
        "optimizer_steps": trainer.state.global_step,
        "epochs_done": round(trainer.state.epoch or 0.0, 4),
        "losses": [loss for _, loss in history],
        "loss_steps": [step for step, _ in history],
        "final_loss": history[-1][1] if history else None,
        "train_loss": result.training_loss,
        "tokens": {"prompt": examples.stats["prompt_tokens"], "completion": examples.stats["completion_tokens"],
                   "trained": trainer.state.num_input_tokens_seen or None},
        **({"on_policy": onpolicy.describe(trainer, prompts)} if on_policy else {}),
        "seconds": round(seconds, 3),
        "resumed_from": Path(checkpoint).name if checkpoint else None,
        "incomplete_checkpoints": [f"{Path(p).name} ({why})" for p, why in incomplete],
        "push_to_hub": push_to_hub,
        "library_versions": _library_versions(),
        "spec": spec.to_dict(),
        "finished_at": now(),
    }
    if on_policy:  # the answers were sampled, not read: their tokens are the ones trained on
        answers = record["on_policy"]["answer_tokens"]
        record["tokens"] |= {"completion": answers, "trained": answers}
    if state.is_main_process:
        _finish(staging, out, tokenizer, record, resolved, config)
    state.wait_for_everyone()
    if push_to_hub and state.is_main_process:
        _push(out, push_to_hub, private=private)
    return record


def _sdft_version() -> str:
    from . import __version__

    return __version__


def _load_model(resolved, config: Training):
    import torch
    from transformers import set_seed

    from sdft_data.models import load_causal_lm

    # The LoRA weights are drawn when the trainer wraps the model: seed first, so every
    # process (and a rerun) starts from the same adapter.
    set_seed(config.seed)
    dtype = torch.bfloat16 if _bf16(config) else torch.float32
    from transformers.utils import logging as hf_logging

    # No bar of its own for loading the weights: the one progress bar is the training's.
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return load_causal_lm(resolved, dtype=dtype, attn_implementation=config.attn_implementation)
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _bf16(config: Training) -> bool:
    import torch

    if config.bf16 is not None:
        return config.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def common_args(out: Path, config: Training, epochs: float, progress: bool) -> dict:
    """The TRL config fields every arm shares (SFTConfig's and SDFTConfig's): optimizer, schedule, batch,
    budget, precision, checkpoints, logging."""
    import torch

    on_gpu = torch.cuda.is_available()
    checkpointing = config.gradient_checkpointing if config.gradient_checkpointing is not None else on_gpu
    return dict(
        output_dir=str(out / CHECKPOINTS),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=epochs,
        max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        seed=config.seed,
        bf16=_bf16(config),
        activation_checkpointing=checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if checkpointing else None,
        dataloader_pin_memory=on_gpu,
        # Without a GPU, say so: only then do several processes (torchrun) form a gloo process group.
        use_cpu=not on_gpu,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=1,
        report_to="none",
        disable_tqdm=not progress,
    )


def _sft_args(out: Path, config: Training, epochs: float, progress: bool):
    from trl import SFTConfig

    return SFTConfig(
        **common_args(out, config, epochs, progress),
        max_length=None,  # build_examples cut every row to config.max_length and counted what it cut
        completion_only_loss=True,
        padding_free=config.padding_free,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        include_num_input_tokens_seen="non_padding",
        dataset_num_proc=None,
        # Every trainable weight (the LoRA adapters, or all of them) takes part in every forward pass. Left
        # unset, transformers asks DDP to look for unused ones in a PEFT model: an extra pass over the
        # graph each step, and a warning on every run with several processes.
        ddp_find_unused_parameters=False,
    )


def _trainer(net, tokenizer, examples: Examples, args, config: Training):
    import datasets

    from .trainer import Trainer

    peft_config = None
    if not config.full:
        from peft import LoraConfig

        peft_config = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules=list(config.lora_targets), bias="none", task_type="CAUSAL_LM")
    # Already tokenized (input_ids + completion_mask): the trainer builds the labels from the
    # mask and adds no special token of its own.
    rows = datasets.Dataset.from_list(examples.rows)
    # transformers warns about its own deprecated call inside the trainer: nothing a user can act on.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    # TRL's pass over the rows ("Building labels") is not the training: one progress bar is the training's.
    bars = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        trainer = Trainer(model=net, args=args, train_dataset=rows, processing_class=tokenizer, peft_config=peft_config,
                          rows_attention=config.attn_implementation is None,
                          pack_tokens=config.batch_size * config.max_length if config.pack_steps else None)
    finally:
        if bars:
            datasets.enable_progress_bars()
    if args.disable_tqdm:
        # Quiet: transformers prints the logs (a dict a step) when the bar is off; the manifest keeps every loss.
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    else:
        # Every step is logged (the manifest keeps each loss); show the latest on the bar instead of a dict a line.
        from transformers.trainer_callback import ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_loss_on_the_bar())
    return trainer


def _loss_on_the_bar():
    from transformers.trainer_callback import ProgressCallback

    class LossOnTheBar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.training_bar is not None and logs and "loss" in logs:
                self.training_bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

    return LossOnTheBar()


def _incomplete(checkpoint: Path, step: int) -> str | None:
    """Why `checkpoint` cannot be resumed from (None: it can). The trainer writes trainer_state.json last."""
    state = checkpoint / "trainer_state.json"
    if not state.is_file():
        return "no trainer_state.json: its save was cut short"
    try:
        saved = json.loads(state.read_text())
    except (OSError, ValueError):
        return "trainer_state.json is cut short"
    if not isinstance(saved, dict) or saved.get("global_step") != step:
        return f"trainer_state.json is not that of step {step}"
    return None


def _last_checkpoint(out: Path) -> tuple[str | None, list[tuple[str, str]]]:
    """(the newest checkpoint that can be resumed from or None, [(newer incomplete checkpoint, why)]).

    A kill during a save leaves a checkpoint folder without its trainer_state.json (the trainer
    writes it last); resuming from it would fail or restart part of the state. The newest complete
    one is used instead, and the incomplete ones are named (and removed by train()).
    """
    folder = out / CHECKPOINTS
    if not folder.is_dir():
        return None, []
    steps = sorted((int(p.name.split("-")[1]), p) for p in folder.iterdir()
                   if p.is_dir() and p.name.startswith("checkpoint-") and p.name.split("-")[1].isdigit())
    incomplete = []
    for step, path in reversed(steps):
        why = _incomplete(path, step)
        if why is None:
            return str(path), incomplete
        incomplete.append((str(path), why))
    return None, incomplete


def _finish(staging: Path, out: Path, tokenizer, record: dict, resolved, config: Training) -> None:
    """Write the outputs into `staging`, then move them into `out`, the train manifest last."""
    tokenizer.save_pretrained(staging)
    if config.merge:
        _merge(staging, resolved, config)
    _plot_loss(record, staging / "loss.png")
    (staging / "README.md").write_text(model_card(record))
    # TRL leaves its own card (about a model "fine-tuned from [None]") in the checkpoints folder: ours replaces it.
    (out / CHECKPOINTS / "README.md").unlink(missing_ok=True)
    (staging / MANIFEST).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    for path in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST):
        target = out / path.name
        if target.is_dir():
            shutil.rmtree(target)
        path.replace(target)
    staging.rmdir()


def _merge(staging: Path, resolved, config: Training) -> None:
    import torch
    from peft import PeftModel

    from sdft_data.models import load_causal_lm

    # From the saved adapter, so the merge is the same whether training ran in one process or sharded.
    base = load_causal_lm(resolved, dtype=torch.bfloat16 if _bf16(config) else torch.float32)
    merged = PeftModel.from_pretrained(base, str(staging)).merge_and_unload()
    merged.save_pretrained(staging / "merged")


def _plot_loss(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(record["loss_steps"], record["losses"], marker="." if len(record["losses"]) < 50 else None)
    ax.set_xlabel("optimizer step")
    on_policy = record.get("arm") == "on-policy"
    ax.set_ylabel("distillation loss (TRL's)" if on_policy else "training loss (response + EOS)")
    ax.set_title(f"{record['recipe']['name']}, " + ("on-policy arm" if on_policy else f"{record['responses']} responses"))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _push(out: Path, repo: str, *, private: bool) -> str:
    from huggingface_hub import HfApi

    from sdft_data.publish import hub_errors

    api = HfApi()
    with hub_errors(repo, writing=True):
        api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo, repo_type="model", folder_path=str(out),
                                 ignore_patterns=[f"{CHECKPOINTS}/*", ".*", STATE],
                                 commit_message="sdft: trained model")
    return info.oid
