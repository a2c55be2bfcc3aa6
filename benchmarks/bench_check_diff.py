"""Check + diff of a million rows with Polars, against the authors' per-row Python loop.

    python benchmarks/bench_check_diff.py --data DIR [--rows 1000000]

DIR is a copy of the paper's data folder (github sail-sg/sdft, data/), read
for gsm8k/gsm8k_train.json (and gsm8k_test.json, when present, for the
agreement check). The GSM8K answers are repeated to --rows rows, each with a
perturbed rewrite (60% passing in several number formats; final number
changed, decimals, no number, negatives; banned phrases, "Your turn",
empty), and written to one parquet file. Then, each in its own subprocess so
that peak memory (ru_maxrss) is its own:

- baseline: the authors' eval/gen_distilled_data.py way, a Python loop over
  rows calling verify() and check_math() (find_last_integer), timed after the
  rows are loaded into Python lists;
- project: check_frame plus the diff summary (reasons, lengths, answer
  agreement, similarity sample, wording: marker phrases, openings and n-gram
  shifts on their samples), timed after the rows are loaded into a Polars
  frame, with the seconds of each of the summary's stages (the one pass over
  the rows, which runs the checks; counts; lengths; similarity; answers;
  wording) and, timed again on its own after the run, the check.

Before timing, the Polars checks must agree with the authors' Python row by
row on real text (every GSM8K question and answer, and 149,460 perturbed
rows), and both sides on the number of accepted rows. Prints one JSON line;
the sides take turns (`--repeats` rounds, each starting with the other side),
and the ratio is the median baseline time over the median project time
(`speedup_per_round`: the median of each round's ratio). Polars uses every
core and the baseline one: on a two-core machine where other processes keep
the cores busy, the ratio drops, so the line records os.getloadavg() before,
after, and as each run starts.
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

PROJECT = """
import json, os, resource, sys, time
import numpy  # imported by the diff's histograms: setup, like polars, not timed
import polars as pl
from sdft_data.check import check_frame
from sdft_data.diff import diff_lazy, summarize
from sdft_data.recipes import get_recipe

recipe = get_recipe("gsm8k")
rows = pl.read_parquet(sys.argv[1], columns=["reference", "rewrite", "status", "finish_reason"])
load = os.getloadavg()[0]
start = time.perf_counter()
checked = check_frame(rows.lazy(), recipe, keep_answers=True)
# The distilled layout (docs/run-directory.md), then the diff of it.
distilled = checked.with_columns(
    pl.when(pl.col("accepted")).then(pl.col("rewrite")).otherwise(pl.col("reference")).alias("answer"),
    pl.col("reference").alias("original_response"),
)
stages = {}
stats = summarize(diff_lazy(None, distilled, recipe, lengths=False), recipe, timings=stages)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
# The check alone, again, after the timed run: the part of the pass that is the check's.
start = time.perf_counter()
check_frame(rows.lazy(), recipe, keep_answers=True).select("reason", "reference_answer").collect(engine="streaming")
stages["check_alone"] = round(time.perf_counter() - start, 4)
print(json.dumps({"seconds": elapsed, "accepted": stats["accepted"], "peak_mb": peak, "by_reason": stats["by_reason"],
                  "stages": stages, "load_1m": load}))
"""

BASELINE = """
import json, os, resource, sys, time
import pyarrow.parquet as pq
from sdft_data.check import authors_check_math, authors_verify

table = pq.read_table(sys.argv[1], columns=["reference", "rewrite"])
references, rewrites = table.column("reference").to_pylist(), table.column("rewrite").to_pylist()
del table
load = os.getloadavg()[0]
start = time.perf_counter()
accepted = 0
for reference, rewrite in zip(references, rewrites):
    # gen_distilled_data.py: strip_dict, then verify(...) and check_func(...).
    reference, rewrite = reference.strip(), rewrite.strip()
    if authors_verify(rewrite) and authors_check_math(reference, rewrite):
        accepted += 1
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "accepted": accepted, "peak_mb": peak, "load_1m": load}))
"""


def build_rows(data: Path, rows: int, out: Path) -> None:
    """GSM8K answers repeated to `rows`, each with a rewrite perturbed one of twenty ways.

    The mix is that of a plausible distillation: 60% of rewrites pass (in
    several number formats), 20% carry a wrong or unreadable answer, and the
    rest trip the general checks (banned phrases, "Your turn", empty).
    """
    from sdft_data.check import last_integer_expr
    from sdft_data.recipes import get_recipe

    recipe = get_recipe("gsm8k")
    base = pl.read_json(data / "gsm8k" / "gsm8k_train.json").select(
        recipe.instruction_expr().alias("question"), recipe.reference_expr()
    )
    reps = -(-rows // base.height)
    frame = pl.concat([base] * reps).head(rows).with_row_index("i")
    ref = pl.col("reference")
    final = last_integer_expr(ref).cast(pl.Int64)
    answer = final.cast(pl.String)
    body = ref.str.replace(r"The answer is [^\n]*$", "")
    commas = answer.str.replace(r"(\d)(\d{3})$", "${1},${2}")
    kind = pl.col("i") % 20
    rewrite = (
        # accepted (12 of 20)
        pl.when(kind < 4).then("First, let's read the question carefully.\n" + ref)
        .when(kind < 6).then(body + "So the final answer is " + commas + ".")
        .when(kind < 8).then(body + "Total: " + answer + ".00 dollars, i.e. " + answer + " in all.")
        .when(kind < 10).then(ref + "\nI hope this helps!")
        .when(kind < 12).then(
            body + "In cents that is " + (final * 100).cast(pl.String).str.replace(r"(\d)(\d{3})$", "${1} ${2}")
            + ", so the answer is " + commas + "."
        )
        # wrong or unreadable answer (4 of 20)
        .when(kind == 12).then(body + "So the answer is " + (final + 1).cast(pl.String) + ".")
        .when(kind == 13).then(body + "The answer is " + answer + ".5.")
        .when(kind == 14).then(pl.lit("I am not sure how to solve this one."))
        .when(kind == 15).then(body + "The answer is -" + answer + ".")
        # general checks (4 of 20)
        .when(kind == 16).then("As the reference answer shows:\n" + ref)
        .when(kind == 17).then(ref + "\n\nIn my response above I showed the steps.")
        .when(kind == 18).then("Your turn! " + ref)
        .otherwise(pl.lit("   "))
    )
    frame.select(
        "question",
        "reference",
        rewrite.alias("rewrite"),
        pl.lit("ok").alias("status"),
        pl.lit("eos_token").alias("finish_reason"),
    ).write_parquet(out)


def check_agreement(data: Path, path: Path, rows: int) -> dict:
    """Row by row, before timing: the Polars checks against the authors' Python on real text.

    Every GSM8K question and answer (train and test, raw and normalised) for
    the last integer, and the first `rows` perturbed rows for the verdict.
    """
    from sdft_data.check import INVALID, authors_check_math, authors_verify, check_frame, find_last_integer, last_integer_expr
    from sdft_data.recipes import get_recipe

    recipe = get_recipe("gsm8k")
    texts = []
    for split in ("train", "test"):
        file = data / "gsm8k" / f"gsm8k_{split}.json"
        if file.is_file():
            frame = pl.read_json(file)
            texts += frame["question"].to_list() + frame["answer"].to_list()
            texts += frame.select(recipe.reference_expr())["reference"].to_list()

    def python_value(text: str):
        found = find_last_integer(text)
        try:
            return None if found == INVALID else int(found)
        except ValueError:
            return None

    ours = pl.DataFrame({"t": texts}).select(last_integer_expr(pl.col("t")))["t"].to_list()
    integer_mismatches = sum(a != python_value(t) for a, t in zip(ours, texts))

    sample = pl.read_parquet(path, columns=["reference", "rewrite"], n_rows=rows)
    verdicts = check_frame(sample, recipe).collect()["accepted"].to_list()
    theirs = [authors_verify(rw.strip()) and authors_check_math(rf.strip(), rw.strip()) for rf, rw in sample.iter_rows()]
    verdict_mismatches = sum(a != b for a, b in zip(verdicts, theirs))
    return {"texts": len(texts), "integer_mismatches": integer_mismatches, "rows": sample.height,
            "verdict_mismatches": verdict_mismatches}


def run_side(code: str, path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"error: a benchmark side failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the paper's data folder (github sail-sg/sdft, data/)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side; medians are reported")
    args = parser.parse_args()
    if not (args.data / "gsm8k" / "gsm8k_train.json").is_file():
        sys.exit(f"error: {args.data}/gsm8k/gsm8k_train.json not found (give --data, the paper's data folder)")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.parquet"
        start = time.perf_counter()
        build_rows(args.data, args.rows, path)
        build_s = time.perf_counter() - start
        # Twenty perturbations of every GSM8K row: each distinct (question, rewrite) once.
        agreement = check_agreement(args.data, path, min(args.rows, 20 * 7473))
        if agreement["integer_mismatches"] or agreement["verdict_mismatches"]:
            sys.exit(f"error: the Polars checks and the authors' Python disagree: {agreement}")
        load_start = os.getloadavg()
        project, baseline = [], []
        for i in range(args.repeats):
            # The sides take turns, and take turns going first, so that both see the same machine load.
            for side in (("project", "baseline") if i % 2 == 0 else ("baseline", "project")):
                if side == "project":
                    project.append(run_side(PROJECT, path))
                else:
                    baseline.append(run_side(BASELINE, path))

    accepted = {r["accepted"] for r in project + baseline}
    if len(accepted) != 1:
        sys.exit(f"error: the two sides disagree on accepted rows: {sorted(accepted)}")
    project_s = statistics.median(r["seconds"] for r in project)
    baseline_s = statistics.median(r["seconds"] for r in baseline)
    stage_names = list(project[0]["stages"])
    print(json.dumps({
        "benchmark": "check_diff",
        "rows": args.rows,
        "accepted": accepted.pop(),
        "by_reason": project[0]["by_reason"],
        "build_s": round(build_s, 2),
        "agreement": agreement,
        "project_s": round(project_s, 3),
        "project_runs_s": [round(r["seconds"], 3) for r in project],
        # Medians over the runs. pass: the one pass over the rows (the checks run inside it, lazily);
        # check_alone: the checks by themselves, timed again after the run (part of pass, not added to it).
        "project_stages_s": {k: round(statistics.median(r["stages"][k] for r in project), 3) for k in stage_names},
        "baseline_s": round(baseline_s, 3),
        "baseline_runs_s": [round(r["seconds"], 3) for r in baseline],
        "speedup": round(baseline_s / project_s, 1),
        # Each round's two runs share the machine's state: the median of the rounds' ratios.
        "speedup_per_round": round(statistics.median(b["seconds"] / p["seconds"] for p, b in zip(project, baseline)), 1),
        "project_peak_mb": round(max(r["peak_mb"] for r in project)),
        "baseline_peak_mb": round(max(r["peak_mb"] for r in baseline)),
        "project_does": "check_frame + diff summary (reasons, lengths, answer agreement, ROUGE-L/Jaccard sample, "
                        "wording: markers, openings, n-gram shifts)",
        "baseline_does": "the authors' verify + check_math loop only",
        "timed": "after imports and loading the rows (Polars frame / Python lists), in a fresh subprocess per run",
        "cpus": os.cpu_count(),
        # os.getloadavg(): 1, 5 and 15 minutes, before the first run and after the last; and the 1-minute
        # figure as each run started. Above the core count, other work shared the cores.
        "load_avg_start": [round(x, 2) for x in load_start],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "load_1m_runs": {"project": [round(r["load_1m"], 2) for r in project],
                         "baseline": [round(r["load_1m"], 2) for r in baseline]},
    }))


if __name__ == "__main__":
    main()
