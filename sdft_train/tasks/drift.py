"""Drift: how far a tuned model moved from its seed model, measured without a judge.

Example row (AlpacaEval's instructions, the default held-out prompts): {"instruction": "Name three famous
Broadway actors.", "output": "..."}; the reference output is not used. Prompt: the alpaca template, as
`alpacaeval` (whose generations this task shares). `toy-drift` (sdft_train.tasks.toy) asks the same on the
toy world's kept abilities.

Two figures, both from the models' own token probabilities:

    kl (the score)   the tuned model's mean per-token KL divergence from the seed model, KL(seed || tuned)
                     over the whole vocabulary at every position of the seed model's own greedy answer: how
                     much of what the seed would say the tuned model has stopped saying. Per row, the mean
                     over the answer's tokens; the task's score, the mean over rows.
    seed_logprob     the seed model's mean log-likelihood per token of the tuned model's answers (this eval's
                     generations), beside seed_self_logprob, the seed's log-likelihood of its own greedy answers
                     (their difference is 0 for the seed model itself, with greedy decoding)

A model scored against itself drifts 0. Both models run here, on the same tokens: the model evaluated (an
adapter merged into its base) and the seed model, `--seed-model`, by default the base model its training
record names (a model with no record is its own seed). The seed model's greedy answers are generated here,
with the seed model, as a resumable run under OUT/runs/<task>-seed/, rather than read from the seed's eval
folder: that folder's answers may have been sampled, cut at another length or made on other rows, and the
seed model has to be loaded for its logits in any case. An answer is scored after its prompt, tokenized as
training tokenizes a response (sdft_data.gap), with the end-of-turn token when generation stopped on it.
Which seed model, its revision and the answers' run are recorded in results.json (the task's "details").
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable

from . import Data, Task, alpacaeval


def _answer_ids(tokenizer, text: str | None, finish: str | None, eos: int | None) -> list[int] | None:
    """The answer's tokens as scored: its text tokenized, plus the end-of-turn token when it stopped there."""
    if text is None:
        return None
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if finish == "eos_token" and eos is not None:
        ids = ids + [eos]
    return ids or None


def _end_of_answer(tokenizer, stop_ids: list[int]) -> int | None:
    # The token a chat model ends its turn with (<|im_end|>, <|eot_id|>), else the tokenizer's EOS: the text of
    # an answer does not say which of the stop ids ended it.
    from sdft_data.models import end_of_turn_token

    turn = end_of_turn_token(tokenizer)
    turn_id = tokenizer.convert_tokens_to_ids(turn) if turn is not None else None
    if turn_id in stop_ids:
        return turn_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else next(iter(stop_ids), None)


def _reuse_seed_answers(ctx, name: str, run_dir: Path, inputs: dict) -> bool:
    # The seed model's own eval (--seed-results) made the same greedy answers when its run has this one's
    # fingerprint (same prompts, model and revision, decoding): copied, not generated again. What is missing
    # from it is generated as a resume would.
    import shutil

    from sdft_data.rundir import fingerprint, read_manifest

    if ctx.seed_results is None or (run_dir / "manifest.json").exists():
        return False
    there = Path(ctx.seed_results) / "runs" / f"{name}-seed" / "greedy"
    try:
        same = read_manifest(there).get("fingerprint") == fingerprint(inputs)
    except (OSError, ValueError):
        return False
    if same:
        shutil.copytree(there, run_dir, ignore=shutil.ignore_patterns(".lock"))
        ctx.echo(f"{name}: the seed model's greedy answers from {there}")
    return same


def _seed_model(ctx) -> tuple[str | None, str]:
    """(the seed model to load, or None for the evaluated model itself; where that choice came from)."""
    if ctx.seed_model:
        return ctx.seed_model, "--seed-model"
    base = ((ctx.train or {}).get("base_model") or {}).get("name")
    if base:
        if not Path(base).exists() and (base.startswith((".", "/", "~")) or base.count("/") > 1):
            raise ValueError(f"drift: the training record's base model {base} is not here (a path relative to "
                             "where it was trained?): pass --seed-model")
        return base, "the training record's base model"
    return None, "the model itself (no training record)"


def _open_seed(name: str, engine):
    from sdft_data.backends import make_backend

    seed = make_backend("local", model=name, batch_size=getattr(engine, "batch_size", 16))
    if seed.tokenizer.get_vocab() != engine.tokenizer.get_vocab():
        seed.close()
        raise ValueError(f"drift: the seed model {name} has another tokenizer than the model evaluated: they must "
                         "share a vocabulary for their token probabilities to be compared")
    return seed


def make_task(name: str, *, description: str, load: Callable, prompt: Callable, hub: str | None = None,
              data_file: str | None = None, generation_key: str | None = None, version: int = 1) -> Task:
    """A drift task on the prompts `load` gives, rendered by `prompt` (see the module docstring)."""

    def score(rows, predictions, ctx):
        return _score(name, prompt, rows, predictions, ctx)

    return Task(name=name, version=version, description=description, metric="kl", load=load, prompt=prompt,
                score=score, hub=hub, data_file=data_file, percent=False, generation_key=generation_key,
                local_only=True)


def _score(name: str, prompt: Callable, rows: list[dict], predictions: list[str | None], ctx) -> list[dict]:
    from sdft_data.backends import Request
    from sdft_data.run import generate_run, generations

    engine = ctx.engine
    if engine is None or not hasattr(engine, "score"):
        raise ValueError(f"{name}: needs the model's logits: evaluate with --backend local")
    seed_name, chosen_by = _seed_model(ctx)
    seed = engine if seed_name is None else _open_seed(seed_name, engine)
    try:
        tokenizer = engine.tokenizer
        prompts = [prompt(r, tokenizer, ctx.fmt, ctx.layout) for r in rows]
        prompt_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        # The seed model's own greedy answers to the same prompts, as a resumable run.
        params = dataclasses.replace(ctx.decoding, temperature=0.0, stop=())
        info = seed.info.to_dict()
        digest = hashlib.sha256("\0".join(prompts).encode()).hexdigest()
        inputs = {"prompts": {"count": len(prompts), "sha256": digest, "format": ctx.fmt},
                  "model": {k: info[k] for k in ("backend", "model_id", "revision")},
                  "generation": params.to_dict(), "seed": 0}
        run_dir = ctx.out / "runs" / f"{name}-seed" / "greedy"
        if not _reuse_seed_answers(ctx, name, run_dir, inputs):
            ctx.echo(f"{name}: the seed model's greedy answers ({len(rows)} rows) in {run_dir}")
        generate_run(run_dir, inputs=inputs, rows=len(rows), engine=seed, params=params,
                     requests=[Request(row_id=r["id"], prompt=p, seed=0) for r, p in zip(rows, prompts)],
                     manifest_extra={"kind": "eval", "task": f"{name}-seed"}, progress=ctx.progress,
                     desc=f"{name}-seed")
        gen = generations(run_dir).collect()
        by_id = {row_id: (text if status == "ok" else None, finish)
                 for row_id, text, status, finish in gen.select("row_id", "text", "status", "finish_reason").iter_rows()}
        eos = _end_of_answer(tokenizer, list(seed.stop_ids))
        context = getattr(engine, "context", None)

        def sequences(answers: list[list[int] | None]) -> tuple[list, list[int]]:
            seqs, slots = [], []
            for i, (p, a) in enumerate(zip(prompt_ids, answers)):
                if a and p and not (context and len(p) + len(a) > context):
                    seqs.append((p + a, len(p)))
                    slots.append(i)
            return seqs, slots

        seed_answers = [_answer_ids(tokenizer, *by_id.get(r["id"], (None, None)), eos) for r in rows]
        ended = [by_id.get(r["id"], (None, None))[1] == "eos_token" for r in rows]
        # The tuned model's answers: this eval's generations; the text alone says nothing of how they ended,
        # so a stop on the end-of-turn token is not known here and none is appended.
        tuned_answers = [_answer_ids(tokenizer, p, None, eos) for p in predictions]
        out = [{"score": None, "seed_logprob": None, "seed_self_logprob": None, "tokens": None}
               for _ in rows]
        seqs, slots = sequences(seed_answers)
        # One pass of both models over the seed's answers: the KL at every position (the end-of-turn decision
        # included), and the seed's log-likelihood of its own text, which is compared with the tuned model's
        # answers' (text only, as those are known).
        kl_tokens = kl_sum = 0.0
        for i, s in zip(slots, seed.score(seqs, other=engine)):
            kl = s["kl"].double()
            out[i]["score"] = float(kl.mean())
            out[i]["tokens"] = len(kl)
            text_lp = s["logprobs"].double()[:-1] if ended[i] else s["logprobs"].double()
            out[i]["seed_self_logprob"] = float(text_lp.mean()) if len(text_lp) else None
            kl_tokens += len(kl)
            kl_sum += float(kl.sum())
        seqs, slots = sequences(tuned_answers)
        for i, s in zip(slots, seed.score(seqs)):
            out[i]["seed_logprob"] = float(s["logprobs"].double().mean())
    finally:
        if seed is not engine:
            seed.close()

    def mean(key):
        values = [o[key] for o in out if o[key] is not None]
        return round(sum(values) / len(values), 6) if values else None

    both = [o for o in out if o["seed_logprob"] is not None and o["seed_self_logprob"] is not None]
    ctx.records["details"] = {
        "seed_model": {"given": seed_name or "(the model evaluated)", "chosen_by": chosen_by,
                       "model_id": info["model_id"], "revision": info["revision"]},
        "seed_answers": {"run": str(run_dir.relative_to(ctx.out)), "decoding": "greedy",
                         "max_new_tokens": params.max_new_tokens, "rows": sum(a is not None for a in seed_answers)},
        "kl": {"mean_over_rows": mean("score"), "per_token": round(kl_sum / kl_tokens, 6) if kl_tokens else None,
               "tokens": int(kl_tokens), "direction": "KL(seed || model) on the seed's greedy answers"},
        "seed_logprob": {"of_model_answers": mean("seed_logprob"), "of_own_answers": mean("seed_self_logprob"),
                         "difference": round(sum(o["seed_logprob"] - o["seed_self_logprob"] for o in both) / len(both), 6)
                         if both else None, "rows": len(both)},
    }
    if kl_tokens == 0:
        ctx.notes.append(f"{name}: no row could be scored (empty or failed answers, or prompts past the context)")
    return out


TASK = make_task("drift", description="Drift from the seed model: mean per-token KL on the seed's greedy answers "
                 "(AlpacaEval's instructions)", load=alpacaeval.load, prompt=alpacaeval.prompt,
                 hub=alpacaeval.TASK.hub, data_file=alpacaeval.TASK.data_file, generation_key="alpacaeval")


def concat(loads: list[Callable[[str | None, int | None], Data]]) -> Callable[[str | None, int | None], Data]:
    """A load function giving the rows of several tasks' loads one after the other (ids renumbered)."""

    def load(data_dir: str | None, limit: int | None) -> Data:
        rows, sources = [], []
        for fn in loads:
            data = fn(data_dir, limit)
            sources.append(data.source)
            rows += [{**r, "id": len(rows) + j} for j, r in enumerate(data.rows)]
        return Data(rows, {"kind": "several", "parts": sources, "rows": len(rows), "limit": limit})

    return load
