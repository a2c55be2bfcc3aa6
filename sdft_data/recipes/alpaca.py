"""Alpaca (tatsu-lab/alpaca): general instruction following.

Example row: {"instruction": "Rewrite the sentence using gender-neutral language.",
"input": "A salesman is giving a presentation.", "output": "A salesperson is giving a presentation."}
The paper distills it with alpaca_distill_using and applies no task check.
The Hub's columns are the authors' (alpaca_train.json, a 2,000-row sample) too.
"""

from . import DISTILL_USING_SYSTEM, Recipe

RECIPE = Recipe(
    name="alpaca",
    # v2: the paper format renders the authors' bytes (no BOS, no separator).
    # v3: the chat format renders the user turn without the raw-text "### Instruction:" scaffolding.
    version=3,
    description="Alpaca instruction following (52K rows; the paper uses a 2K sample).",
    source="tatsu-lab/alpaca",
    config=None,
    split="train",
    prompt_column="instruction",
    input_column="input",
    response_column="output",
    layout_name="hub/authors",
    distill_system=DISTILL_USING_SYSTEM,
    license="cc-by-nc-4.0",
    task_categories=("text-generation",),
    citation=(
        "@misc{alpaca,\n  author = {Rohan Taori and Ishaan Gulrajani and Tianyi Zhang and Yann Dubois and "
        "Xuechen Li and Carlos Guestrin and Percy Liang and Tatsunori B. Hashimoto},\n"
        "  title = {Stanford Alpaca: An Instruction-following LLaMA model},\n  year = {2023},\n"
        "  howpublished = {\\url{https://github.com/tatsu-lab/stanford_alpaca}}\n}"
    ),
)
