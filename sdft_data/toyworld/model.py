"""The toy world's seed model: a small Llama with its tokenizer, pretrained on the world.

The tokenizer is a byte-level BPE trained on the world's text (so every word
of the world is one token, and decoding gives the exact text back), with the
ChatML chat template of sdft_data.tiny, so `apply_chat_template` and the
project's prompt rendering work as for any chat model. The fixed text of the
toy recipe's rendered train and distill prompts (chat markup, system line,
"### Instruction:" headers) is added as single tokens: see `template_chunks`.

Pretraining sees exactly the prompts the project renders: own-style tasks
through the recipe's train template, the rewrite skill through its distill
template (`sdft_data.templates`), both in `chat` format. Loss on the response
only, as in fine-tuning. It runs on one CPU thread: the result is then the
same bit for bit on any machine with the same library versions (a float sum
split over a different number of threads rounds differently), and on a busy
two-core machine one thread is also faster than two fighting for the cores.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .world import World, corpus, pretrain_example


@dataclass(frozen=True)
class SeedConfig:
    """Size and pretraining budget of the seed model (the defaults: about 3 minutes of one CPU core)."""

    hidden_size: int = 128
    layers: int = 3
    heads: int = 4
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    warmup: int = 100

    def to_dict(self) -> dict:
        return asdict(self)


def build_tokenizer(world: World):
    """A PreTrainedTokenizerFast for the world, with a chat template."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from ..recipes.toy import RECIPE
    from ..tiny import CHAT_TEMPLATE, SPECIAL_TOKENS

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    template_text = [RECIPE.train_user, RECIPE.distill_user, "system\nuser\nassistant\n"]
    tok.train_from_iterator(corpus(world) + template_text * 50, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="<|im_end|>", pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "</s>"], padding_side="left", model_max_length=512,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.add_tokens([AddedToken(chunk, normalized=False) for chunk in template_chunks(tokenizer)])
    return tokenizer


def template_chunks(tokenizer) -> list[str]:
    """The fixed text between the slots of the recipe's rendered train and distill prompts.

    Every prompt repeats these chunks (chat markup, system line, "### Instruction:"
    headers); as single tokens they cost the model one position each instead of
    about twenty, which halves pretraining compute. They come from rendering
    placeholders through sdft_data.templates, so they match whatever it renders.
    """
    i, r = "\x00INSTRUCTION\x00", "\x00REFERENCE\x00"
    texts = [render_example(i, None, tokenizer), render_example(i, r, tokenizer)]
    chunks = set()
    for text in texts:
        for piece in text.replace(r, i).split(i):
            if piece:
                chunks.add(piece)
    return sorted(chunks)


def render_example(instruction: str, reference: str | None, tokenizer) -> str:
    """The prompt the project renders for this example: the toy recipe's distill
    prompt when there is a reference, else its train prompt (chat format)."""
    from .. import templates
    from ..recipes.toy import RECIPE

    if reference is not None:
        return templates.distill_prompt(RECIPE, instruction, reference, tokenizer, "chat")
    return templates.train_prompt(RECIPE, instruction, tokenizer, "chat")


def new_model(tokenizer, config: SeedConfig, seed: int):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.hidden_size * 3,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def pretrain(world: World, config: SeedConfig, out: str | Path, *, progress=print) -> dict:
    """Build the tokenizer, pretrain the seed model on the world, save both to `out`. Returns stats."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _pretrain(world, config, out, progress)
    finally:
        torch.set_num_threads(threads)


def _pretrain(world: World, config: SeedConfig, out: str | Path, progress) -> dict:
    import torch

    from .. import templates

    tokenizer = build_tokenizer(world)
    model = new_model(tokenizer, config, world.seed)
    rng = random.Random(f"toyworld-pretrain:{world.seed}")
    prompt_cache: dict[str, list[int]] = {}

    def encode(instruction, reference, response):
        prompt = render_example(instruction, reference, tokenizer)
        p = prompt_cache.get(prompt)
        if p is None:
            p = prompt_cache[prompt] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        r = tokenizer(templates.training_target(response, tokenizer, "chat"), add_special_tokens=False)["input_ids"]
        return p, r

    def batches():
        # Length bucketing: draw 8 batches' worth, sort by length, shuffle the batches.
        while True:
            pool = [encode(*pretrain_example(rng, world)) for _ in range(config.batch_size * 8)]
            pool.sort(key=lambda pr: len(pr[0]) + len(pr[1]))
            chunk = [pool[i : i + config.batch_size] for i in range(0, len(pool), config.batch_size)]
            rng.shuffle(chunk)
            yield from chunk

    pad = tokenizer.pad_token_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.98), weight_decay=0.0)
    model.train()
    t0, cpu0, losses = time.monotonic(), time.process_time(), []
    stream = batches()
    for step in range(config.steps):
        scale = min(1.0, (step + 1) / config.warmup) * 0.5 * (1 + math.cos(math.pi * step / config.steps))
        for group in optimizer.param_groups:
            group["lr"] = config.lr * scale
        batch = next(stream)
        width = max(len(p) + len(r) for p, r in batch)
        ids = torch.full((len(batch), width), pad)
        labels = torch.full((len(batch), width), -100)
        for i, (p, r) in enumerate(batch):
            ids[i, : len(p) + len(r)] = torch.tensor(p + r)
            labels[i, len(p) : len(p) + len(r)] = torch.tensor(r)
        # Right padding under a causal mask: real tokens never see the pads, so no attention mask is needed.
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if progress and (step % 200 == 0 or step == config.steps - 1):
            progress(f"pretrain step {step + 1}/{config.steps} loss {loss.item():.4f} ({time.monotonic() - t0:.0f}s)")
    model.eval()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "seconds": round(time.monotonic() - t0, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "final_loss": round(sum(losses[-50:]) / len(losses[-50:]), 4),
    }
