"""Training throughput: our trainer configuration against padding-to-longest batches in random order.

    python benchmarks/bench_train.py --data DIR [--rows 256] [--repeats 3] [--micro-batch 8] [--sides ...]

DIR is a copy of the paper's data folder (github sail-sg/sdft, data/), read for
gsm8k/gsm8k_train.json. Every side trains the same ~10M-parameter random Llama
(a byte-level BPE tokenizer trained on GSM8K text, so rows have GSM8K's real
token lengths) with LoRA, for one epoch over the same `--rows` rows, at the
paper's global batch of 8 (`--micro-batch` rows per forward pass times
accumulation), through sdft_train's own trainer set-up. Every side trains the
same rows in each optimizer step, with the same loss; they differ in how the
step's rows are laid out in forward passes and where the LM head is computed:

    baseline      padding to the longest row of each micro-batch, rows in random order, TRL's LM head
                  (on CPU it projects every position: prompt, response and padding)
    ours          sdft-train's defaults: each micro-batch flattened into one sequence without padding,
                  attention within each row (sdpa_rows, no dense mask), the LM head projected only at the
                  trained positions. Same rows, same order, same loss and gradients.
    dense_mask    (optional, --sides) ours with --attn-implementation sdpa (the defaults before): sdpa's
                  dense block-diagonal mask over the flattened micro-batch
    packed        (optional) ours with --pack-steps: each optimizer step's rows cut into micro-batches of
                  up to micro-batch x 1024 tokens (the most a paper micro-batch could hold)
    padded        (optional) the LM head at the trained positions, padding to the longest row
    trl_padding_free (optional) padding-free micro-batches with TRL's LM head
    grouped       (optional) `--group-by-length --no-padding-free`: rows of similar length padded to the
                  longest, the LM head at the trained positions; little padding, but another row order

Each run is its own process (so that its peak RSS is its own); the sides take
turns, `--repeats` rounds, each round in the other order, so that a busy moment
of the machine does not land on one side only. Trained tokens are the
non-padding tokens; a side's figure is its median over the rounds. Prints one
JSON line: `speedup` is the median over the rounds of ours / baseline tokens
per second within a round (each round's runs share the machine's state),
`speedup_of_medians` the ratio of the two medians; `speedups` the same per-round
median for every side. The line records os.getloadavg() before and after, and
the 1-minute load as each run started: above the core count, other work shared
the cores.
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

SIDES = {
    "baseline": {"padding_free": False, "trained_positions_only": False, "group_by_length": False},
    "ours": {"padding_free": True, "trained_positions_only": True, "group_by_length": False},
    "dense_mask": {"padding_free": True, "trained_positions_only": True, "group_by_length": False,
                   "attn_implementation": "sdpa"},
    "packed": {"padding_free": True, "trained_positions_only": True, "group_by_length": False, "pack_steps": True},
    "padded": {"padding_free": False, "trained_positions_only": True, "group_by_length": False},
    "trl_padding_free": {"padding_free": True, "trained_positions_only": False, "group_by_length": False},
    "grouped": {"padding_free": False, "trained_positions_only": True, "group_by_length": True},
}


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
import json, os, re, sys, time
from pathlib import Path
import datasets, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from sdft_data.recipes import get_recipe
from sdft_train.data import build_examples
from sdft_data.spec import Training
from sdft_train.train import _sft_args, _trainer

model_dir, rows_file, out, side, micro, threads = sys.argv[1:7]
options, micro = json.loads(side), int(micro)
torch.set_num_threads(int(threads))
tok = AutoTokenizer.from_pretrained(model_dir)
examples = build_examples(datasets.Dataset.from_parquet(rows_file), get_recipe("gsm8k"), tok, fmt="paper", layout="llama2")
config = Training(batch_size=micro, grad_accum=8 // micro, epochs=1, padding_free=options["padding_free"],
                   group_by_length=options["group_by_length"], save_steps=10**6,
                   attn_implementation=options.get("attn_implementation"), pack_steps=options.get("pack_steps", False))
torch.manual_seed(0)
net = AutoModelForCausalLM.from_pretrained(model_dir)
args = _sft_args(Path(out), config, 1, False)
args.save_strategy = "no"
trainer = _trainer(net, tok, examples, args, config)
trainer.trained_positions_only = options["trained_positions_only"]
# Positions computed and real tokens, over every micro-batch collated.
positions, collate = [0, 0], trainer.data_collator
def counting(features):
    batch = collate(features)
    positions[0] += batch["input_ids"].numel()
    positions[1] += sum(len(f["input_ids"]) for f in features)
    return batch
trainer.data_collator = counting
# Forward passes (micro-batches), over the epoch.
passes, compute_loss = [0], trainer.compute_loss
def counted(*a, **k):
    passes[0] += 1
    return compute_loss(*a, **k)
trainer.compute_loss = counted
load = os.getloadavg()[0]
start = time.perf_counter()
trainer.train()
seconds = time.perf_counter() - start
hwm = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))
print(json.dumps({"seconds": seconds, "tokens": int(trainer.state.num_input_tokens_seen), "positions": positions[0],
                  "collated_tokens": positions[1], "steps": trainer.state.global_step,
                  "loss": trainer.state.log_history[-1].get("train_loss"), "peak_rss_mb": round(hwm / 1024, 1),
                  "forward_passes": passes[0], "attention": trainer.attention, "pack_tokens": trainer.pack_tokens,
                  "load_1m": load}))
"""


def run_once(model: Path, rows: Path, side: str, args) -> dict:
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run(
            [sys.executable, "-c", WORKER, str(model), str(rows), out, json.dumps(SIDES[side]), str(args.micro_batch),
             str(args.threads)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{side} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def summary(runs: list[dict]) -> dict:
    rates = [r["tokens"] / r["seconds"] for r in runs]
    first = runs[0]
    return {"tokens_per_s": round(statistics.median(rates), 1), "runs_tokens_per_s": [round(r, 1) for r in rates],
            "trained_tokens": first["tokens"], "optimizer_steps": first["steps"],
            "padding_ratio": round(first["positions"] / first["collated_tokens"], 3),
            "train_loss": first["loss"], "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "forward_passes": first["forward_passes"], "attention": first["attention"],
            "pack_tokens": first["pack_tokens"], "load_1m_runs": [round(r["load_1m"], 2) for r in runs]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="the paper's data folder (holds gsm8k/)")
    parser.add_argument("--rows", type=int, default=256, help="rows trained on, one epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--micro-batch", type=int, default=8, choices=[1, 2, 4, 8],
                        help="rows per forward pass (x accumulation = the paper's global batch 8); the preset's is 2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sides", default="baseline,ours", help=f"of: {', '.join(SIDES)}")
    args = parser.parse_args()
    names = args.sides.split(",")
    if not {"baseline", "ours"} <= set(names) or not set(names) <= set(SIDES):
        parser.error(f"--sides needs baseline and ours, and knows only: {', '.join(SIDES)}")

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    t0 = time.perf_counter()
    runs: dict[str, list[dict]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        model, rows = build(args.data, Path(tmp), args.rows)
        with torch.device("meta"):
            params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model))
                         .parameters())
        load_start = os.getloadavg()
        for i in range(args.repeats):  # the sides take turns, each round in the other order
            for name in (names if i % 2 == 0 else names[::-1]):
                runs[name].append(run_once(model, rows, name, args))
    sides = {name: summary(r) for name, r in runs.items()}
    print(json.dumps({
        "benchmark": "train",
        "model_params_m": round(params / 1e6, 2),
        "rows": args.rows, "global_batch": 8, "micro_batch": args.micro_batch, "threads": args.threads,
        "sides": sides,
        "grouped_speedup": round(sides["grouped"]["tokens_per_s"] / sides["baseline"]["tokens_per_s"], 3)
        if "grouped" in sides else None,
        # Positions computed per trained token by the baseline: the most that removing padding alone can give.
        "padding_ratio": sides["baseline"]["padding_ratio"],
        "speedup": round(statistics.median(
            (o["tokens"] / o["seconds"]) / (b["tokens"] / b["seconds"]) for o, b in zip(runs["ours"], runs["baseline"])
        ), 3),
        "speedup_of_medians": round(sides["ours"]["tokens_per_s"] / sides["baseline"]["tokens_per_s"], 3),
        "speedups": {name: round(statistics.median((o["tokens"] / o["seconds"]) / (b["tokens"] / b["seconds"])
                                                    for o, b in zip(runs[name], runs["baseline"])), 3)
                     for name in names if name != "baseline"},
        "seconds": round(time.perf_counter() - t0, 1),
        "cpus": os.cpu_count(),
        "load_avg_start": [round(x, 2) for x in load_start],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
    }))


if __name__ == "__main__":
    main()
