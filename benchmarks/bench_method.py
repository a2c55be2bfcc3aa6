"""Does SDFT forget less than vanilla fine-tuning, and than on-policy self-distillation? Toy worlds, seed by seed.

For each world seed: build the world (`sdft-data toy-world`, cached seed
model), distill its target set with the seed model, publish v1 to a local
hub, train the arms from it with the same budget (vanilla on the original
references, SDFT on the distilled responses, on-policy with TRL's SDFTTrainer:
the model's own samples scored by itself shown the original reference),
evaluate the seed model and every arm on the toy suite, and read the scores.
The commands are the CLI's own, run in this process (click's `main(args)`),
so this measures exactly what a user's chain does.

    python benchmarks/bench_method.py --seeds 8               # seeds 0-7
    python benchmarks/bench_method.py --seeds 3 --first-seed 100 --work /tmp/bench-method
    python benchmarks/bench_method.py --seeds 2 --arms vanilla,sdft   # without the on-policy arm

The budget is the same for every arm: --max-steps optimizer steps of 16 sequences (the on-policy
arm's are sampled answers, 8 per prompt at TRL's default, so 2 prompts a step), the same lr, seed
and rows.

One JSON line on stdout (progress goes to stderr):

    per_seed   [{seed, seed_model, vanilla, sdft, on_policy, seconds_per_step}], each arm holding
               `target` (target-task test accuracy), `retention` (mean over the kept abilities of
               the arm's score divided by the seed model's, capped at 1) and every ability's score;
               seconds_per_step: each arm's training seconds (its manifest) per optimizer step
    mean       the same, averaged over seeds
    sdft_retains_at_least_vanilla   share of seeds where SDFT's retention >= vanilla's
    sdft_retains_at_least_on_policy the same against the on-policy arm
    target     the issue's target, each criterion with its measured value and whether it holds
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

KEPT_TASKS = ("toy-helpful", "toy-refusal", "toy-refusal-adv", "toy-benign", "toy-arithmetic", "toy-tools")
TARGET_TASK = "toy-target"
# Both arms get exactly this budget, with --max-steps and --lr (defaults 120 and 5e-4, the demo's):
# full fine-tuning, since the seed model is tiny.
TRAIN_ARGS = ["--full", "--batch-size", "16", "--grad-accum", "1", "--quiet"]
# Each arm: its name in the output, and what makes it.
ARMS = {"vanilla": ["--responses", "original"], "sdft": ["--responses", "sdft"], "on_policy": ["--method", "on-policy"]}
EVAL_ARGS = ["--suite", "toy", "--temperature", "0", "--max-new-tokens", "48", "--batch-size", "64", "--quiet"]


def _cli(main, args: list[str]) -> None:
    """Run one command as the CLI does (a click group's main), its output to stderr."""
    with contextlib.redirect_stdout(sys.stderr):
        try:
            main.main(args, standalone_mode=False)
        except SystemExit as e:
            if e.code:
                raise RuntimeError(f"command failed ({e.code}): {' '.join(args)}") from None


def run_seed(seed: int, work: Path, *, world_args: list[str] = (), train_steps: int = 120, lr: float = 5e-4,
             arms: tuple[str, ...] = tuple(ARMS)) -> dict:
    from sdft_data.cli import main as data
    from sdft_train.cli import main as train

    world, run, hub = work / "world", work / "run", work / "hub"
    _cli(data, ["toy-world", str(world), "--seed", str(seed), *world_args])
    _cli(data, ["distill", "--recipe", "toy", "--source", str(world / "data" / "target_train.jsonl"),
                "--model", str(world / "model"), "--out", str(run), "--temperature", "0", "--max-new-tokens", "48",
                "--batch-size", "64"])
    _cli(data, ["push", str(run), "--repo", f"toy/world-{seed}", "--hub-dir", str(hub), "--allow-no-rewrites"])
    per_step = {}
    for arm in arms:
        _cli(train, ["train", "--data", f"toy/world-{seed}@v1", "--hub-dir", str(hub), "--model", str(world / "model"),
                     "--out", str(work / arm), *ARMS[arm], "--max-steps", str(train_steps), "--lr", str(lr),
                     *TRAIN_ARGS])
        record = json.loads((work / arm / "train_manifest.json").read_text())
        per_step[arm] = round(record["seconds"] / record["optimizer_steps"], 4)
    scores = {}
    for arm, model in (("seed_model", world / "model"), *((arm, work / arm) for arm in arms)):
        _cli(train, ["eval", "--model", str(model), "--data-dir", str(world / "data"), "--out", str(work / "eval" / arm),
                     *EVAL_ARGS])
        results = json.loads((work / "eval" / arm / "results.json").read_text())
        scores[arm] = {t: results["tasks"][t]["score"] for t in (TARGET_TASK, *KEPT_TASKS)}
    manifest = json.loads((run / "manifest.json").read_text())
    gate = json.loads((world / "world.json").read_text()).get("gate", {})
    entry = summarize(seed, scores, by_reason=manifest.get("check", {}).get("by_reason", {}), gate=gate)
    entry["seconds_per_step"] = per_step
    return entry


def summarize(seed: int, scores: dict, *, by_reason: dict | None = None, gate: dict | None = None) -> dict:
    """One seed's entry: each arm's target accuracy, retention, and every ability's score."""
    base = scores["seed_model"]
    entry = {"seed": seed}
    for arm in ("seed_model", *(a for a in ARMS if a in scores)):
        s = scores[arm]
        kept = {t.removeprefix("toy-"): round(s[t], 4) for t in KEPT_TASKS}
        ratios = [min(1.0, s[t] / base[t]) if base[t] > 0 else 1.0 for t in KEPT_TASKS]
        entry[arm] = {"target": round(s[TARGET_TASK], 4), "retention": round(sum(ratios) / len(ratios), 4), **kept}
    if by_reason is not None:
        rows = sum(by_reason.values()) or 1
        entry["distill"] = {"accepted": round(by_reason.get("accepted", 0) / rows, 4), "by_reason": by_reason}
    if gate:
        entry["gate_passed"] = gate.get("passed")
    return entry


def aggregate(per_seed: list[dict]) -> dict:
    keys = ["target", "retention", *(t.removeprefix("toy-") for t in KEPT_TASKS)]
    arms = ["seed_model", *(a for a in ARMS if a in per_seed[0])]
    mean = {arm: {k: round(sum(e[arm][k] for e in per_seed) / len(per_seed), 4) for k in keys} for arm in arms}
    seconds = {arm: round(sum(e["seconds_per_step"][arm] for e in per_seed) / len(per_seed), 4)
               for arm in arms[1:] if all(arm in e.get("seconds_per_step", {}) for e in per_seed)}
    extra = {"mean_seconds_per_step": seconds} if seconds else {}
    if "on_policy" in mean and "sdft" in mean:
        extra["sdft_retains_at_least_on_policy"] = round(
            sum(e["sdft"]["retention"] >= e["on_policy"]["retention"] for e in per_seed) / len(per_seed), 4)
    if "vanilla" not in mean or "sdft" not in mean:
        return {"mean": mean, **extra}
    wins = sum(e["sdft"]["retention"] >= e["vanilla"]["retention"] for e in per_seed)
    below = [k for k in keys[2:] if mean["vanilla"][k] < mean["seed_model"][k]]
    n = len(per_seed)
    target = {
        "vanilla_retention_at_most_0.85": [mean["vanilla"]["retention"], mean["vanilla"]["retention"] <= 0.85],
        "vanilla_abilities_below_seed_at_least_3": [below, len(below) >= 3],
        "sdft_minus_vanilla_retention_at_least_0.15": [
            round(mean["sdft"]["retention"] - mean["vanilla"]["retention"], 4),
            mean["sdft"]["retention"] - mean["vanilla"]["retention"] >= 0.15],
        "sdft_retains_at_least_vanilla_on_7_of_8": [f"{wins}/{n}", wins >= 7 * n / 8],
        "sdft_target_at_most_0.05_below_vanilla": [
            round(mean["sdft"]["target"] - mean["vanilla"]["target"], 4),
            mean["sdft"]["target"] >= mean["vanilla"]["target"] - 0.05],
    }
    return {"mean": mean, "sdft_retains_at_least_vanilla": round(wins / n, 4), **extra, "target": target}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8, help="How many world seeds.")
    ap.add_argument("--first-seed", type=int, default=0, help="Seeds first-seed .. first-seed+seeds-1.")
    ap.add_argument("--work", default=None, help="Working folder (kept); default: a temporary one (removed).")
    ap.add_argument("--steps", type=int, default=None, help="Seed-model pretraining steps (default: the world's).")
    ap.add_argument("--train-steps", type=int, default=120, help="Fine-tuning steps of each arm.")
    ap.add_argument("--lr", type=float, default=5e-4, help="Fine-tuning learning rate of each arm.")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"Arms to train, comma-separated: {', '.join(ARMS)}.")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    arms = tuple(a.strip().replace("-", "_") for a in args.arms.split(",") if a.strip())
    if not arms or set(arms) - set(ARMS):
        ap.error(f"--arms: choose among {', '.join(ARMS)}")
    import torch

    # A sub-million-parameter model is faster on one thread than on two, and much
    # faster when other processes share the cores (threads wait on each other).
    torch.set_num_threads(1)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-method-"))
    world_args = ["--steps", str(args.steps)] if args.steps else []
    t0, per_seed = time.monotonic(), []
    try:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            folder = work / f"seed-{seed}"
            shutil.rmtree(folder, ignore_errors=True)
            t = time.monotonic()
            entry = run_seed(seed, folder, world_args=world_args, train_steps=args.train_steps, lr=args.lr,
                             arms=arms)
            entry["seconds"] = round(time.monotonic() - t, 1)
            per_seed.append(entry)
            print(f"seed {seed}: " + json.dumps(entry), file=sys.stderr, flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    out = {"benchmark": "method", "seeds": [e["seed"] for e in per_seed],
           "train": ["--max-steps", str(args.train_steps), "--lr", str(args.lr), *TRAIN_ARGS],
           "arms": {arm: ARMS[arm] for arm in arms}, "eval": EVAL_ARGS,
           "per_seed": per_seed, **aggregate(per_seed), "seconds": round(time.monotonic() - t0, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
