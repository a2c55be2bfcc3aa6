"""Evaluate a model as the paper does: the tasks in sdft_train/tasks, generated through any backend.

    results = evaluate(model="meta-llama/Llama-2-7b-chat-hf", adapter="ckpt/gsm8k-sdft", suite="paper",
                       out="eval/gsm8k-sdft", data_dir="data")
    results = evaluate(EvalSpec.make(...))   # the same, from a spec (sdft_data.spec)

Each task's prompts are generated as a resumable run (sdft_data.run.generate_run:
fingerprint, shards, manifest) under OUT/runs/<task>/sample-<k>/, so a killed
eval continues where it stopped, and a folder holding another model's or
decoding's runs is refused. Then every task is scored and OUT gets:

    results.json              scores (mean and spread over samples), counts, decoding, data
                              (Hub revision or file sha256), model id and revision, task versions,
                              and the training record (arm, dataset) when the model has one
    predictions/<task>.jsonl  per row: input, reference, each sample's text and score
    alpacaeval/outputs.json   alpaca_eval's format (when alpacaeval ran)

Decoding: the spec's (sdft_data.spec.Decoding); its defaults sample as the
authors did (temperature 0.95, top-p 0.7, top-k 50, 512 new tokens, one seed
per row), and temperature 0 decodes greedily. HumanEval is always greedy, as
the authors' harness ran it. With `samples` N > 1, each sampled task is
generated N times with seeds seed, seed+1, ... and reported as mean and
standard deviation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
from pathlib import Path

from sdft_data.backends import Request
from sdft_data.spec import Backend, Decoding, EvalSpec
from sdft_data.errors import first_line
from sdft_data.rundir import now

from .tasks import Context, Task

RESULTS_FILE = "results.json"


def task_params(task: Task, decoding: Decoding) -> Decoding:
    """A task's decoding: the run's, greedy where the authors' harness was (HumanEval), with the task's stop strings."""
    if task.paper_decoding == "greedy":
        decoding = dataclasses.replace(decoding, temperature=0.0)
    return dataclasses.replace(decoding, stop=tuple(task.stop))


def read_train_record(path: str | Path | None) -> dict | None:
    """train_manifest.json of a fine-tuned model or adapter folder (the arm and the dataset), without the losses."""
    if path is None or not (Path(path) / "train_manifest.json").is_file():
        return None
    record = json.loads((Path(path) / "train_manifest.json").read_text())
    return {k: v for k, v in record.items() if k not in ("losses", "log_history")}


def arm_of(train: dict | None) -> str:
    """"seed" for a model with no training record, else the responses arm it was trained on."""
    if not train:
        return "seed"
    arm = train.get("responses") or train.get("arm")
    if isinstance(arm, dict):
        arm = arm.get("name")
    return {"original": "vanilla", "vanilla": "vanilla", "sdft": "sdft", None: "sdft"}.get(arm, str(arm))


def dataset_of(train: dict | None) -> str | None:
    """The fine-tuning dataset a training record names: its recipe, else its data spec."""
    if not train:
        return None
    recipe = train.get("recipe")
    if isinstance(recipe, dict) and recipe.get("name"):
        return recipe["name"]
    data = train.get("data")
    if isinstance(data, dict):
        data = data.get("spec")
    return str(data) if data else None


def open_engine(settings: Backend, adapter: str | None):
    """The backend the settings name, with a LoRA `adapter` merged in for the local backend.

    The model may itself be an adapter folder (its base is read from adapter_config.json).
    """
    model, backend = settings.model, settings.backend
    if (Path(model) / "adapter_config.json").is_file() and adapter is None:
        model, adapter = None, model
    if adapter is not None:
        if backend != "local":
            raise ValueError("--adapter is for the local backend; a server serves an adapter under its own model name "
                             "(vLLM: --lora-modules NAME=DIR; TGI: LORA_ADAPTERS): pass --model NAME")
        config = Path(adapter) / "adapter_config.json"
        if not config.is_file():
            raise ValueError(f"--adapter {adapter} is not a LoRA adapter folder (no adapter_config.json)")
        base = json.loads(config.read_text()).get("base_model_name_or_path")
        model = model or base
        if not model:
            raise ValueError(f"{config} names no base model: pass --model")
    engine = dataclasses.replace(settings, model=model).open()
    if adapter is not None:
        from peft import PeftModel

        from sdft_data.backends.local import folder_revision

        try:
            engine.model = PeftModel.from_pretrained(engine.model, adapter).merge_and_unload().eval()
        except Exception as e:
            raise ValueError(f"cannot apply adapter {adapter} to {model}: {first_line(e)}") from None
        base_info = {k: engine.info.model_id if k == "model_id" else engine.info.revision for k in ("model_id", "revision")}
        engine.info.extra["base_model"] = base_info
        engine.info.model_id = f"{base_info['model_id']}+{Path(adapter).name}"
        engine.info.revision = folder_revision(Path(adapter))
    return engine, model, adapter


def _sha(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()


def evaluate(spec: EvalSpec | None = None, *, judge=None, sandbox_limits=None, progress: bool = True, echo=print,
             engine=None, **settings) -> dict:
    """Evaluate as `spec` says into its folder; returns the results (also written to OUT/results.json).

    `spec` is an EvalSpec (sdft_data.spec), or its settings as keywords with the command line's names:
    evaluate(model="models/tiny", tasks="gsm8k,advbench", out="eval/tiny", limit=8, temperature=0.0).
    Bad input raises ValueError with one line, before any model loads. `engine` takes an already-open
    backend (tests, notebooks); `judge` an AlpacaEval judge object (else one from --judge-endpoint).
    """
    from sdft_data import __version__
    from sdft_data.run import generate_run, generations, row_seed

    from .tasks import resolve

    if spec is None:
        spec = EvalSpec.make(**settings)
    elif settings:
        raise TypeError("give an EvalSpec or keyword settings, not both")
    model, adapter, out = spec.backend.model, spec.adapter, Path(spec.out)
    fmt, decoding, samples, seed, limit = spec.prompt.format, spec.decoding, spec.samples, spec.seed, spec.limit
    data_dir, suite = spec.data_dir, spec.suite
    if not model:
        raise ValueError("--model is required (a Hub id, a local folder, or a served model's name)")
    tasks = resolve(",".join(spec.tasks) or None, suite)
    paper_diffs = spec.paper_differences()
    if spec.paper and paper_diffs:
        raise ValueError(f"--paper evaluates with the paper's settings, and these are not: {'; '.join(paper_diffs)}."
                         " Drop those options, or drop --paper")
    local_only = [t.name for t in tasks if t.local_only]
    if local_only and spec.backend.backend != "local":
        raise ValueError(f"{', '.join(local_only)} needs the model's logits, which a server does not return here: "
                         "evaluate it with --backend local (with --adapter for a LoRA adapter)")
    if engine is None and spec.backend.backend in ("tgi", "openai") and not spec.backend.endpoints:
        raise ValueError(f"--backend {spec.backend.backend} needs at least one --endpoint URL")
    if judge is None and spec.judge_endpoint:
        import os

        from .tasks.alpacaeval import Judge

        judge = Judge(spec.judge_endpoint, spec.judge_model, token=os.environ.get("OPENAI_API_KEY"))
    embedding_model = spec.embedding_model
    if data_dir is not None and not Path(data_dir).is_dir():
        raise ValueError(f"--data-dir {data_dir} does not exist (a folder laid out like the paper's data folder)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    seed_results = spec.seed_results
    if seed_results is not None:
        seed_results = Path(seed_results)
        if not (seed_results / RESULTS_FILE).is_file():
            raise ValueError(f"--seed-results {seed_results} has no {RESULTS_FILE}: evaluate the seed model there first")
    previous = None
    if out.is_dir() and (out / RESULTS_FILE).is_file():
        previous = json.loads((out / RESULTS_FILE).read_text())
        if previous.get("model", {}).get("given") not in (None, str(model)) or \
                previous.get("model", {}).get("adapter") != (str(adapter) if adapter else None):
            raise ValueError(f"{out} holds results of another model ({previous['model'].get('given')}"
                             f"{' + ' + previous['model']['adapter'] if previous['model'].get('adapter') else ''}): "
                             "use another --out")

    # Every task's data first: a missing file or Hub dataset is reported before a model loads.
    data = {t.name: t.load(data_dir, limit) for t in tasks}
    for t in tasks:
        if not data[t.name].rows:
            raise ValueError(f"{t.name}: the data has no rows")

    train = read_train_record(adapter) or read_train_record(model if Path(model).is_dir() else None)
    owns_engine = engine is None
    if engine is None:
        engine, base, adapter_used = open_engine(spec.backend, adapter)
        train = train or read_train_record(adapter_used)
    out.mkdir(parents=True, exist_ok=True)
    info = engine.info.to_dict()
    ctx_base = dict(out=out, model_name=Path(str(adapter or model)).name or str(model), judge=judge,
                    seed_results=seed_results, embedding_model=embedding_model, sandbox_limits=sandbox_limits,
                    seed=seed, engine=engine, seed_model=spec.seed_model, train=train, fmt=fmt, decoding=decoding,
                    progress=progress, echo=echo)
    results_tasks, notes = {}, []
    try:
        generated: dict[tuple, list[list[str | None]]] = {}  # (run key, params) -> per sample, per row
        prompts_of: dict[tuple, list[str]] = {}
        for task in tasks:
            params = task_params(task, decoding)
            mode = "sample" if params.do_sample else "greedy"
            n_samples = samples if params.do_sample else 1
            key = (task.run_key, params)
            rows = data[task.name].rows
            if key not in generated:
                prompts = [task.prompt(r, engine.tokenizer, fmt) for r in rows]
                prompts_of[key] = prompts
                generated[key] = []
                for k in range(n_samples):
                    sample_seed = seed + k
                    inputs = {
                        "data": data[task.name].source,
                        "prompts": {"count": len(prompts), "sha256": _sha(prompts), "example": prompts[0],
                                    "format": fmt},
                        "model": {k2: info[k2] for k2 in ("backend", "model_id", "revision")},
                        "generation": params.to_dict(),
                        "seed": sample_seed,
                    }
                    requests = [Request(row_id=r["id"], prompt=p, seed=row_seed(sample_seed, r["id"]))
                                for r, p in zip(rows, prompts)]
                    run_dir = out / "runs" / task.run_key / f"sample-{k}"
                    echo(f"{task.run_key}: generating {len(rows)} rows ({mode}, {k + 1} of {n_samples}) in {run_dir}")
                    generate_run(run_dir, inputs=inputs, rows=len(rows), requests=requests, engine=engine,
                                 params=params, manifest_extra={"kind": "eval", "task": task.run_key},
                                 progress=progress, desc=task.run_key)
                    gen = generations(run_dir).collect()
                    texts = dict(zip(gen["row_id"].to_list(), gen["text"].to_list()))
                    ok = dict(zip(gen["row_id"].to_list(), gen["status"].to_list()))
                    generated[key].append([texts.get(r["id"]) if ok.get(r["id"]) == "ok" else None for r in rows])
            results_tasks[task.name] = _score_task(task, data[task.name], generated[key], prompts_of[key], mode,
                                                   params, ctx_base, notes, echo)
    finally:
        if owns_engine:
            engine.close()

    decoding_record = {"params": {k: v for k, v in decoding.to_dict().items() if k != "stop"},
                       "samples": samples, "seed": seed, "format": fmt}
    if previous and previous.get("decoding") == decoding_record and previous.get("limit") == limit:
        # Tasks evaluated earlier into this folder, the same way, stay in the results.
        results_tasks = {**{k: v for k, v in previous.get("tasks", {}).items() if k not in results_tasks},
                         **results_tasks}
    results = {
        "results_version": 2,
        "sdft_version": __version__,
        "created_at": now(),
        "model": {"given": str(model), "adapter": str(adapter) if adapter else None, **info},
        "arm": arm_of(train),
        "dataset": dataset_of(train),
        "train": train,
        "decoding": decoding_record,
        "paper": {"mode": spec.paper, "matches": not paper_diffs, "differences": paper_diffs},
        "spec": spec.to_dict(),
        "suite": suite if not previous or previous.get("suite") in (None, suite) else None,
        "limit": limit,
        "tasks": results_tasks,
        "notes": notes,
    }
    tmp = out / (RESULTS_FILE + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    tmp.replace(out / RESULTS_FILE)
    return results


def _score_task(task: Task, data, samples_texts, prompts, mode, params, ctx_base, notes, echo) -> dict:
    rows = data.rows
    per_sample, per_row = [], []
    task_notes: list[str] = []
    details: dict = {}
    for k, texts in enumerate(samples_texts):
        ctx = Context(**ctx_base, sample=k, notes=task_notes, details=details)
        scored = task.score(rows, texts, ctx)
        per_row.append(scored)
        values = [s["score"] for s in scored if s.get("score") is not None]
        per_sample.append(sum(values) / len(values) if values else None)
    notes.extend(n for n in dict.fromkeys(task_notes))
    usable = [v for v in per_sample if v is not None]
    failed = sum(t is None for t in samples_texts[0])
    first = per_row[0]
    entry = {
        "version": task.version,
        "metric": task.metric,
        "percent": task.percent,
        "description": task.description,
        "score": statistics.fmean(usable) if usable else None,
        "std": statistics.stdev(usable) if len(usable) > 1 else (0.0 if usable else None),
        "per_sample": per_sample,
        "rows": len(rows),
        "scored": sum(s.get("score") is not None for s in first),
        "hits": sum(1 for s in first if s.get("score") == 1.0) if task.metric not in ("similarity", "kl") else None,
        "failed_generations": failed,
        "data": data.source,
        "decoding": {"mode": mode, "samples": len(samples_texts), "params": params.to_dict()},
        "prompt_example": prompts[0],
        "predictions": f"predictions/{task.name}.jsonl",
        "notes": list(dict.fromkeys(task_notes)),
    }
    if details:
        entry["details"] = details
    if task.name == "alpacaeval" and ctx_base.get("judge") is not None:
        entry["judge"] = ctx_base["judge"].describe()
        entry["judge"]["unreadable"] = sum(1 for s in first if s.get("verdict") == "unreadable")
    folder = ctx_base["out"] / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{task.name}.jsonl.tmp"
    with open(tmp, "w") as f:
        for i, row in enumerate(rows):
            reference = row["reference"]
            if isinstance(reference, dict):  # HumanEval: the problem id, not the whole problem
                reference = reference.get("task_id")
            record = {"id": row["id"], "input": row["input"], "reference": reference,
                      "predictions": [texts[i] for texts in samples_texts],
                      "scores": [scored[i].get("score") for scored in per_row]}
            extra = {k: [scored[i].get(k) for scored in per_row] for k in per_row[0][i] if k != "score"}
            f.write(json.dumps(record | extra, ensure_ascii=False) + "\n")
    tmp.replace(folder / f"{task.name}.jsonl")
    shown = "n/a" if entry["score"] is None else (
        f"{100 * entry['score']:.2f}" if task.percent else f"{entry['score']:.4f}")
    spread = f" ± {100 * entry['std'] if task.percent else entry['std']:.2f}" if len(usable) > 1 else ""
    echo(f"{task.name}: {task.metric} {shown}{spread} ({entry['scored']}/{entry['rows']} rows scored"
         f"{f', {failed} failed generations' if failed else ''})")
    return entry
