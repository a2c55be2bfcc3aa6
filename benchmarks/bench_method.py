"""Does SDFT forget less than vanilla fine-tuning? The whole experiment on toy worlds, seed by seed.

For each world seed: build the world (`sdft-data toy-world`, cached seed
model), distill its target set with the seed model, publish v1 to a local
hub, train both arms from it with the same budget (vanilla on the original
references, SDFT on the distilled responses), evaluate the seed model and both
arms on the toy suite, and read the scores. The commands are the CLI's own,
run in this process (click's `main(args)`), so this measures exactly what a
user's chain does.

    python benchmarks/bench_method.py --seeds 8               # seeds 0-7
    python benchmarks/bench_method.py --seeds 3 --first-seed 100 --work /tmp/bench-method

One JSON line on stdout (progress goes to stderr):

    per_seed   [{seed, seed_model, vanilla, sdft, gap}], each arm holding `target` (target-task test
               accuracy), `retention` (mean over the kept abilities of the arm's score divided by
               the seed model's, capped at 1), every ability's score, and `drift` (toy-drift: mean
               per-token KL(seed || arm) on the seed's greedy answers to the kept abilities' prompts)
               and `seed_logprob_drop` (the seed's log-likelihood per token of its own answers minus
               that of the arm's answers); `gap` is the distilled dataset's (sdft_data.gap): the seed
               model's mean log-likelihood per token of the originals and of the rewrites under the
               training prompt, their paired difference, and the SDFT responses' gain over the originals
    mean       the same, averaged over seeds
    relation   how drift goes with retention over every (seed, arm): Pearson's r, and on how many
               seeds SDFT drifted less than vanilla
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
# Both arms get exactly this budget, with --max-steps and --lr (defaults 120 and 5e-4, the demo's):
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


def run_seed(seed: int, work: Path, *, world_args: list[str] = (), train_steps: int = 120, lr: float = 5e-4) -> dict:
    from sdft_data.cli import main as data
    from sdft_train.cli import main as train

    world, run, hub = work / "world", work / "run", work / "hub"
    _cli(data, ["toy-world", str(world), "--seed", str(seed), *world_args])
    _cli(data, ["distill", "--recipe", "toy", "--source", str(world / "data" / "target_train.jsonl"),
                "--model", str(world / "model"), "--out", str(run), "--temperature", "0", "--max-new-tokens", "48",
                "--batch-size", "64"])
    _cli(data, ["push", str(run), "--repo", f"toy/world-{seed}", "--hub-dir", str(hub), "--allow-no-rewrites"])
    for arm, responses in (("vanilla", "original"), ("sdft", "sdft")):
        _cli(train, ["train", "--data", f"toy/world-{seed}@v1", "--hub-dir", str(hub), "--model", str(world / "model"),
                     "--out", str(work / arm), "--responses", responses, "--max-steps", str(train_steps), "--lr", str(lr),
                     *TRAIN_ARGS])
    scores, drift = {}, {}
    for arm, model in (("seed_model", world / "model"), ("vanilla", work / "vanilla"), ("sdft", work / "sdft")):
        _cli(train, ["eval", "--model", str(model), "--data-dir", str(world / "data"), "--out", str(work / "eval" / arm),
                     *EVAL_ARGS])
        results = json.loads((work / "eval" / arm / "results.json").read_text())
        scores[arm] = {t: results["tasks"][t]["score"] for t in (TARGET_TASK, *KEPT_TASKS)}
        drift[arm] = results["tasks"][DRIFT_TASK]
    manifest = json.loads((run / "manifest.json").read_text())
    gate = json.loads((world / "world.json").read_text()).get("gate", {})
    return summarize(seed, scores, by_reason=manifest.get("check", {}).get("by_reason", {}), gate=gate,
                     drift=drift, gap=(manifest.get("gap") or {}).get("summary"))


def summarize(seed: int, scores: dict, *, by_reason: dict | None = None, gate: dict | None = None,
              drift: dict | None = None, gap: dict | None = None) -> dict:
    """One seed's entry: each arm's target accuracy, retention, every ability's score, its drift; the gap."""
    base = scores["seed_model"]
    entry = {"seed": seed}
    for arm in ("seed_model", "vanilla", "sdft"):
        s = scores[arm]
        kept = {t.removeprefix("toy-"): round(s[t], 4) for t in KEPT_TASKS}
        ratios = [min(1.0, s[t] / base[t]) if base[t] > 0 else 1.0 for t in KEPT_TASKS]
        entry[arm] = {"target": round(s[TARGET_TASK], 4), "retention": round(sum(ratios) / len(ratios), 4), **kept}
        if drift:
            d = drift[arm]
            logprob = (d.get("details") or {}).get("seed_logprob") or {}
            entry[arm]["drift"] = round(d["score"], 4)
            entry[arm]["seed_logprob_drop"] = (None if logprob.get("difference") is None
                                               else round(-logprob["difference"], 4) + 0.0)  # no -0.0
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
    """Drift against retention over every (seed, arm), and how often SDFT drifted less than vanilla."""
    pairs = [(e[arm]["drift"], e[arm]["retention"]) for e in per_seed for arm in ("vanilla", "sdft")
             if e[arm].get("drift") is not None]
    if not pairs:
        return None
    less = sum(e["sdft"]["drift"] < e["vanilla"]["drift"] for e in per_seed if e["sdft"].get("drift") is not None)
    return {"pearson_drift_retention": _pearson(*map(list, zip(*pairs))), "points": len(pairs),
            "sdft_drifts_less_than_vanilla": f"{less}/{len(per_seed)}"}


def aggregate(per_seed: list[dict]) -> dict:
    keys = ["target", "retention", *(t.removeprefix("toy-") for t in KEPT_TASKS)]
    if all("drift" in e["sdft"] for e in per_seed):
        keys.append("drift")
    if all(e[arm].get("seed_logprob_drop") is not None for e in per_seed for arm in ("seed_model", "vanilla", "sdft")):
        keys.append("seed_logprob_drop")
    mean = {arm: {k: round(sum(e[arm][k] for e in per_seed) / len(per_seed), 4) for k in keys}
            for arm in ("seed_model", "vanilla", "sdft")}
    if all("gap" in e for e in per_seed):
        mean["gap"] = {k: round(sum(e["gap"][k] for e in per_seed) / len(per_seed), 4)
                       for k in ("original", "rewrite", "rewrite_minus_original", "sdft_gain")}
    wins = sum(e["sdft"]["retention"] >= e["vanilla"]["retention"] for e in per_seed)
    below = [k for k in keys[2:2 + len(KEPT_TASKS)] if mean["vanilla"][k] < mean["seed_model"][k]]
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
    return {"mean": mean, "sdft_retains_at_least_vanilla": round(wins / n, 4), "relation": relation(per_seed),
            "target": target}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8, help="How many world seeds.")
    ap.add_argument("--first-seed", type=int, default=0, help="Seeds first-seed .. first-seed+seeds-1.")
    ap.add_argument("--work", default=None, help="Working folder (kept); default: a temporary one (removed).")
    ap.add_argument("--steps", type=int, default=None, help="Seed-model pretraining steps (default: the world's).")
    ap.add_argument("--train-steps", type=int, default=120, help="Fine-tuning steps of each arm.")
    ap.add_argument("--lr", type=float, default=5e-4, help="Fine-tuning learning rate of each arm.")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")
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
            entry = run_seed(seed, folder, world_args=world_args, train_steps=args.train_steps, lr=args.lr)
            entry["seconds"] = round(time.monotonic() - t, 1)
            per_seed.append(entry)
            print(f"seed {seed}: " + json.dumps(entry), file=sys.stderr, flush=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    out = {"benchmark": "method", "seeds": [e["seed"] for e in per_seed],
           "train": ["--max-steps", str(args.train_steps), "--lr", str(args.lr), *TRAIN_ARGS], "eval": EVAL_ARGS,
           "per_seed": per_seed, **aggregate(per_seed), "seconds": round(time.monotonic() - t0, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
