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
    python benchmarks/bench_method.py --seeds 2 --train-seeds 3   # each arm trained with --seed 1, 2, 3 per world

The budget is the same for every arm: --max-steps optimizer steps of 16 sequences (the on-policy
arm's are sampled answers, 8 per prompt at TRL's default, so 2 prompts a step), the same lr, seed
and rows.

One JSON line on stdout (progress goes to stderr):

    per_seed   [{seed, seed_model, vanilla, sdft, on_policy, gap, sdft_vs_vanilla, seconds_per_step}], each arm
               holding `target` (target-task test accuracy), `retention` (mean over the kept abilities
               of the arm's score divided by the seed model's, capped at 1), every ability's score,
               `drift` (toy-drift: mean per-token KL(seed || arm) on the seed's greedy answers to the
               kept abilities' prompts) and `seed_logprob_drop` (the seed's log-likelihood per token
               of its own answers minus that of the arm's answers): with --train-seeds N, the mean
               over the N trainings and, under `spread`, their standard deviation; `gap` is the
               distilled dataset's (sdft_data.gap): the seed model's mean log-likelihood per token of
               the originals and of the rewrites under the training prompt, their paired difference,
               and the SDFT responses' gain over the originals; `sdft_vs_vanilla` per task: the paired
               difference with its 95% interval and whether it is within noise (sdft-train compare's,
               over the prompts and the seeds); seconds_per_step: each arm's training seconds (its
               manifests) per optimizer step
    mean       the same, averaged over world seeds
    relation   how drift goes with retention over every (world seed, arm): Pearson's r, and in how
               many worlds SDFT drifted less than vanilla
    sdft_retains_at_least_vanilla   share of seeds where SDFT's retention >= vanilla's
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
DRIFT_TASK = "toy-drift"
DRIFT_KEYS = ("drift", "seed_logprob_drop")
# Each arm: its name in the output, and what makes it.
ARMS = {"vanilla": ["--responses", "original"], "sdft": ["--responses", "sdft"], "on_policy": ["--method", "on-policy"]}
# Every arm gets exactly this budget, with --max-steps and --lr (defaults 120 and 5e-4, the demo's):
# full fine-tuning, since the seed model is tiny.
TRAIN_ARGS = ["--full", "--batch-size", "16", "--grad-accum", "1", "--quiet"]
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
             train_seeds: list[int | None] = (None,), arms: tuple[str, ...] = tuple(ARMS)) -> dict:
    """One world: build, distill, publish, train each arm once per training seed (None: the preset's), evaluate."""
    from sdft_data.cli import main as data
    from sdft_train.cli import main as train
    from sdft_train.compare import assemble

    world, run, hub = work / "world", work / "run", work / "hub"
    _cli(data, ["toy-world", str(world), "--seed", str(seed), *world_args])
    _cli(data, ["distill", "--recipe", "toy", "--source", str(world / "data" / "target_train.jsonl"),
                "--model", str(world / "model"), "--out", str(run), "--temperature", "0", "--max-new-tokens", "48",
                "--batch-size", "64"])
    _cli(data, ["push", str(run), "--repo", f"toy/world-{seed}", "--hub-dir", str(hub), "--allow-no-rewrites"])
    models, seconds, steps = {"seed_model": [world / "model"]}, {}, {}
    for arm in arms:
        models[arm] = []
        for train_seed in train_seeds:
            out = work / (arm if train_seed is None else f"{arm}-seed{train_seed}")
            _cli(train, ["train", "--data", f"toy/world-{seed}@v1", "--hub-dir", str(hub), "--model",
                         str(world / "model"), "--out", str(out), *ARMS[arm], "--max-steps",
                         str(train_steps), "--lr", str(lr), *TRAIN_ARGS,
                         *([] if train_seed is None else ["--seed", str(train_seed)])])
            models[arm].append(out)
            record = json.loads((out / "train_manifest.json").read_text())
            seconds[arm] = seconds.get(arm, 0.0) + record["seconds"]
            steps[arm] = steps.get(arm, 0) + record["optimizer_steps"]
    scores, folders = {}, {}
    for arm, outs in models.items():
        scores[arm], folders[arm] = [], []
        for model in outs:
            folder = work / "eval" / (arm if model == world / "model" else model.name)
            _cli(train, ["eval", "--model", str(model), "--data-dir", str(world / "data"), "--out", str(folder),
                         *EVAL_ARGS])
            results = json.loads((folder / "results.json").read_text())
            score = {t: results["tasks"][t]["score"] for t in (TARGET_TASK, *KEPT_TASKS)}
            drift = results["tasks"].get(DRIFT_TASK)
            if drift:
                logprob = (drift.get("details") or {}).get("seed_logprob") or {}
                score["drift"] = drift["score"]
                score["seed_logprob_drop"] = (None if logprob.get("difference") is None
                                              else -logprob["difference"])
            scores[arm].append(score)
            folders[arm].append(folder)
    manifest = json.loads((run / "manifest.json").read_text())
    gate = json.loads((world / "world.json").read_text()).get("gate", {})
    entry = summarize(seed, scores, by_reason=manifest.get("check", {}).get("by_reason", {}), gate=gate,
                      gap=(manifest.get("gap") or {}).get("summary"))
    entry["seconds_per_step"] = {arm: round(seconds[arm] / steps[arm], 4) for arm in arms}
    # The paired differences `sdft-train compare` shows: SDFT minus vanilla per task, over prompts (and seeds).
    if "vanilla" not in folders or "sdft" not in folders:
        return entry
    table = assemble([*folders["seed_model"], *folders["vanilla"], *folders["sdft"]], seed=folders["seed_model"][0])
    # compare gives rates in points (x100) and raw scores (drift's KL) as they are: back to the entry's scale.
    scale = {task: 100.0 if percent else 1.0 for task, percent in table["percent"].items()}
    entry["sdft_vs_vanilla"] = {
        c["task"].removeprefix("toy-"): {"difference": round(c["difference"] / scale.get(c["task"], 100.0), 4),
                                         "ci": c["ci"] and [round(v / scale.get(c["task"], 100.0), 4) for v in c["ci"]],
                                         "within_noise": c["within_noise"]}
        for c in table["comparisons"] if c["against"] == "vanilla"}
    return entry


def _arm_entry(s: dict, base: dict) -> dict:
    kept = {t.removeprefix("toy-"): s[t] for t in KEPT_TASKS}
    ratios = [min(1.0, s[t] / base[t]) if base[t] > 0 else 1.0 for t in KEPT_TASKS]
    return {"target": s[TARGET_TASK], "retention": sum(ratios) / len(ratios), **kept,
            **{k: s[k] for k in DRIFT_KEYS if s.get(k) is not None}}


def summarize(seed: int, scores: dict, *, by_reason: dict | None = None, gate: dict | None = None,
              gap: dict | None = None) -> dict:
    """One world's entry: each arm's target accuracy, retention, every ability's score and drift; the gap.

    `scores[arm]` is one {task: score} or a list of them, one per training seed: the entry then holds their
    mean, and their standard deviation under `spread`.
    """
    import statistics

    per_arm = {arm: s if isinstance(s, list) else [s] for arm, s in scores.items()}
    base = per_arm["seed_model"][0]
    entry = {"seed": seed}
    for arm in ("seed_model", *(a for a in ARMS if a in per_arm)):
        runs = [_arm_entry(s, base) for s in per_arm[arm]]
        keys = [k for k in runs[0] if all(k in r for r in runs)]
        entry[arm] = {k: round(statistics.fmean(r[k] for r in runs), 4) + 0.0 for k in keys}  # + 0.0: no -0.0
        if len(runs) > 1:
            entry[arm]["train_seeds"] = len(runs)
            entry[arm]["spread"] = {k: round(statistics.stdev(r[k] for r in runs), 4) for k in keys}
    if gap:
        entry["gap"] = {"original": gap["original"]["mean"], "rewrite": gap["rewrite"]["mean"],
                        "rewrite_minus_original": gap["paired"]["mean"],
                        "rewrite_more_likely": f"{gap['paired']['rewrite_more_likely']}/{gap['paired']['rows']}",
                        "sdft_gain": gap["sdft"]["mean_gain"], "rows": gap["sdft"]["rows"]}
    if by_reason is not None:
        rows = sum(by_reason.values()) or 1
        entry["distill"] = {"accepted": round(by_reason.get("accepted", 0) / rows, 4), "by_reason": by_reason}
    if gate:
        entry["gate_passed"] = gate.get("passed")
    return entry


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sx = sum((x - mx) ** 2 for x in xs) ** 0.5
    sy = sum((y - my) ** 2 for y in ys) ** 0.5
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (sx * sy), 4) if sx and sy else None


def relation(per_seed: list[dict]) -> dict | None:
    """Drift against retention over every (world seed, trained arm), and how often SDFT drifted less than vanilla."""
    trained = [a for a in ARMS if a in per_seed[0]]
    pairs = [(e[arm]["drift"], e[arm]["retention"]) for e in per_seed for arm in trained if "drift" in e[arm]]
    if not pairs:
        return None
    out = {"pearson_drift_retention": _pearson(*map(list, zip(*pairs))), "points": len(pairs)}
    both = [e for e in per_seed if "drift" in e.get("sdft", {}) and "drift" in e.get("vanilla", {})]
    if both:
        less = sum(e["sdft"]["drift"] < e["vanilla"]["drift"] for e in both)
        out["sdft_drifts_less_than_vanilla"] = f"{less}/{len(both)}"
    return out


def aggregate(per_seed: list[dict]) -> dict:
    abilities = [t.removeprefix("toy-") for t in KEPT_TASKS]
    arms = ["seed_model", *(a for a in ARMS if a in per_seed[0])]
    keys = ["target", "retention", *abilities,
            *(k for k in DRIFT_KEYS if all(k in e[arm] for e in per_seed for arm in arms))]
    mean = {arm: {k: round(sum(e[arm][k] for e in per_seed) / len(per_seed), 4) + 0.0 for k in keys} for arm in arms}
    if all("gap" in e for e in per_seed):
        mean["gap"] = {k: round(sum(e["gap"][k] for e in per_seed) / len(per_seed), 4)
                       for k in ("original", "rewrite", "rewrite_minus_original", "sdft_gain")}
    seconds = {arm: round(sum(e["seconds_per_step"][arm] for e in per_seed) / len(per_seed), 4)
               for arm in arms[1:] if all(arm in e.get("seconds_per_step", {}) for e in per_seed)}
    extra = {"mean_seconds_per_step": seconds} if seconds else {}
    extra["relation"] = relation(per_seed)
    if "on_policy" in mean and "sdft" in mean:
        extra["sdft_retains_at_least_on_policy"] = round(
            sum(e["sdft"]["retention"] >= e["on_policy"]["retention"] for e in per_seed) / len(per_seed), 4)
    if "vanilla" not in mean or "sdft" not in mean:
        return {"mean": mean, **extra}
    wins = sum(e["sdft"]["retention"] >= e["vanilla"]["retention"] for e in per_seed)
    below = [k for k in abilities if mean["vanilla"][k] < mean["seed_model"][k]]
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
    # Per task: in how many worlds SDFT's paired difference from vanilla is outside noise (its interval misses 0).
    paired = [e.get("sdft_vs_vanilla", {}) for e in per_seed]
    tasks = list(dict.fromkeys(t for p in paired for t in p))
    outside = {t: f"{sum(p[t]['within_noise'] is False for p in paired if t in p)}/{n}" for t in tasks}
    return {"mean": mean, "sdft_retains_at_least_vanilla": round(wins / n, 4), **extra,
            "sdft_vs_vanilla_outside_noise": outside, "target": target}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8, help="How many world seeds.")
    ap.add_argument("--first-seed", type=int, default=0, help="Seeds first-seed .. first-seed+seeds-1.")
    ap.add_argument("--work", default=None, help="Working folder (kept); default: a temporary one (removed).")
    ap.add_argument("--steps", type=int, default=None, help="Seed-model pretraining steps (default: the world's).")
    ap.add_argument("--train-steps", type=int, default=120, help="Fine-tuning steps of each arm.")
    ap.add_argument("--lr", type=float, default=5e-4, help="Fine-tuning learning rate of each arm.")
    ap.add_argument("--train-seeds", type=int, default=1,
                    help="Train each arm this many times per world, with --seed 1..N (1: once, the preset's seed).")
    ap.add_argument("--arms", default=",".join(ARMS), help=f"Arms to train, comma-separated: {', '.join(ARMS)}.")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
    arms = tuple(a.strip().replace("-", "_") for a in args.arms.split(",") if a.strip())
    if not arms or set(arms) - set(ARMS):
        ap.error(f"--arms: choose among {', '.join(ARMS)}")
    if args.train_seeds < 1:
        ap.error("--train-seeds must be at least 1")
    train_seeds = [None] if args.train_seeds == 1 else list(range(1, args.train_seeds + 1))
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
                             train_seeds=train_seeds, arms=arms)
            entry["seconds"] = round(time.monotonic() - t, 1)
            per_seed.append(entry)
            print(f"seed {seed}: " + json.dumps(entry), file=sys.stderr, flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    out = {"benchmark": "method", "seeds": [e["seed"] for e in per_seed],
           "train": ["--max-steps", str(args.train_steps), "--lr", str(args.lr), *TRAIN_ARGS],
           "arms": {arm: ARMS[arm] for arm in arms},
           "train_seeds": [s for s in train_seeds if s is not None] or "preset", "eval": EVAL_ARGS,
           "per_seed": per_seed, **aggregate(per_seed), "seconds": round(time.monotonic() - t0, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
