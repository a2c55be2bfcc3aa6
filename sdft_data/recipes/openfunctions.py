"""OpenFunctions (gorilla-llm/Berkeley-Function-Calling-Leaderboard style): function calls.

Example row: {"instruction": "Construct a function call ... Function to be used: pyarrow.Timestamp ...",
"output": "pyarrow.Timestamp(unit='s')"}
Distilled with alpaca_distill_refer. A rewrite passes when the reference call
`name(args)`, whitespace-normalised with ' -> " and ", " -> ",", occurs in it.
"""

from . import DISTILL_REFER_SYSTEM, Recipe

RECIPE = Recipe(
    name="openfunctions",
    version=1,
    description="Gorilla OpenFunctions function-call generation.",
    source="gorilla-llm/gorilla-openfunctions-v1",
    config=None,
    split="train",
    prompt_column="instruction",
    input_column="input",
    response_column="output",
    distill_system=DISTILL_REFER_SYSTEM,
    check="function_call",
    license="apache-2.0",
    task_categories=("text-generation",),
    citation=(
        "@article{patil2023gorilla,\n  title={Gorilla: Large Language Model Connected with Massive APIs},\n"
        "  author={Patil, Shishir G. and Zhang, Tianjun and Wang, Xin and Gonzalez, Joseph E.},\n"
        "  journal={arXiv preprint arXiv:2305.15334},\n  year={2023}\n}"
    ),
)
