"""Fine-tune the seed model on a distilled dataset with TRL's SFTTrainer: either arm, one GPU or many.

    train(data="my-org/gsm8k-sdft@v1", model="meta-llama/Llama-2-7b-chat-hf", out="ckpt/gsm8k-sdft")
    train(data="my-org/gsm8k-sdft@v1", model="meta-llama/Llama-2-7b-chat-hf", out="ckpt/gsm8k-vanilla",
          config=TrainConfig(responses="original"))

The defaults are the paper's preset (TrainConfig). The same entry point runs
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
from dataclasses import asdict, dataclass
from pathlib import Path

from sdft_data import paper, templates
from sdft_data.errors import first_line
from sdft_data.rundir import now
from sdft_data.recipes import Recipe, get_recipe

from .data import RESPONSES, Examples, TrainData, build_examples, open_data, read_json, response_column

STATE = "train_state.json"
MANIFEST = "train_manifest.json"
CHECKPOINTS = "checkpoints"
# The authors' settings (sdft_data.paper): the defaults below, and 5 epochs for GSM8K and OpenFunctions, 2 otherwise.
PRESET = paper.TrainingPreset()


@dataclass
class TrainConfig:
    """Every knob of a training run. The defaults are the paper's preset (sdft_data.paper.TrainingPreset)."""

    responses: str = "sdft"  # "sdft": the SDFT responses; "original": the dataset's original ones (vanilla arm)
    full: bool = False  # full fine-tuning instead of LoRA
    lora_rank: int = PRESET.lora_r
    lora_alpha: int = PRESET.lora_alpha
    lora_dropout: float = PRESET.lora_dropout
    lora_targets: tuple[str, ...] = PRESET.lora_target
    learning_rate: float = PRESET.learning_rate
    lr_scheduler: str = PRESET.lr_scheduler_type
    warmup_ratio: float = 0.0  # the paper: no warmup (PRESET.warmup_steps == 0)
    weight_decay: float = PRESET.weight_decay
    max_grad_norm: float = PRESET.max_grad_norm
    batch_size: int = PRESET.per_device_train_batch_size  # per device
    grad_accum: int = PRESET.gradient_accumulation_steps
    epochs: float | None = None  # None: the paper's for the recipe (paper.training_preset)
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    max_length: int = PRESET.cutoff_len  # the paper's cutoff, prompt and response together
    format: str | None = None  # None: the format the dataset was distilled in (its manifest), else "chat"
    paper_layout: str | None = None  # llama2/llama3 for a Llama-family recipe in paper format; None: the dataset's
    seed: int = 42  # the trainer's default, as in the authors' runs
    save_steps: int = 500
    save_total_limit: int | None = 2
    bf16: bool | None = None  # None: on a GPU that has it
    gradient_checkpointing: bool | None = None  # None: on GPU
    # One flat sequence per micro-batch: the same rows and loss as padding, no pad tokens. Under sdpa (the
    # default attention) the flat sequence's block-diagonal mask is dense, so its attention grows with the
    # square of the micro-batch: faster at the preset's 2 rows, slower at 8 on CPU (benchmarks/bench_train.py).
    padding_free: bool = True
    # Padding-free, with attention that keeps to each row (sdpa_rows, flash attention): the rows of each optimizer
    # step cut into micro-batches of up to batch_size x max_length tokens, not batch_size rows (sdft_train.trainer):
    # the same rows per step, loss and gradients; fewer, fuller forward passes. Off: on CPU it was no faster and
    # took a third more memory (benchmarks/bench_train.py, side "packed"); untried on GPU.
    pack_steps: bool = False
    # Micro-batches of rows of similar length (transformers' LengthGroupedSampler): little padding, but not the
    # paper's random order, so off by default.
    group_by_length: bool = False
    # None: transformers' default (sdpa), and with padding-free micro-batches sdft_train.attention's sdpa_rows for
    # training (attention within each row, no dense mask); "sdpa" keeps the dense mask; flash_attention_2 on GPU.
    attn_implementation: str | None = None
    merge: bool = False  # also save the LoRA-merged model under out/merged

    def check(self) -> None:
        """ValueError with one line for a value that cannot work."""
        positive = {"--batch-size": self.batch_size, "--grad-accum": self.grad_accum, "--lora-rank": self.lora_rank,
                    "--save-steps": self.save_steps}
        for flag, value in positive.items():
            if value < 1:
                raise ValueError(f"{flag} must be at least 1 (got {value})")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be at least 1 (got {self.max_steps})")
        if self.epochs is not None and not self.epochs > 0:
            raise ValueError(f"--epochs must be above 0 (got {self.epochs})")
        if self.max_length < 2:
            raise ValueError(f"--max-length must be at least 2 (got {self.max_length})")
        if self.learning_rate <= 0:
            raise ValueError(f"--lr must be above 0 (got {self.learning_rate})")
        if self.responses not in RESPONSES:
            raise ValueError(f"unknown --responses {self.responses!r}; choose one of: {', '.join(RESPONSES)}")
        if self.format is not None and self.format not in templates.FORMATS:
            raise ValueError(f"unknown --format {self.format!r}; choose one of: {', '.join(templates.FORMATS)}")
        if self.paper_layout not in (None, "llama2", "llama3"):
            raise ValueError(f"unknown --paper-layout {self.paper_layout!r}; choose llama2 or llama3")
        if self.full and self.merge:
            raise ValueError("--merge merges a LoRA adapter; with --full the saved model is already whole")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d


# Knobs that change what is trained; the others (how often to save, where) may change on --resume.
# Padding-free and the attention implementation change how a batch is computed, not what is trained.
_NOT_IN_KEY = {"save_steps", "save_total_limit", "merge", "padding_free", "attn_implementation", "pack_steps"}


def paper_epochs(recipe: str) -> float:
    return paper.training_preset(recipe).num_train_epochs


def paper_differences(config: TrainConfig, recipe: str, fmt: str, epochs: float) -> list[str]:
    """How a training run's settings differ from the paper's (sdft_data.paper), one phrase each ([]: none)."""
    preset = paper.training_preset(recipe)
    settings = [
        ("format", fmt, paper.FORMAT),
        ("full fine-tuning", config.full, False),
        ("lora rank", config.lora_rank, preset.lora_r),
        ("lora alpha", config.lora_alpha, preset.lora_alpha),
        ("lora dropout", config.lora_dropout, preset.lora_dropout),
        ("lora targets", ",".join(config.lora_targets), ",".join(preset.lora_target)),
        ("lr", config.learning_rate, preset.learning_rate),
        ("lr scheduler", config.lr_scheduler, preset.lr_scheduler_type),
        ("warmup ratio", config.warmup_ratio, 0.0),
        ("weight decay", config.weight_decay, preset.weight_decay),
        ("max grad norm", config.max_grad_norm, preset.max_grad_norm),
        ("batch size", config.batch_size, preset.per_device_train_batch_size),
        ("grad accum", config.grad_accum, preset.gradient_accumulation_steps),
        ("epochs", epochs, preset.num_train_epochs),
        ("max steps", config.max_steps, None),
        ("max length", config.max_length, preset.cutoff_len),
        ("row order", "grouped by length" if config.group_by_length else "random", "random"),
    ]
    return [f"{name} {ours} (paper: {theirs})" for name, ours, theirs in settings if ours != theirs]


def model_identity(model: str, revision: str | None = None) -> dict:
    """{"model_id", "revision"} as the distillation run records its seed model (sdft_data.backends.local)."""
    path = Path(model)
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValueError(f"--model {model} is not a model folder (no config.json)")
        from sdft_data.backends.local import folder_revision

        return {"model_id": path.name, "revision": folder_revision(path)}
    from sdft_data.backends.local import looks_like_path

    if looks_like_path(model):  # not a Hub id: say so, rather than the Hub client's repo-id error
        raise ValueError(f"model folder {model} does not exist (a Hub model id is ORG/NAME)")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model, revision=revision)
    except Exception as e:
        raise ValueError(f"cannot load model {model}: {first_line(e)}") from None
    return {"model_id": model, "revision": getattr(config, "_commit_hash", None) or revision}


def same_model(seed: dict, ours: dict) -> bool:
    """Revisions decide when both are known (a folder's content hash, a Hub commit); else the ids."""
    if seed.get("revision") and ours.get("revision"):
        return seed["revision"] == ours["revision"]
    return seed.get("model_id") == ours.get("model_id")


def _label(model: dict) -> str:
    rev = model.get("revision") or ""
    return model.get("model_id", "?") + (f"@{rev.split(':')[-1][:12]}" if rev else "")


def _resolve_format(config: TrainConfig, manifest: dict | None) -> tuple[str, str | None, str]:
    """(format, paper layout override, where they came from): the flags, else what the dataset was distilled in."""
    template = ((manifest or {}).get("fingerprint_inputs") or {}).get("template") or {}
    recorded = (manifest or {}).get("format") or template.get("format")
    fmt, source = (config.format, "flag") if config.format else (recorded, "dataset manifest") if recorded \
        else ("chat", "default")
    layout = config.paper_layout
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
        before = state.get("inputs") or {}
        differs = sorted(k for k in set(before) | set(inputs) if before.get(k) != inputs.get(k))
        raise ValueError(f"--out {out} holds another training run (differs in: {', '.join(differs) or 'unknown'}):"
                         " choose another folder")
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


def train(
    *,
    data: str,
    model: str,
    out: str | Path,
    recipe: str | Recipe | None = None,
    local: str | None = None,
    config: TrainConfig = TrainConfig(),
    revision: str | None = None,
    resume: bool = False,
    allow_other_model: bool = False,
    push_to_hub: str | None = None,
    private: bool = False,
    progress: bool = True,
    paper_mode: bool = False,
) -> dict:
    """Fine-tune `model` on `data` (one arm, `config.responses`) into `out`. Returns the train manifest.

    `paper_mode` (--paper) refuses any setting that is not the paper's (format and preset);
    every run records how its settings differ from the paper's.

    Every check that can refuse the run (the config, the dataset and its
    columns, the model and its tokenizer, the seed model, `out`) runs before
    anything is written; a refusal is a ValueError with one line.
    """
    config.check()
    out = Path(out)
    if push_to_hub:
        from sdft_data.publish import parse_repo

        parse_repo(push_to_hub)
    opened = open_data(data, local=local)
    rec = _recipe_for(opened, recipe)
    fmt, layout, fmt_source = _resolve_format(config, opened.manifest)
    if fmt not in templates.FORMATS:
        raise ValueError(f"{data} was distilled in format {fmt!r}, which training does not know: pass --format")
    from .data import check_columns

    check_columns(opened.rows.column_names, rec, config.responses, data)

    ours = model_identity(model, revision)
    seed = ((opened.manifest or {}).get("fingerprint_inputs") or {}).get("model")
    matches = same_model(seed, ours) if seed else None
    if matches is False and not allow_other_model:
        raise ValueError(f"--model {_label(ours)} is not the dataset's seed model {_label(seed)}: train the model"
                         " that distilled it, or pass --allow-other-model")

    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
    except Exception as e:
        raise ValueError(f"cannot load the tokenizer of {model}: {first_line(e)}") from None
    if fmt == "chat" and getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(f"--format chat needs a chat template and {model}'s tokenizer has none: use --format paper")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples = build_examples(opened.rows, rec, tokenizer, fmt=fmt, responses=config.responses,
                              max_length=config.max_length, layout=layout)
    if fmt == "paper":
        layout = templates.resolve_layout(rec.paper_layout, tokenizer, layout)
    epochs = config.epochs if config.epochs is not None else paper_epochs(rec.name)
    differences = paper_differences(config, rec.name, fmt, epochs)
    if paper_mode and differences:
        raise ValueError(f"--paper trains with the paper's settings, and these are not: {'; '.join(differences)}."
                         " Drop those options, or drop --paper")

    inputs = {
        "data": {k: v for k, v in opened.describe().items() if k != "spec"},
        "recipe": {"name": rec.name, "version": rec.version},
        "format": fmt,
        "paper_layout": layout,
        "responses": config.responses,
        "model": ours,
        "config": {k: v for k, v in config.to_dict().items() if k not in _NOT_IN_KEY} | {"epochs": epochs},
    }
    resuming = _check_out(out, inputs, resume)
    args = _sft_args(out, config, epochs, progress)

    from accelerate import PartialState

    # Set up the processes (gloo DDP on CPU under torchrun, NCCL on GPU; FSDP/DeepSpeed from an
    # accelerate config) before loading the model, as TRL's own scripts do, so ZeRO-3 can shard it while loading.
    args.device
    state = PartialState()
    net = _load_model(model, revision, config)
    # Every process has checked `out` before process 0 writes to it.
    state.wait_for_everyone()
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        if not resuming:
            (out / STATE).write_text(json.dumps({"key": _key(inputs), "inputs": inputs, "started_at": now()},
                                                indent=2) + "\n")
    state.wait_for_everyone()

    t0 = time.monotonic()
    trainer = _trainer(net, tokenizer, examples, args, config)
    checkpoint = _last_checkpoint(out) if resuming else None
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
        "responses": config.responses,
        "response_column": response_column(rec, config.responses),
        "base_model": ours | {"name": model},
        "seed_model": seed,
        "seed_model_match": matches,
        "allow_other_model": allow_other_model,
        "paper": {"mode": paper_mode, "matches": not differences, "differences": differences},
        "config": config.to_dict() | {"epochs": epochs, "format": fmt, "paper_layout": layout,
                                      "bf16": bool(trainer.args.bf16),
                                      "gradient_checkpointing": bool(trainer.args.activation_checkpointing)},
        "world_size": world,
        "global_batch": config.batch_size * config.grad_accum * world,
        # How the micro-batches were computed (not what was trained): attention, and the token budget of a
        # packed step's micro-batches (null: batch_size rows each).
        "micro_batches": {"attention": trainer.attention, "pack_tokens": trainer.pack_tokens},
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
        "seconds": round(seconds, 3),
        "resumed_from": Path(checkpoint).name if checkpoint else None,
        "push_to_hub": push_to_hub,
        "library_versions": _library_versions(),
        "finished_at": now(),
    }
    if state.is_main_process:
        _finish(staging, out, tokenizer, record, model, revision, config)
    state.wait_for_everyone()
    if push_to_hub and state.is_main_process:
        _push(out, push_to_hub, private=private)
    return record


def _sdft_version() -> str:
    from . import __version__

    return __version__


def _load_model(model: str, revision: str | None, config: TrainConfig):
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    # The LoRA weights are drawn when the trainer wraps the model: seed first, so every
    # process (and a rerun) starts from the same adapter.
    set_seed(config.seed)
    dtype = torch.bfloat16 if _bf16(config) else torch.float32
    try:
        return AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=dtype,
                                                    attn_implementation=config.attn_implementation)
    except Exception as e:
        raise ValueError(f"cannot load model {model}: {first_line(e)}") from None


def _bf16(config: TrainConfig) -> bool:
    import torch

    if config.bf16 is not None:
        return config.bf16
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def _sft_args(out: Path, config: TrainConfig, epochs: float, progress: bool):
    import torch
    from trl import SFTConfig

    on_gpu = torch.cuda.is_available()
    checkpointing = config.gradient_checkpointing if config.gradient_checkpointing is not None else on_gpu
    args = SFTConfig(
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
        max_length=None,  # build_examples cut every row to config.max_length and counted what it cut
        completion_only_loss=True,
        padding_free=config.padding_free,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=1,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=not progress,
        dataset_num_proc=None,
    )
    return args


def _trainer(net, tokenizer, examples: Examples, args, config: TrainConfig):
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
    trainer = Trainer(model=net, args=args, train_dataset=rows, processing_class=tokenizer, peft_config=peft_config,
                      rows_attention=config.attn_implementation is None,
                      pack_tokens=config.batch_size * config.max_length if config.pack_steps else None)
    if not args.disable_tqdm:
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


def _last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = out / CHECKPOINTS
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def _finish(staging: Path, out: Path, tokenizer, record: dict, model: str, revision: str | None,
            config: TrainConfig) -> None:
    """Write the outputs into `staging`, then move them into `out`, the train manifest last."""
    tokenizer.save_pretrained(staging)
    if config.merge:
        _merge(staging, model, revision, config)
    _plot_loss(record, staging / "loss.png")
    (staging / "README.md").write_text(model_card(record))
    (staging / MANIFEST).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    for path in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST):
        target = out / path.name
        if target.is_dir():
            shutil.rmtree(target)
        path.replace(target)
    staging.rmdir()


def _merge(staging: Path, model: str, revision: str | None, config: TrainConfig) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # From the saved adapter, so the merge is the same whether training ran in one process or sharded.
    base = AutoModelForCausalLM.from_pretrained(model, revision=revision,
                                                dtype=torch.bfloat16 if _bf16(config) else torch.float32)
    merged = PeftModel.from_pretrained(base, str(staging)).merge_and_unload()
    merged.save_pretrained(staging / "merged")


def _plot_loss(record: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(record["loss_steps"], record["losses"], marker="." if len(record["losses"]) < 50 else None)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (response + EOS)")
    ax.set_title(f"{record['recipe']['name']}, {record['responses']} responses")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def model_card(record: dict) -> str:
    """The model card: Hub metadata, then what was trained on what, how, and the loss curve."""
    from huggingface_hub import ModelCardData

    base = record["base_model"]
    source = record["data_source"]
    hub_base = base["name"] if not Path(base["name"]).exists() else None
    data_repo = source["spec"].partition("@")[0] if source["kind"] == "published" else None
    cfg = record["config"]
    lora = not cfg["full"]
    meta = ModelCardData(
        base_model=hub_base,
        datasets=[data_repo] if data_repo else None,
        library_name="peft" if lora else "transformers",
        tags=["sdft", f"responses-{record['responses']}", "trl", "sft"] + (["lora"] if lora else []),
    )
    arm = ("SDFT responses (the seed model's own rewrites)" if record["responses"] == "sdft"
           else "original responses (vanilla fine-tuning)")
    rows = "\n".join(f"| {k} | {v} |" for k, v in cfg.items())
    ex = record["examples"]
    return f"""---
{meta.to_yaml()}
---

# {record['recipe']['name']}: {record['responses']} arm

{"A LoRA adapter for" if lora else "A full fine-tune of"} `{base['name']}` (revision `{base.get('revision')}`),
trained with the sdft toolkit's trainer on the **{arm}** of
`{source['spec']}` (revision `{source.get('revision')}`, fingerprint `{source.get('fingerprint')}`).
The other arm of the comparison trains on the same rows and prompts with `--responses
{"original" if record["responses"] == "sdft" else "sdft"}`.

- Prompt format: `{record['format']}` (from the {record['format_from']}); loss on the response and EOS only.
- The paper's settings (format and training preset): {_paper_line(record.get('paper') or {})}.
- Examples: {ex['examples']} of {ex['rows']} rows ({ex['truncated']} truncated, {ex['cut_away']} whose response
  the {cfg['max_length']}-token cutoff removed entirely).
- {record['optimizer_steps']} optimizer steps, {record['world_size']} process(es), global batch
  {record['global_batch']}, {record['precision']}; final loss {record['final_loss']}.
- Seed model of the dataset: `{(record['seed_model'] or {}).get('model_id')}`; this base is
  {"the seed model" if record['seed_model_match'] else "not the seed model (--allow-other-model)" if record['seed_model_match'] is False else "not checked (no manifest)"}.

![training loss](loss.png)

## Hyper-parameters

| name | value |
|---|---|
{rows}

`train_manifest.json` records everything above, plus library versions and timings.
"""


def _paper_line(entry: dict) -> str:
    if entry.get("matches"):
        return "yes" + (" (--paper)" if entry.get("mode") else "")
    return "no: " + "; ".join(entry.get("differences") or ["not recorded"])


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
