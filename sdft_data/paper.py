"""The paper's settings in one place: what `--paper` sets, for distill, train and eval alike.

Everything here comes from the authors' code (github sail-sg/sdft: scripts/*/sdft.sh,
main.py, eval/) and the LLaMA-Factory fork it pins (hparams defaults), not from
the paper's prose:

    format     "paper": their raw-text templates (sdft_data.templates)
    decoding   sampling, temperature 0.95, top_p 0.7, top_k 50, 512 new tokens
               (LLaMA-Factory's generating defaults; their scripts override none),
               for distillation and evaluation alike, batch size 1
    rules      "paper": their acceptance exactly (sdft_data.check)
    training   LoRA q_proj,v_proj r8 alpha16 dropout 0.0; lr 1e-4 cosine, no warmup,
               no weight decay, grad clip 1.0; batch 2 x accumulation 4; 5 epochs for
               GSM8K and OpenFunctions, 2 for the rest; cutoff 1024 tokens

    from sdft_data import paper
    params = paper.DECODING                       # GenerationParams
    preset = paper.training_preset("gsm8k")       # TrainingPreset(epochs=5, ...)
    paper.differences(fmt, rules, params)         # [] when a run used the paper's settings
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .backends import GenerationParams

FORMAT = "paper"
RULES = "paper"
DECODING = GenerationParams(max_new_tokens=512, temperature=0.95, top_p=0.7, top_k=50)
# The seed models of the paper's runs, for reference (Llama-3 only in scripts_llama3/).
SEED_MODELS = ("meta-llama/Llama-2-7b-chat-hf", "meta-llama/Meta-Llama-3-8B-Instruct")


@dataclass(frozen=True)
class TrainingPreset:
    """The authors' fine-tuning settings (scripts/*/sdft.sh and LLaMA-Factory's defaults)."""

    lora_target: tuple[str, ...] = ("q_proj", "v_proj")
    lora_r: int = 8
    lora_alpha: int = 16  # LLaMA-Factory: lora_rank * 2
    lora_dropout: float = 0.0
    learning_rate: float = 1e-4
    lr_scheduler_type: str = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 4
    num_train_epochs: int = 2
    cutoff_len: int = 1024
    # The loss is on the response (and its EOS) only; the prompt is masked.
    train_on_prompt: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["lora_target"] = list(self.lora_target)
        return d


# Recipes the authors train for 5 epochs (scripts/gsm8k, scripts/openfunction); the rest take 2.
FIVE_EPOCH_RECIPES = ("gsm8k", "openfunctions")


def training_preset(recipe: str) -> TrainingPreset:
    """The paper's training settings for the recipe called `recipe`."""
    return TrainingPreset(num_train_epochs=5 if recipe in FIVE_EPOCH_RECIPES else 2)


def differences(fmt: str, rules: str, params: GenerationParams) -> list[str]:
    """How a distillation or evaluation's settings differ from the paper's, one phrase each ([]: none)."""
    out = []
    if fmt != FORMAT:
        out.append(f"format {fmt} (paper: {FORMAT})")
    if rules != RULES:
        out.append(f"rules {rules} (paper: {RULES})")
    for name in ("max_new_tokens", "temperature", "top_p", "top_k"):
        ours, theirs = getattr(params, name), getattr(DECODING, name)
        if ours != theirs:
            out.append(f"{name} {ours} (paper: {theirs})")
    if params.stop:
        out.append(f"stop sequences {list(params.stop)} (paper: none)")
    return out


def describe(fmt: str, rules: str, params: GenerationParams, layout: str | None, extra: list[str] = ()) -> dict:
    """The manifest's `paper` entry: whether a run used the paper's settings, and where it did not.

    `extra`: differences the settings alone do not show (a layout forced onto another model family).
    """
    diffs = differences(fmt, rules, params) + list(extra)
    return {"mode": not diffs, "layout": layout, "differences": diffs}
