"""Fine-tune a model on a distilled dataset, LoRA (the paper's setting) or full.

    train(data="my-org/gsm8k-sdft@v1", model="meta-llama/Llama-2-7b-chat-hf", out="ckpt/gsm8k-sdft")

The paper's hyper-parameters are the defaults: LoRA rank 8 on q_proj and
v_proj, lr 1e-4 with a cosine schedule, per-device batch 2 x gradient
accumulation 4, 5 epochs for GSM8K and OpenFunctions and 2 for the rest, loss
on the response only. A plain PyTorch loop: what it does is on this page.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from sdft_data.recipes import get_recipe

from .data import IGNORE_INDEX, load_rows, tokenize_examples

PAPER_EPOCHS = {"gsm8k": 5, "openfunctions": 5}


@dataclass
class TrainConfig:
    lora: bool = True
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    learning_rate: float = 1e-4
    batch_size: int = 2
    grad_accum: int = 4
    epochs: float | None = None  # None: the paper's, by recipe
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    warmup_ratio: float = 0.0
    max_length: int = 1024
    seed: int = 0
    format: str = "chat"
    extra: dict = field(default_factory=dict)


def _batches(examples: list[dict], batch_size: int, pad_id: int, rng: random.Random):
    import torch

    order = list(range(len(examples)))
    rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start : start + batch_size]]
        width = max(len(e["input_ids"]) for e in chunk)
        ids = torch.tensor([e["input_ids"] + [pad_id] * (width - len(e["input_ids"])) for e in chunk])
        labels = torch.tensor([e["labels"] + [IGNORE_INDEX] * (width - len(e["labels"])) for e in chunk])
        mask = torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"])) for e in chunk])
        yield ids, mask, labels


def train(
    *,
    data: str,
    model: str,
    out: str | Path,
    recipe: str | None = None,
    local: str | None = None,
    config: TrainConfig = TrainConfig(),
    progress: bool = True,
) -> dict:
    """Fine-tune `model` on `data` and save it (or its LoRA adapter) to `out`. Returns the train manifest."""
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer, get_cosine_schedule_with_warmup

    ds, manifest = load_rows(data, local=local)
    recipe_name = recipe or ((manifest or {}).get("fingerprint_inputs", {}).get("recipe", {}).get("name"))
    if not recipe_name or recipe_name == "custom":
        raise ValueError("which recipe's train template? pass --recipe (the dataset's manifest does not say)")
    rec = get_recipe(recipe_name)
    torch.manual_seed(config.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(model)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    net = AutoModelForCausalLM.from_pretrained(model, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    if config.lora:
        from peft import LoraConfig, get_peft_model

        net = get_peft_model(net, LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                                             lora_dropout=config.lora_dropout,
                                             target_modules=list(config.lora_targets), task_type="CAUSAL_LM"))
    net.to(device).train()

    examples = tokenize_examples(ds, rec, tokenizer, fmt=config.format, max_length=config.max_length)
    epochs = config.epochs if config.epochs is not None else PAPER_EPOCHS.get(rec.name, 2)
    steps_per_epoch = math.ceil(len(examples) / (config.batch_size * config.grad_accum))
    total_steps = config.max_steps or max(1, math.ceil(steps_per_epoch * epochs))
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate)
    schedule = get_cosine_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)

    rng = random.Random(config.seed)
    losses, step, micro, t0 = [], 0, 0, time.monotonic()
    bar = tqdm(total=total_steps, unit="step", desc="train", disable=not progress)
    while step < total_steps:
        for ids, mask, labels in _batches(examples, config.batch_size, tokenizer.pad_token_id, rng):
            loss = net(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
            (loss / config.grad_accum).backward()
            micro += 1
            if micro % config.grad_accum:
                continue
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            losses.append(loss.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
            if step >= total_steps:
                break
    bar.close()

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out)
    tokenizer.save_pretrained(out)
    record = {
        "data": data,
        "data_fingerprint": (manifest or {}).get("fingerprint"),
        "recipe": {"name": rec.name, "version": rec.version},
        "base_model": model,
        "config": asdict(config) | {"epochs": epochs},
        "examples": len(examples),
        "optimizer_steps": step,
        "losses": losses,
        "seconds": round(time.monotonic() - t0, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    (out / "train_manifest.json").write_text(json.dumps(record, indent=2) + "\n")
    return record
