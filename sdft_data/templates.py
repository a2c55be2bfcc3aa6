"""Render a recipe's distill template into the text prompt a backend completes.

Two formats, recorded in every run's manifest:

    chat   (default) the same system and user text through the model's own chat
           template (tokenizer.apply_chat_template), then the recipe's prefill,
           which the model continues as the start of its answer.
    paper  the authors' raw-text layouts: Alpaca-style "{system}\\n\\n{user}" for
           most recipes, Llama-2 "[INST] <<SYS>>" for GSM8K, after the BOS token.
"""

from __future__ import annotations

import hashlib

from .recipes import Recipe

FORMATS = ("chat", "paper")


def distill_turns(recipe: Recipe, instruction: str, reference: str) -> tuple[str, str, str]:
    """(system, user, prefill) of the distill prompt for one row."""
    user = recipe.distill_user.format(instruction=instruction, response=reference)
    return recipe.distill_system, user, recipe.prefill


def render(recipe: Recipe, instruction: str, reference: str, tokenizer, fmt: str = "chat") -> str:
    """The distill prompt text for one row, in `fmt` ("chat" or "paper")."""
    system, user, prefill = distill_turns(recipe, instruction, reference)
    return render_turns(system, user, prefill, tokenizer, fmt, layout=recipe.paper_layout)


def render_turns(system: str, user: str, prefill: str, tokenizer, fmt: str = "chat", *, layout: str = "alpaca") -> str:
    """A system line and a user turn as prompt text, the assistant turn started with `prefill`.

    The one place prompts are laid out: distillation (`render`) and the train
    and eval templates of sdft_train both come through here.
    """
    if fmt == "paper":
        bos = getattr(tokenizer, "bos_token", None) or ""
        if layout == "llama2":
            # The authors' gsm8k_distill: "[INST] {q}\n\n{a} [/INST] Great! Let's think step by step. "
            text = f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST]"
            return bos + text + (f" {prefill}" if prefill else "")
        # llmtuner's alpaca templates: prefix {system}, separator "\n\n", then the user slot.
        return bos + f"{system}\n\n{user}" + prefill
    if fmt != "chat":
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return _apply_chat(tokenizer, system, user) + prefill


def _apply_chat(tokenizer, system: str, user: str) -> str:
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the model's tokenizer has no chat template: use --format paper")
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:
        # Some templates (Gemma, Mistral v0.1) refuse a system turn: fold it into the user turn.
        merged = [{"role": "user", "content": f"{system}\n\n{user}"}]
        return tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)


def describe(recipe: Recipe, tokenizer, fmt: str) -> dict:
    """What the fingerprint and the card record about the template: the exact
    rendering of a placeholder row, plus a hash of the chat template."""
    chat_template = getattr(tokenizer, "chat_template", None) if fmt == "chat" else None
    return {
        "format": fmt,
        "system": recipe.distill_system,
        "user": recipe.distill_user,
        "prefill": recipe.prefill,
        "chat_template_sha256": hashlib.sha256(chat_template.encode()).hexdigest() if chat_template else None,
        "example": render(recipe, "{instruction}", "{response}", tokenizer, fmt),
    }
