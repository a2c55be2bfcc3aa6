"""Training throughput: our trainer configuration against padding-to-longest batches in random order.

    python benchmarks/bench_train.py --data DIR [--rows 64] [--steps 4] [--repeats 3] [--micro-batch 8]

DIR is a copy of the paper's data folder (github sail-sg/sdft, data/), read for
gsm8k/gsm8k_train.json. Both sides train the same ~10M-parameter random Llama
(a byte-level BPE tokenizer trained on GSM8K text, so rows have GSM8K's real
token lengths) with LoRA on the same rows, the same global batch and the same
number of optimizer steps, through sdft_train's own trainer set-up; they differ
only in how a micro-batch is laid out:

    padded        padding to the longest row of each micro-batch, rows in random order (the baseline)
    padding_free  ours (`OURS`): each micro-batch flattened into one sequence, no pad tokens, the
                  attention kept within each row by position ids; same rows, same order, same loss
    grouped       (optional, --sides) length-grouped micro-batches: little padding, but another row order

Each side runs in its own process (so that its peak RSS is its own) `--repeats`
times; the figures are medians. Trained tokens are the non-padding tokens.
Prints one JSON line with `speedup` = ours / padded tokens per second.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# What the trainer runs by default is decided by this measurement (see the README's figures).
SIDES = {
    "padded": {"padding_free": False, "group_by_length": False},
    "padding_free": {"padding_free": True, "group_by_length": False},
    "grouped": {"padding_free": False, "group_by_length": True},  # for comparison: changes the order of rows
}
OURS = "padding_free"


def build(data: Path, folder: Path, rows: int) -> tuple[Path, Path]:
    """A ~10M-parameter random Llama with a GSM8K tokenizer, and `rows` GSM8K rows as a parquet file."""
    import polars as pl

    from sdft_data.tiny import build_tiny_model

    frame = pl.read_json(data / "gsm8k" / "gsm8k_train.json")
    corpus = [f"{q}\n{a}" for q, a in frame.head(2000).iter_rows()]
    model = build_tiny_model(folder / "model", hidden_size=256, num_layers=8, num_heads=8, vocab_size=8192,
                             corpus=corpus)
    rows_file = folder / "rows.parquet"
    frame.head(rows).write_parquet(rows_file)
    return model, rows_file


WORKER = """
import json, re, sys, time
import datasets, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from sdft_data.recipes import get_recipe
from sdft_train.data import build_examples
from sdft_train.train import TrainConfig, _sft_args, _trainer

model_dir, rows_file, out, side, steps, repeats, micro = sys.argv[1:8]
options = json.loads(side)
torch.set_num_threads(int(sys.argv[8]))
tok = AutoTokenizer.from_pretrained(model_dir)
ds = datasets.Dataset.from_parquet(rows_file)
examples = build_examples(ds, get_recipe("gsm8k"), tok, fmt="paper")
micro, steps = int(micro), int(steps)
config = TrainConfig(batch_size=micro, grad_accum=8 // micro, max_steps=steps, padding_free=options["padding_free"],
                     save_steps=10**6)
results = []
for i in range(int(repeats)):
    torch.manual_seed(0)
    net = AutoModelForCausalLM.from_pretrained(model_dir)
    args = _sft_args(__import__("pathlib").Path(out) / str(i), config, 1, False)
    args.train_sampling_strategy = "group_by_length" if options["group_by_length"] else "random"
    args.save_strategy = "no"
    trainer = _trainer(net, tok, examples, args, config)
    # Positions computed and real tokens, over every micro-batch collated (one may be prefetched unused).
    positions, collate = [0, 0], trainer.data_collator
    def counting(features):
        batch = collate(features)
        positions[0] += batch["input_ids"].numel()
        positions[1] += sum(len(f["input_ids"]) for f in features)
        return batch
    trainer.data_collator = counting
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    results.append({"seconds": seconds, "tokens": int(trainer.state.num_input_tokens_seen),
                    "positions": positions[0], "collated_tokens": positions[1]})
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"runs": results, "peak_rss_mb": round(hwm / 1024, 1)}))
"""


def run_side(model: Path, rows: Path, side: str, args) -> dict:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, str(model), str(rows), out, json.dumps(SIDES[side]), str(args.steps),
             str(args.repeats), str(args.micro_batch), str(args.threads)],
            capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    rates = [r["tokens"] / r["seconds"] for r in result["runs"]]
    return {"tokens_per_s": round(statistics.median(rates), 1), "runs_tokens_per_s": [round(r, 1) for r in rates],
            "trained_tokens": result["runs"][0]["tokens"],
            "padding_ratio": round(result["runs"][0]["positions"] / result["runs"][0]["collated_tokens"], 3),
            "peak_rss_mb": result["peak_rss_mb"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="the paper's data folder (holds gsm8k/)")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps of global batch 8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--micro-batch", type=int, default=8, choices=[1, 2, 4, 8],
                        help="rows per forward pass (x accumulation = the paper's global batch 8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sides", default="padded,padding_free", help=f"of: {', '.join(SIDES)}")
    args = parser.parse_args()

    import torch

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        model, rows = build(args.data, Path(tmp), args.rows)
        from transformers import AutoConfig

        params = None
        cfg = AutoConfig.from_pretrained(model)
        with torch.device("meta"):
            from transformers import AutoModelForCausalLM

            params = sum(p.numel() for p in AutoModelForCausalLM.from_config(cfg).parameters())
        sides = {name: run_side(model, rows, name, args) for name in args.sides.split(",")}
    ours, base = sides.get(OURS), sides["padded"]
    print(json.dumps({
        "benchmark": "train",
        "model_params_m": round(params / 1e6, 2),
        "rows": args.rows, "optimizer_steps": args.steps, "global_batch": 8, "micro_batch": args.micro_batch,
        "ours": OURS,
        "sides": sides,
        # The most that removing padding can give: positions computed per real token in the baseline.
        "padding_ratio": base["padding_ratio"],
        "speedup": round(ours["tokens_per_s"] / base["tokens_per_s"], 3) if ours else None,
        "seconds": round(time.perf_counter() - t0, 1),
    }))


if __name__ == "__main__":
    main()
