"""Dolly (databricks/databricks-dolly-15k): human-written instruction data.

Example row: {"instruction": "When did Virgin Australia start operating?",
"context": "Virgin Australia ... commenced services on 31 August 2000 ...",
"response": "Virgin Australia commenced services on 31 August 2000.", "category": "closed_qa"}
Distilled like Alpaca (alpaca_distill_using, no task check); `context` is the input.
The authors' dolly_train.json (2,000 rows) uses Alpaca's columns instead:
instruction/input/output. Both layouts are read; the one found is recorded.
"""

from . import DISTILL_USING_SYSTEM, ColumnLayout, Recipe

RECIPE = Recipe(
    name="dolly",
    # v2: also reads the authors' instruction/input/output files.
    # v3: the chat format renders the user turn without the raw-text "### Instruction:" scaffolding.
    version=3,
    description="Dolly 15K human-written instructions.",
    source="databricks/databricks-dolly-15k",
    config=None,
    split="train",
    prompt_column="instruction",
    input_column="context",
    response_column="response",
    other_layouts=(ColumnLayout("authors", "instruction", "output", "input"),),
    distill_system=DISTILL_USING_SYSTEM,
    license="cc-by-sa-3.0",
    citation=(
        "@online{DatabricksBlog2023DollyV2,\n  author = {Mike Conover and Matt Hayes and Ankit Mathur and others},\n"
        "  title = {Free Dolly: Introducing the World's First Truly Open Instruction-Tuned LLM},\n  year = {2023},\n"
        "  url = {https://www.databricks.com/blog/2023/04/12/dolly-first-open-commercially-viable-instruction-tuned-llm}\n}"
    ),
)
