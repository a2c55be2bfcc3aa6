"""The paper's settings, as instances of the run settings (sdft_data.spec): what `--paper` holds a run to.

Everything here comes from the authors' code (github sail-sg/sdft: scripts/*/sdft.sh,
main.py, eval/) and the LLaMA-Factory fork it pins (hparams defaults), not from
the paper's prose:

    PROMPT     format "paper": their raw-text templates (sdft_data.templates)
    DECODING   sampling, temperature 0.95, top_p 0.7, top_k 50, 512 new tokens
               (LLaMA-Factory's generating defaults; their scripts override none),
               for distillation and evaluation alike, batch size 1
    RULES      "paper": their acceptance exactly (sdft_data.check)
    training   LoRA q_proj,v_proj r8 alpha16 dropout 0.0; lr 1e-4 cosine, no warmup,
               no weight decay, grad clip 1.0; batch 2 x accumulation 4; 5 epochs for
               GSM8K and OpenFunctions, 2 for the rest; cutoff 1024 tokens; the loss on
               the response only

The defaults of spec.Decoding and spec.Training are these values, so a run departs
from the paper only where an option says so; `spec.differences(ours, paper)` lists
where, and every manifest, card and results file records it.

    from sdft_data import paper
    paper.DECODING                     # spec.Decoding(max_new_tokens=512, temperature=0.95, ...)
    paper.training("gsm8k").epochs     # 5.0
    spec.differences(run.decoding, paper.DECODING)   # [] when a run decoded as the paper
"""

from __future__ import annotations

from .spec import Decoding, Prompt, Training

PROMPT = Prompt(format="paper")
RULES = "paper"
DECODING = Decoding(max_new_tokens=512, temperature=0.95, top_p=0.7, top_k=50)

# Recipes the authors train for 5 epochs (scripts/gsm8k, scripts/openfunction); the rest take 2.
FIVE_EPOCH_RECIPES = ("gsm8k", "openfunctions")


def training(recipe: str) -> Training:
    """The paper's training settings for the recipe called `recipe` (the epochs depend on it)."""
    return Training(epochs=5.0 if recipe in FIVE_EPOCH_RECIPES else 2.0)


def epochs(recipe: str) -> float:
    return training(recipe).epochs


def describe(diffs: list[str], layout: str | None) -> dict:
    """A manifest's `paper` entry: whether a run used the paper's settings, and where it did not."""
    return {"mode": not diffs, "layout": layout, "differences": diffs}
