"""AlpacaEval (805 instructions): outputs in alpaca_eval's format, and a judge's win rate when one is given.

Example row: {"instruction": "Name three famous Broadway actors.", "output": "<reference output>"}
Prompt: the alpaca template, as the authors. The outputs are written to
`<out>/alpacaeval/outputs.json` as alpaca_eval reads them ([{"instruction", "output",
"generator", "dataset"}]), so `alpaca_eval --model_outputs` runs on them as is.

With a judge (`--judge-endpoint URL --judge-model M`, any OpenAI-compatible chat server),
each output is compared with the reference output of the same row: the judge sees both, in
an order drawn from the row's seed (against position bias), and names the better one. The
win rate counts a win as 1 and an unreadable verdict as neither (reported apart). The
judge's prompt is recorded in the results. Without a judge the score is empty and a note
says how to get one.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from sdft_data.errors import first_line

from . import Data, Task, load_table, recipe_prompt

JUDGE_SYSTEM = "You compare two answers to the same instruction and say which one is better."
JUDGE_PROMPT = (
    "Which output follows the instruction better? Judge helpfulness, correctness and level of detail; "
    "ignore the order and the length for its own sake.\n\n"
    "## Instruction\n{instruction}\n\n## Output (a)\n{output_a}\n\n## Output (b)\n{output_b}\n\n"
    'Reply with exactly "Output (a)" or "Output (b)".'
)


@dataclass
class Judge:
    """An OpenAI-compatible chat endpoint that judges pairs. The token is never recorded."""

    endpoint: str
    model: str
    token: str | None = None
    concurrency: int = 8
    timeout: float = 120.0

    def describe(self) -> dict:
        from urllib.parse import urlsplit

        url = urlsplit(self.endpoint)
        # No user:password@ in a results file.
        return {"endpoint": url._replace(netloc=url.hostname + (f":{url.port}" if url.port else "")).geturl(),
                "model": self.model, "system": JUDGE_SYSTEM, "prompt": JUDGE_PROMPT}

    def verdict(self, instruction: str, output_a: str, output_b: str) -> str | None:
        """ "a", "b", or None when the answer names neither (or both).

        One request through the endpoints' fetch(): `timeout` is its total deadline, redirects are not
        followed (the token goes to `endpoint` only), an answer over 1 MB is refused.
        """
        from sdft_data.backends._http import RequestFailed, error_text, fetch

        base = self.endpoint.rstrip("/")
        url = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
        body = {"model": self.model, "temperature": 0, "max_tokens": 16, "messages": [
            {"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_PROMPT.format(instruction=instruction, output_a=output_a,
                                                            output_b=output_b)}]}
        where = self.describe()["endpoint"]
        try:
            status, answer = fetch(url, token=self.token, timeout=self.timeout, data=body, follow=False)
        except RequestFailed as e:  # one line, no secret: the URL without credentials and the reason
            raise ValueError(f"the judge at {where} failed: {first_line(e.reason)}") from None
        if status != 200:
            raise ValueError(f"the judge at {where} failed: {first_line(error_text(status, answer))}")
        try:
            text = json.loads(answer)["choices"][0]["message"]["content"] or ""
            if not isinstance(text, str):
                raise TypeError(f"content is {type(text).__name__}, not a string")
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ValueError(f"the judge at {where} failed: not a chat completion ({type(e).__name__}: "
                             f"{first_line(e)[:200]})") from None
        a, b = "output (a)" in text.lower(), "output (b)" in text.lower()
        return "a" if a and not b else "b" if b and not a else None


def load(data_dir: str | None, limit: int | None) -> Data:
    from_hub = data_dir is None
    if from_hub:
        # The Hub repo holds a loading script; its data file is read directly.
        from huggingface_hub import HfApi, hf_hub_download

        try:
            path = hf_hub_download("tatsu-lab/alpaca_eval", "alpaca_eval.json", repo_type="dataset")
            revision = HfApi().dataset_info("tatsu-lab/alpaca_eval").sha
        except Exception as e:
            raise ValueError(f"alpacaeval: cannot read tatsu-lab/alpaca_eval (alpaca_eval.json) from the Hub: "
                             f"{first_line(e)}; or pass --data-dir") from None
        data_dir = str(Path(path).parent)
    data = load_table("alpacaeval", data_dir=data_dir, data_file="alpaca_eval.json",
                      file_columns=("instruction", "output"), hub=None, hub_columns=("instruction", "output"),
                      limit=limit)
    if from_hub:
        data.source.update(kind="hub", id="tatsu-lab/alpaca_eval/alpaca_eval.json", revision=revision)
    return data


def prompt(row: dict, tokenizer, fmt: str, layout: str | None = None) -> str:
    return recipe_prompt("alpaca", row["input"], tokenizer, fmt, layout)


def score(rows, predictions, ctx):
    outputs = [{"instruction": r["input"], "output": (p or "").strip(), "generator": ctx.model_name,
                "dataset": "alpaca_eval"} for r, p in zip(rows, predictions)]
    folder = ctx.out / "alpacaeval"
    folder.mkdir(parents=True, exist_ok=True)
    name = "outputs.json" if ctx.sample == 0 else f"outputs-sample{ctx.sample}.json"
    tmp = folder / (name + ".tmp")
    tmp.write_text(json.dumps(outputs, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(folder / name)
    if ctx.judge is None:
        ctx.notes.append(f"alpacaeval: outputs written to {folder / name} (alpaca_eval's format); no judge given, "
                         "so no win rate: pass --judge-endpoint URL --judge-model M, or run alpaca_eval on the file")
        return [{"score": None} for _ in rows]
    from concurrent.futures import ThreadPoolExecutor

    from sdft_data.run import row_seed

    def judge(item):
        row, out = item
        model_first = random.Random(row_seed(ctx.seed + ctx.sample, row["id"])).random() < 0.5
        a, b = (out["output"], row["reference"]) if model_first else (row["reference"], out["output"])
        verdict = ctx.judge.verdict(row["input"], a, b)
        if verdict is None:
            return {"score": None, "verdict": "unreadable"}
        won = (verdict == "a") == model_first
        return {"score": 1.0 if won else 0.0, "verdict": "win" if won else "loss"}

    with ThreadPoolExecutor(ctx.judge.concurrency) as pool:
        return list(pool.map(judge, zip(rows, outputs)))


# v2: the chat format's user turn without the "### Instruction:" scaffolding.
TASK = Task(name="alpacaeval", version=2, description="AlpacaEval, win rate against the reference outputs",
            metric="win_rate", load=load, prompt=prompt, score=score, hub="tatsu-lab/alpaca_eval",
            data_file="alpaca_eval.json")
