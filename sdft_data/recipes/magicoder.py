"""MagiCoder (ise-uiuc/Magicoder-OSS-Instruct-75K): code instructions.

Example row: {"problem": "You are tasked with implementing a Python function ...",
"solution": "```python\ndef ...\n```", "lang": "python", ...}
Distilled with alpaca_distill_refer. A rewrite passes when it holds a
```python fence and starts with "I have", "Here is" or "I implemented".
"""

from . import DISTILL_REFER_SYSTEM, Recipe

RECIPE = Recipe(
    name="magicoder",
    version=1,
    description="Magicoder OSS-Instruct 75K code problems and solutions.",
    source="ise-uiuc/Magicoder-OSS-Instruct-75K",
    config=None,
    split="train",
    prompt_column="problem",
    response_column="solution",
    distill_system=DISTILL_REFER_SYSTEM,
    check="code",
    license="mit",
    task_categories=("text-generation",),
    citation=(
        "@article{wei2023magicoder,\n  title={Magicoder: Source Code Is All You Need},\n"
        "  author={Wei, Yuxiang and Wang, Zhe and Liu, Jiawei and Ding, Yifeng and Zhang, Lingming},\n"
        "  journal={arXiv preprint arXiv:2312.02120},\n  year={2023}\n}"
    ),
)
