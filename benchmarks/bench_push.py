"""Benchmark: publish a 1,000,000-row distilled dataset to the loopback Hub, against `datasets.Dataset.push_to_hub`.

Both push the same rows (a synthetic checked run's distilled.parquet) to the
same loopback Hub, which runs in its own process so that its memory is not
counted. Each side runs in a fresh child process that reports its own peak RSS
(VmHWM) and its RSS after imports, so the increment is the push's own
memory. The baseline's time includes building the Dataset from the parquet
file (its only way in from a file) and is also reported without it.

Medians over --repeats rounds (a fresh Hub each round, sides alternating).
Prints one JSON line: rows, dataset sizes, each side's seconds and peak memory,
the time ratio, and whether sdft's peak stays below one in-memory copy of the
data (`bounded`).

    python benchmarks/bench_push.py                 # 1,000,000 rows
    python benchmarks/bench_push.py --rows 100000   # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# The loopback servers live with the tests (they are not part of the package).
HELPERS = Path(__file__).resolve().parents[1] / "tests" / "helpers"

TOKEN = "hf_bench_token"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    # VmHWM is this address space's high-water mark. Not ru_maxrss: Linux carries that over from the
    # parent across fork+exec, so every child would report the parent's peak.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def make_run(run: Path, rows: int, seed: int = 0) -> Path:
    """A checked run (docs/run-directory.md) with `rows` Alpaca-like rows of random words."""
    import numpy as np
    import polars as pl

    run.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i:x}{'abcdefghij'[i % 10]}" for i in range(4096)])

    def text(words: int) -> pl.Series:
        idx = rng.integers(0, len(vocab), size=rows * words)
        return pl.Series(vocab[idx]).reshape((rows, words)).arr.join(" ")

    accepted = rng.random(rows) < 0.8
    rewrite, reference = text(30), text(30)
    df = pl.DataFrame({
        "instruction": text(15),
        "input": pl.Series([""] * rows),
        "output": pl.Series(np.where(accepted, rewrite.to_numpy(), reference.to_numpy())),
        "row_id": np.arange(rows, dtype=np.int64),
        "original_response": reference,
        "rewrite": rewrite,
        "accepted": accepted,
        "reason": pl.Series(np.where(accepted, "accepted", "parrots_template")),
    })
    df.write_parquet(run / "distilled.parquet")  # polars' default row groups, as sdft-data check writes it
    n_ok = int(accepted.sum())
    manifest = {
        "sdft_version": "bench", "fingerprint": f"{seed:064x}",
        "fingerprint_inputs": {
            "source": {"kind": "hub", "id": "tatsu-lab/alpaca", "config": None, "split": "train", "revision": "0" * 40},
            "recipe": {"name": "alpaca", "version": 1, "prompt_column": "instruction", "input_column": "input",
                       "response_column": "output", "check": "none"},
            "template": {"format": "paper", "system": "...", "user": "...", "prefill": "", "example": "..."},
            "model": {"backend": "local", "model_id": "bench/model", "revision": "0" * 40},
            "generation": {"max_new_tokens": 512, "temperature": 0.95, "top_p": 0.7, "stop": []}, "seed": seed,
        },
        "check": {"strict": False, "rows": rows, "accepted": n_ok, "pending": 0,
                  "by_reason": {"accepted": n_ok, "parrots_template": rows - n_ok}},
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "report").mkdir(exist_ok=True)
    (run / "report" / "stats.json").write_text(json.dumps({"rows": rows}))
    return run


def child(kind: str, run: Path, url: str) -> dict:
    """One measured push, in this (fresh) process."""
    import datasets  # noqa: F401 - both sides import the same libraries before the baseline RSS is taken
    import huggingface_hub  # noqa: F401

    from sdft_data.publish import push

    base = _rss_mb()
    t0 = time.perf_counter()
    out = {"kind": kind}
    if kind == "sdft":
        result = push(run, "bench/sdft", endpoint=url, token=TOKEN)
        assert result.status == "published", result
        out["push_s"] = time.perf_counter() - t0
    else:
        ds = datasets.Dataset.from_parquet(str(run / "distilled.parquet"))
        out["load_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        ds.push_to_hub("bench/baseline", token=TOKEN, max_shard_size="500MB")
        out["push_s"] = time.perf_counter() - t1
    out["total_s"] = time.perf_counter() - t0
    out["rss_after_imports_mb"] = base
    out["peak_rss_mb"] = _peak_mb()
    out["peak_increment_mb"] = out["peak_rss_mb"] - base
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--child", choices=["sdft", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.run), args.url)), flush=True)
        return 0

    import pyarrow.parquet as pq

    work = Path(tempfile.mkdtemp(prefix="bench-push-"))
    server = None
    try:
        run = make_run(work / "run", args.rows)
        meta = pq.ParquetFile(run / "distilled.parquet").metadata
        arrow_mb = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)) / 2**20
        results: dict[str, list[dict]] = {"sdft": [], "baseline": []}
        for i in range(args.repeats):
            # A fresh Hub each round: it dedupes uploads by sha256, and identical shards must not be skipped.
            server = subprocess.Popen([sys.executable, str(HELPERS / "hub_server.py"),
                                       "--root", str(work / f"hub-{i}"), "--token", TOKEN],
                                      stdout=subprocess.PIPE, text=True)
            url = json.loads(server.stdout.readline())["url"]
            env = {**os.environ, "HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(work / f"hf-home-{i}"),
                   "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
                   "HF_HUB_DISABLE_TELEMETRY": "1"}
            env.pop("HF_TOKEN", None)
            for kind in ("sdft", "baseline") if i % 2 == 0 else ("baseline", "sdft"):
                proc = subprocess.run([sys.executable, __file__, "--child", kind, "--run", str(run), "--url", url],
                                      env=env, capture_output=True, text=True, check=False)
                if proc.returncode != 0:
                    sys.stderr.write(proc.stderr[-4000:])
                    return 1
                results[kind].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            server.terminate()
            server.wait(timeout=30)
            server = None
            shutil.rmtree(work / f"hub-{i}", ignore_errors=True)
        ours = {k: statistics.median(r[k] for r in results["sdft"]) for k in results["sdft"][0] if k != "kind"}
        base = {k: statistics.median(r[k] for r in results["baseline"]) for k in results["baseline"][0] if k != "kind"}
        print(json.dumps({
            "benchmark": "push",
            "rows": args.rows,
            "parquet_mb": round((run / "distilled.parquet").stat().st_size / 2**20, 1),
            "arrow_mb": round(arrow_mb, 1),
            "sdft_push_s": round(ours["push_s"], 2),
            "baseline_push_s": round(base["push_s"], 2),
            "baseline_from_parquet_s": round(base["load_s"], 2),
            "baseline_total_s": round(base["total_s"], 2),
            "time_ratio_sdft_over_baseline_total": round(ours["push_s"] / base["total_s"], 3),
            "time_ratio_sdft_over_baseline_push": round(ours["push_s"] / base["push_s"], 3),
            "sdft_peak_rss_mb": round(ours["peak_rss_mb"], 1),
            "sdft_peak_increment_mb": round(ours["peak_increment_mb"], 1),
            "baseline_peak_rss_mb": round(base["peak_rss_mb"], 1),
            "baseline_peak_increment_mb": round(base["peak_increment_mb"], 1),
            "bounded": ours["peak_increment_mb"] < arrow_mb,
            "repeats": args.repeats,
        }))
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
