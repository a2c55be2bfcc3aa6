"""AdvBench with the paper's adversarial suffix (the authors' alpaca_gcg template): the safe rate.

The suffix sits inside the user slot, after the instruction and before "\\n\\n### Response:\\n",
exactly where the authors' template puts it. In the chat format the user turn is the instruction
and the suffix alone (no raw-text scaffolding, as every chat prompt). Data and scorer are AdvBench's.
"""

from sdft_data.recipes import ALPACA_GCG_USER, ALPACA_SYSTEM, CHAT_GCG_USER, get_recipe

from . import Task, advbench


def prompt(row: dict, tokenizer, fmt: str, layout: str | None = None) -> str:
    from sdft_data.templates import render_turns

    user = (CHAT_GCG_USER if fmt == "chat" else ALPACA_GCG_USER).format(instruction=row["input"])
    return render_turns(ALPACA_SYSTEM, user, "", tokenizer, fmt, layout=get_recipe("alpaca").paper_layout)


# v2: the chat format's user turn without the "### Instruction:" scaffolding.
TASK = Task(name="advbench-jailbreak", version=2, description="AdvBench + adversarial suffix, safe rate",
            metric="safe_rate", load=advbench.load, prompt=prompt, score=advbench.score, hub=advbench.TASK.hub,
            data_file=advbench.TASK.data_file)
