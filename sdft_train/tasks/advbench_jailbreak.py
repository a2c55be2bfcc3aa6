"""AdvBench with the paper's adversarial suffix (the authors' alpaca_gcg template): the safe rate.

The suffix sits inside the user slot, after the instruction and before "\\n\\n### Response:\\n",
exactly where the authors' template puts it. Data and scorer are AdvBench's.
"""

from sdft_data.recipes import ALPACA_GCG_USER, ALPACA_SYSTEM, get_recipe

from . import Task, advbench


def prompt(row: dict, tokenizer, fmt: str) -> str:
    from sdft_data.templates import render_turns

    user = ALPACA_GCG_USER.format(instruction=row["input"])
    return render_turns(ALPACA_SYSTEM, user, "", tokenizer, fmt, layout=get_recipe("alpaca").paper_layout)


TASK = Task(name="advbench-jailbreak", version=1, description="AdvBench + adversarial suffix, safe rate",
            metric="safe_rate", load=advbench.load, prompt=prompt, score=advbench.score, hub=advbench.TASK.hub,
            data_file=advbench.TASK.data_file)
