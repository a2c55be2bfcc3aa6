"""Local backend throughput against the authors' way (one prompt at a time), and memory vs source size.

    python benchmarks/bench_local_generate.py --data DIR

DIR is a copy of the paper's data folder (github sail-sg/sdft, data/), read
for gsm8k/gsm8k_train.json. Both sides run the same ~8M-parameter random
Llama on the same GSM8K distill prompts with a fixed number of new tokens
(EOS ignored), greedy. Then the whole `distill` runs in subprocesses on N and
10N rows, and their peak RSS is compared. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from sdft_data import templates
from sdft_data.backends import GenerationParams, Request
from sdft_data.backends.local import LocalBackend
from sdft_data.recipes import get_recipe
from sdft_data.tiny import build_tiny_model

# Peak RSS from /proc (VmHWM): ru_maxrss would carry the parent's peak into the child.
MEMORY_SCRIPT = """
import re, sys
from sdft_data.run import distill
distill(recipe="gsm8k", source=sys.argv[1], out=sys.argv[2], model=sys.argv[3], batch_size=32,
        max_new_tokens=2, temperature=0, progress=False)
print(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
"""


def prompts_from(data: Path, n: int, tokenizer) -> list[str]:
    recipe = get_recipe("gsm8k")
    frame = pl.read_json(data / "gsm8k" / "gsm8k_train.json").head(n)
    rows = frame.select(recipe.instruction_expr(frame.columns), recipe.reference_expr()).iter_rows()
    return [templates.render(recipe, q, a, tokenizer, "chat") for q, a in rows]


def one_at_a_time(backend: LocalBackend, prompts: list[str], new_tokens: int) -> float:
    """The authors' loop: tokenize one prompt, generate, decode. Returns seconds."""
    import torch

    tok, model = backend.tokenizer, backend.model
    start = time.perf_counter()
    for prompt in prompts:
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    return time.perf_counter() - start


def batched(backend: LocalBackend, prompts: list[str], new_tokens: int) -> float:
    requests = [Request(row_id=i, prompt=p, seed=i) for i, p in enumerate(prompts)]
    start = time.perf_counter()
    results = list(backend.generate(requests, GenerationParams(max_new_tokens=new_tokens, temperature=0)))
    elapsed = time.perf_counter() - start
    assert sum(r.generated_tokens for r in results) == new_tokens * len(prompts)
    return elapsed


def peak_rss_mb(source: Path, out: Path, model: Path) -> float:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    done = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, source, out, model], env=env, check=True,
                          capture_output=True, text=True)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="the paper's data folder (github sail-sg/sdft, data/)")
    parser.add_argument("--prompts", type=int, default=64)
    # 128: about the length of a GSM8K or Alpaca rewrite (the paper caps at 512).
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-rows", type=int, default=500, help="N for the N vs 10N memory runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = pl.read_json(args.data / "gsm8k" / "gsm8k_train.json")
        corpus = (train["question"] + "\n" + train["answer"]).to_list()[:2000]
        # ~8M parameters; a 4K-token BPE trained on GSM8K gives real prompt lengths.
        model_dir = build_tiny_model(tmp / "model", hidden_size=256, num_layers=8, num_heads=8,
                                     vocab_size=4096, corpus=corpus)
        backend = LocalBackend(str(model_dir), batch_size=args.batch_size, ignore_eos=True)
        n_params = sum(p.numel() for p in backend.model.parameters())
        prompts = prompts_from(args.data, args.prompts, backend.tokenizer)
        prompt_tokens = [len(backend.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]

        batched(backend, prompts[:4], 4)  # warm-up
        base_s, ours_s = [], []
        for _ in range(args.repeats):
            base_s.append(one_at_a_time(backend, prompts, args.new_tokens))
            ours_s.append(batched(backend, prompts, args.new_tokens))
        tokens = args.new_tokens * len(prompts)
        base_tps = tokens / statistics.median(base_s)
        ours_tps = tokens / statistics.median(ours_s)

        # Memory: the whole distill on N rows and on 10N rows (streamed source, flushed shards).
        small_model = build_tiny_model(tmp / "small")
        rows = train.select("question", "answer")
        sizes = {}
        for factor in (1, 10):
            n = args.memory_rows * factor
            src = tmp / f"gsm8k_{n}.jsonl"
            pl.concat([rows] * (n // len(rows) + 1)).head(n).write_ndjson(src)
            sizes[n] = peak_rss_mb(src, tmp / f"run_{n}", small_model)

    n_small, n_big = sorted(sizes)
    print(json.dumps({
        "benchmark": "local_generate",
        "model_parameters": n_params,
        "prompts": len(prompts),
        "prompt_tokens_median": statistics.median(prompt_tokens),
        "new_tokens": args.new_tokens,
        "batch_size": args.batch_size,
        "baseline_one_at_a_time_tokens_per_s": round(base_tps, 1),
        "sdft_batched_tokens_per_s": round(ours_tps, 1),
        "speedup": round(ours_tps / base_tps, 2),
        "baseline_seconds": [round(s, 2) for s in base_s],
        "sdft_seconds": [round(s, 2) for s in ours_s],
        f"distill_peak_rss_mb_{n_small}_rows": round(sizes[n_small], 1),
        f"distill_peak_rss_mb_{n_big}_rows": round(sizes[n_big], 1),
        "memory_ratio_10x_rows": round(sizes[n_big] / sizes[n_small], 3),
        "device": backend.device,
    }))


if __name__ == "__main__":
    main()
