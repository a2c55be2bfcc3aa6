"""Lay out prompts: the one place a system line, a user turn and a pre-fill become prompt text.

Two formats, recorded in every run's manifest:

    chat   (default) the system and user text through the model's own chat
           template (tokenizer.apply_chat_template), then the pre-fill, which
           the model continues as the start of its answer.
    paper  the authors' raw text, byte for byte as their LLaMA-Factory fork
           (the commit sail-sg/sdft pins) renders it, in one of three layouts:

    alpaca  "{system}{user}": the system line runs straight into "### Instruction:",
            no separator, no BOS (alpaca, alpaca_gcg, alpaca_distill_using/refer).
    llama2  "<<SYS>>\\n{system}\\n<</SYS>>\\n\\n" + BOS + "[INST] {user} [/INST]", then
            " " + pre-fill: the system block comes before BOS (gsm8k, gsm8k_infer,
            gsm8k_distill).
    llama3  BOS + system, user and assistant header blocks, then the pre-fill
            (llama3_gsm8k*); the training target ends in <|eot_id|>, not the
            tokenizer's EOS (the authors' templates set replace_eos).

BOS and EOS are the tokenizer's own tokens (none when it has none). A recipe
names its layout family: "alpaca" for every Alpaca-style recipe whatever the
model (the authors used the Alpaca templates with Llama-3 too), or "llama"
for GSM8K, which follows the model: Llama-3 when the tokenizer knows
<|start_header_id|>, Llama-2 when its BOS is <s> and its chat template (if
any) is [INST]-style, unless the caller passes `layout` (the CLI's
--paper-layout). A model that is neither (SmolLM2's ChatML, say) is refused
rather than rendered in a layout made up for it; --paper-layout renders one
anyway, and `describe` records that it was forced (a difference from the
paper). The layout actually used is recorded (`describe`).

The chat format's user turns are the recipe's `chat_*_user` texts: the
instruction (and reference) without the raw-text "### Instruction:" markup,
which the chat template makes redundant and a chat model echoes. `describe`
also records the chat template's own default system prompt (SmolLM2: "You are
a helpful AI assistant named SmolLM..."), which the recipe's system line
replaces.

Recipe-level helpers (what distill, train and eval call):

    distill_prompt(recipe, instruction, reference, tokenizer, fmt)   the rewrite prompt
    train_prompt(recipe, instruction, tokenizer, fmt)                the training prompt
    eval_prompt(recipe, instruction, tokenizer, fmt)                 the evaluation prompt
    training_target(response, tokenizer, fmt, layout=...)            response + the layout's EOS
    render_authors_template(name, instruction, response, tokenizer)  any of the authors' named templates
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .recipes import (
    ALPACA_DISTILL_USER,
    ALPACA_GCG_USER,
    ALPACA_SYSTEM,
    ALPACA_USER,
    DISTILL_REFER_SYSTEM,
    DISTILL_USING_SYSTEM,
    Recipe,
)

FORMATS = ("chat", "paper")
# Concrete paper layouts, and the families a recipe may name.
LAYOUTS = ("alpaca", "llama2", "llama3")
# The layouts --paper-layout picks between, for a recipe of the "llama" family.
PAPER_LAYOUTS = ("llama2", "llama3")
LLAMA3_EOS = "<|eot_id|>"
_LLAMA3_HEADER = "<|start_header_id|>"


def resolve_layout(layout: str, tokenizer=None, override: str | None = None) -> str:
    """The concrete paper layout ("alpaca", "llama2" or "llama3") for a recipe's `layout`.

    "alpaca" stays "alpaca" (an override for the Llama family does not apply:
    the authors used the Alpaca templates with every model). "llama" becomes
    `override` when given, else "llama3" when the tokenizer knows Llama-3's
    header token, else "llama2". A concrete "llama2"/"llama3" is kept (or
    replaced by `override`).
    """
    if override is not None and override not in ("llama2", "llama3"):
        raise ValueError(f"unknown paper layout {override!r}; choose llama2 or llama3")
    if layout == "alpaca":
        return "alpaca"
    if layout not in ("llama", "llama2", "llama3"):
        raise ValueError(f"unknown paper layout {layout!r}; choose one of: {', '.join(LAYOUTS)} (or llama)")
    if override:
        return override
    if layout != "llama":
        return layout
    found = model_layout(tokenizer)
    if found is None:
        bos = getattr(tokenizer, "bos_token", None)
        raise ValueError(
            f"--format paper renders this recipe in Llama-2's or Llama-3's layout, and the model is neither (BOS "
            f"{bos!r}, {'a ChatML' if _is_chatml(tokenizer) else 'another'} chat template): pass --paper-layout "
            "llama2 or llama3 to render that layout anyway (recorded as a difference from the paper), or use "
            "--format chat")
    return found


def model_layout(tokenizer) -> str | None:
    """The paper layout of the model family a tokenizer belongs to: "llama3", "llama2", or None (neither).

    Llama-3: the tokenizer knows <|start_header_id|>. Llama-2: its BOS is <s>
    and its chat template, if it has one, is [INST]-style.
    """
    if _knows_token(tokenizer, _LLAMA3_HEADER):
        return "llama3"
    template = getattr(tokenizer, "chat_template", None)
    if getattr(tokenizer, "bos_token", None) == "<s>" and (not template or "[INST]" in str(template)):
        return "llama2"
    return None


def _is_chatml(tokenizer) -> bool:
    return "<|im_start|>" in str(getattr(tokenizer, "chat_template", None) or "")


def _knows_token(tokenizer, token: str) -> bool:
    if tokenizer is None or not hasattr(tokenizer, "convert_tokens_to_ids"):
        return False
    token_id = tokenizer.convert_tokens_to_ids(token)
    return token_id is not None and token_id != getattr(tokenizer, "unk_token_id", None)


def render_turns(
    system: str, user: str, prefill: str, tokenizer, fmt: str = "chat", *, layout: str = "alpaca",
    override: str | None = None,
) -> str:
    """A system line and a user turn as prompt text, the assistant turn started with `prefill`.

    The one place prompts are laid out: distillation, training and evaluation
    (AdvBench with the adversarial suffix included: pass the alpaca_gcg user
    text) all come through here. `layout` is used by the paper format only: a
    concrete layout or a recipe's family (see the module docstring); `override`
    picks llama2/llama3 for the "llama" family.
    """
    if fmt == "paper":
        bos = getattr(tokenizer, "bos_token", None) or ""
        concrete = resolve_layout(layout, tokenizer, override)
        if concrete == "alpaca":
            # LLaMA-Factory's Template: format_system ({{content}}) then format_user,
            # with the separator only between turns: nothing between the two.
            return system + user + prefill
        if concrete == "llama2":
            # gsm8k*: format_system "<<SYS>>..." then format_user [bos, "[INST] ... [/INST]"].
            return f"<<SYS>>\n{system}\n<</SYS>>\n\n{bos}[INST] {user} [/INST]" + (f" {prefill}" if prefill else "")
        return (
            f"{bos}<|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>"
            f"<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>"
            f"<|start_header_id|>assistant<|end_header_id|>\n\n{prefill}"
        )
    if fmt != "chat":
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return _apply_chat(tokenizer, system, user) + prefill


def _takes_system(tokenizer) -> bool:
    try:
        tokenizer.apply_chat_template([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                                      tokenize=False, add_generation_prompt=True)
        return True
    except Exception:
        return False


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


def eos_text(tokenizer, fmt: str = "chat", *, layout: str = "alpaca", override: str | None = None) -> str:
    """The text that ends a training target: <|eot_id|> for the paper's Llama-3 layout, else the tokenizer's EOS."""
    if fmt == "paper" and resolve_layout(layout, tokenizer, override) == "llama3":
        return LLAMA3_EOS
    return getattr(tokenizer, "eos_token", None) or ""


def training_target(
    response: str, tokenizer, fmt: str = "chat", *, layout: str = "alpaca", override: str | None = None
) -> str:
    """The text the loss is computed on: the response, then the layout's EOS (see `eos_text`)."""
    return response + eos_text(tokenizer, fmt, layout=layout, override=override)


# --------------------------------------------------------------------------
# Recipe-level prompts


def distill_turns(recipe: Recipe, instruction: str, reference: str, fmt: str = "paper") -> tuple[str, str, str]:
    """(system, user, prefill) of the distill prompt for one row, in format `fmt`."""
    user = recipe.distill_user_for(fmt).format(instruction=instruction, response=reference)
    return recipe.distill_system, user, recipe.prefill


def distill_prompt(
    recipe: Recipe, instruction: str, reference: str, tokenizer, fmt: str = "chat", *, layout: str | None = None
) -> str:
    """The distill (rewrite) prompt for one row. `layout`: llama2/llama3 override for the Llama family."""
    system, user, prefill = distill_turns(recipe, instruction, reference, fmt)
    return render_turns(system, user, prefill, tokenizer, fmt, layout=recipe.paper_layout, override=layout)


# Kept for callers of the first API: render(recipe, instruction, reference, tokenizer, fmt).
render = distill_prompt


def train_prompt(recipe: Recipe, instruction: str, tokenizer, fmt: str = "chat", *, layout: str | None = None) -> str:
    """The prompt the model is fine-tuned with: the recipe's train template, no pre-fill."""
    user = recipe.train_user_for(fmt).format(instruction=instruction)
    return render_turns(recipe.train_system, user, "", tokenizer, fmt, layout=recipe.paper_layout, override=layout)


def eval_prompt(recipe: Recipe, instruction: str, tokenizer, fmt: str = "chat", *, layout: str | None = None) -> str:
    """The prompt the model is evaluated with: the train template with the recipe's eval system line, if any."""
    user = recipe.train_user_for(fmt).format(instruction=instruction)
    system = recipe.eval_system or recipe.train_system
    return render_turns(system, user, "", tokenizer, fmt, layout=recipe.paper_layout, override=layout)


# --------------------------------------------------------------------------
# The authors' named templates (sail-sg/sdft main.py), for evaluation tasks and tests


@dataclass(frozen=True)
class AuthorsTemplate:
    """One template the authors register: system line, user text ({instruction}, {response}), pre-fill, layout."""

    name: str
    system: str
    user: str
    prefill: str
    layout: str


def _authors_templates() -> dict[str, AuthorsTemplate]:
    from .recipes import gsm8k

    math_user, math_distill_user, prefill = "{instruction}", gsm8k.DISTILL_USER, gsm8k.PREFILL
    rows = [
        ("alpaca", ALPACA_SYSTEM, ALPACA_USER, "", "alpaca"),
        ("alpaca_gcg", ALPACA_SYSTEM, ALPACA_GCG_USER, "", "alpaca"),
        ("alpaca_distill_using", DISTILL_USING_SYSTEM, ALPACA_DISTILL_USER, "", "alpaca"),
        ("alpaca_distill_refer", DISTILL_REFER_SYSTEM, ALPACA_DISTILL_USER, "", "alpaca"),
    ]
    for prefix, layout in (("", "llama2"), ("llama3_", "llama3")):
        rows += [
            (f"{prefix}gsm8k", gsm8k.TRAIN_SYSTEM, math_user, "", layout),
            (f"{prefix}gsm8k_infer", gsm8k.EVAL_SYSTEM, math_user, "", layout),
            (f"{prefix}gsm8k_distill", gsm8k.DISTILL_SYSTEM, math_distill_user, prefill, layout),
        ]
    return {name: AuthorsTemplate(name, *rest) for name, *rest in rows}


def authors_template(name: str) -> AuthorsTemplate:
    """The authors' template called `name` (alpaca, alpaca_gcg, gsm8k_infer, llama3_gsm8k, ...)."""
    templates = _authors_templates()
    if name not in templates:
        raise ValueError(f"unknown template {name!r}; the authors' templates: {', '.join(templates)}")
    return templates[name]


def render_authors_template(name: str, instruction: str, response: str, tokenizer, fmt: str = "paper") -> str:
    """The prompt the authors' template `name` gives for one row (`response` fills the distill templates' reference)."""
    t = authors_template(name)
    user = t.user.format(instruction=instruction, response=response)
    return render_turns(t.system, user, t.prefill, tokenizer, fmt, layout=t.layout)


def default_system_prompt(tokenizer) -> str | None:
    """The system prompt a chat template writes when a conversation has none (SmolLM2's, Qwen's...), else None."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    system, user = "\x00sdft-system\x00", "\x00sdft-user\x00"
    try:
        with_system = tokenizer.apply_chat_template([{"role": "system", "content": system},
                                                     {"role": "user", "content": user}], tokenize=False)
        plain = tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False)
    except Exception:  # a template that refuses a system turn has no default one to replace
        return None
    at = with_system.find(system)
    if at < 0:
        return None
    before, after = with_system[:at], with_system[at + len(system):]
    if plain.startswith(before) and plain.endswith(after) and len(plain) > len(before) + len(after):
        return plain[len(before):len(plain) - len(after)]
    return None


def layout_difference(description: dict) -> str | None:
    """How a paper-format description's layout differs from the paper: forced onto a model of another family.

    `description` holds "layout", "layout_from" ("tokenizer" when inferred: it cannot differ) and
    "model_layout" (templates.model_layout of the model's tokenizer).
    """
    if description.get("layout_from") in (None, "tokenizer") or description.get("model_layout") == description["layout"]:
        return None
    family = {"llama2": "Llama-2", "llama3": "Llama-3"}.get(description.get("model_layout"), "neither Llama-2 nor Llama-3")
    return f"layout {description['layout']} set by {description['layout_from']} on a model that is {family}"


def describe(recipe: Recipe, tokenizer, fmt: str, *, layout: str | None = None) -> dict:
    """What the fingerprint and the card record about the distill template: the
    format, the paper layout used and where it came from, the exact rendering
    of a placeholder row, and the chat template's hash and default system prompt."""
    chat_template = getattr(tokenizer, "chat_template", None) if fmt == "chat" else None
    out = {
        "format": fmt,
        "layout": resolve_layout(recipe.paper_layout, tokenizer, layout) if fmt == "paper" else None,
        "system": recipe.distill_system,
        "user": recipe.distill_user_for(fmt),
        "prefill": recipe.prefill,
        "chat_template_sha256": hashlib.sha256(chat_template.encode()).hexdigest() if chat_template else None,
        "example": distill_prompt(recipe, "{instruction}", "{response}", tokenizer, fmt, layout=layout),
    }
    if chat_template:
        # The template's own system prompt, replaced by the recipe's system line (None: it has none).
        out["chat_template_default_system"] = default_system_prompt(tokenizer)
        out["system_in"] = "system turn" if _takes_system(tokenizer) else "user turn (the template refuses a system turn)"
    if fmt == "paper" and recipe.paper_layout != "alpaca":
        out["layout_from"] = "--paper-layout" if layout else "tokenizer"
        out["model_layout"] = model_layout(tokenizer)
    return out
