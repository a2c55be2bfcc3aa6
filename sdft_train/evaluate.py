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

What a score cannot show is said beside it: answers cut at max_new_tokens are
counted per task (`truncated`, and a note; `compare` marks the cell), and a
task that cannot be scored here (similarity without its embedding model) keeps
its entry with a null score and why (`not_scored`), while the other tasks'
results are written as usual.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
import warnings
from pathlib import Path

from sdft_data.backends import Request
from sdft_data.spec import Backend, Decoding, EvalSpec
from sdft_data.errors import first_line
from sdft_data.rundir import now

from .tasks import Context, Task

RESULTS_FILE = "results.json"


# What results.json holds, as far as readers rely on it: (path, the types it may have). A file edited
# by hand into other types is refused in one line rather than failing deep inside a reader.
_RESULTS_TYPES = [
    (("model",), (dict,)), (("tasks",), (dict,)), (("arm",), (str, type(None))), (("dataset",), (str, type(None))),
    (("train",), (dict, type(None))), (("decoding",), (dict, type(None))), (("limit",), (int, type(None))),
    (("suite",), (str, type(None))), (("notes",), (list, type(None))),
]
_TASK_TYPES = [
    (("score",), (int, float, type(None))), (("std",), (int, float, type(None))), (("percent",), (bool,)),
    (("decoding",), (dict,)), (("decoding", "samples"), (int,)), (("per_sample",), (list,)),
    (("rows",), (int,)), (("metric",), (str,)),
]
# Keys every reader indexes directly (the others it reads with a default).
_REQUIRED = {("model",), ("tasks",), ("decoding",), ("decoding", "samples")}


def _type_name(value) -> str:
    return {dict: "an object", list: "a list", str: "text", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def read_results(folder: str | Path) -> dict:
    """OUT/results.json of an eval folder; ValueError (one line) when it is missing, not JSON, or of other types."""
    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        raise ValueError(f"{folder} has no {RESULTS_FILE}: not an `sdft-train eval` output folder")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(results, dict) or "tasks" not in results:
        raise ValueError(f"{path} holds no task results")

    def edited(name: str, value) -> ValueError:
        return ValueError(f"{path}: {name} is {_type_name(value)}, which sdft-train eval never writes: the file was "
                          "edited; evaluate again into a fresh --out to remake it")

    def check(record: dict, rules, where: str) -> None:
        for keys, types in rules:
            value = record
            for k in keys:
                value = value.get(k, ...) if isinstance(value, dict) else ...
            if value is ...:
                if keys in _REQUIRED:
                    raise ValueError(f"{path}: {'.'.join((where, *keys)).lstrip('.')} is missing: the file was "
                                     "edited; evaluate again into a fresh --out to remake it")
                continue  # absent: readers take a default
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise edited(".".join((where, *keys)).lstrip("."), value)

    check(results, _RESULTS_TYPES, "")
    for task, entry in results["tasks"].items():
        if not isinstance(entry, dict):
            raise edited(f"tasks.{task}", entry)
        check(entry, _TASK_TYPES, f"tasks.{task}")
    return results


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
    """"seed" for a model with no training record, else the arm it was trained as: sdft, vanilla or on-policy."""
    if not train:
        return "seed"
    # Records name the arm (sdft_train.train.arm_name); older ones only the responses they trained on.
    arm = train.get("arm") or train.get("responses")
    if isinstance(arm, dict):
        arm = arm.get("name")
    return {"original": "vanilla", "vanilla": "vanilla", "sdft": "sdft", "on-policy": "on-policy",
            None: "sdft"}.get(arm, str(arm))


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

        from sdft_data.models import REVISION_OF, folder_revision

        try:
            with warnings.catch_warnings():
                # peft asks the model the deprecated `is_gradient_checkpointing`: nothing a user can act on.
                warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated",
                                        category=FutureWarning)
                engine.model = PeftModel.from_pretrained(engine.model, adapter).merge_and_unload().eval()
        except Exception as e:
            raise ValueError(f"cannot apply adapter {adapter} to {model}: {first_line(e)}") from None
        base_info = {k: engine.info.model_id if k == "model_id" else engine.info.revision for k in ("model_id", "revision")}
        engine.info.extra["base_model"] = base_info
        # The adapter's own id: the repo it was pushed to, else the base's id + the adapter folder's name.
        pushed = (read_train_record(adapter) or {}).get("push_to_hub")
        engine.info.model_id = pushed or f"{base_info['model_id']}+{Path(adapter).name}"
        engine.info.revision = folder_revision(Path(adapter))
        engine.info.extra["adapter"] = {"id_from": "its push_to_hub repo" if pushed else "base id + adapter folder name",
                                        "revision_of": REVISION_OF["folder"]}
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
    from sdft_data import __version__, templates
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
    paper_layout = spec.prompt.paper_layout
    if paper_layout is not None:
        templates.resolve_layout("llama", None, paper_layout)  # a bad value fails here
    if any(t.name == "similarity" for t in tasks):
        from .tasks.similarity import check_embedding_model

        check_embedding_model(embedding_model)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    seed_results = spec.seed_results
    if seed_results is not None:
        seed_results = Path(seed_results)
        if not (seed_results / RESULTS_FILE).is_file():
            raise ValueError(f"--seed-results {seed_results} has no {RESULTS_FILE}: evaluate the seed model there first")
    previous = None
    if out.is_dir() and (out / RESULTS_FILE).is_file():
        previous = read_results(out)
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

    # A folder evaluated another way is refused now, in a second, not after the model has loaded.
    for t in tasks:
        params = task_params(t, decoding)
        for k in range(samples if params.do_sample else 1):
            _refuse_other_run(out, t.run_key, k, {"data": data[t.name].source, "generation": params.to_dict(),
                                                  "seed": seed + k, "prompts": {"format": fmt}})

    train = read_train_record(adapter) or read_train_record(model if Path(model).is_dir() else None)
    trained = [p for p in (adapter, model) if p and Path(p).is_dir()]
    owns_engine = engine is None
    if engine is None:
        engine, base, adapter_used = open_engine(spec.backend, adapter)
        train = train or read_train_record(adapter_used)
        trained.append(adapter_used)
    out.mkdir(parents=True, exist_ok=True)
    info = engine.info.to_dict()
    ctx_base = dict(out=out, model_name=Path(str(adapter or model)).name or str(model), judge=judge,
                    seed_results=seed_results, embedding_model=embedding_model, sandbox_limits=sandbox_limits,
                    seed=seed, engine=engine, seed_model=spec.seed_model, train=train, fmt=fmt,
                    layout=paper_layout, decoding=decoding, progress=progress, echo=echo)
    results_tasks, notes = {}, []
    try:
        generated: dict[tuple, list[list[str | None]]] = {}  # (run key, params) -> per sample, per row
        prompts_of: dict[tuple, list[str]] = {}
        cut: dict[tuple, list[int]] = {}  # (run key, mode) -> per sample, answers cut at max_new_tokens
        for task in tasks:
            params = task_params(task, decoding)
            mode = "sample" if params.do_sample else "greedy"
            n_samples = samples if params.do_sample else 1
            key = (task.run_key, params)
            rows = data[task.name].rows
            if key not in generated:
                prompts = [task.prompt(r, engine.tokenizer, fmt, paper_layout) for r in rows]
                prompts_of[key] = prompts
                generated[key] = []
                cut[key] = []
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
                                 progress=progress, desc=task.run_key,
                                 max_prompt_chars=spec.backend.max_prompt_chars)
                    gen = generations(run_dir).collect()
                    texts = dict(zip(gen["row_id"].to_list(), gen["text"].to_list()))
                    ok = dict(zip(gen["row_id"].to_list(), gen["status"].to_list()))
                    finish = dict(zip(gen["row_id"].to_list(), gen["finish_reason"].to_list()))
                    generated[key].append([texts.get(r["id"]) if ok.get(r["id"]) == "ok" else None for r in rows])
                    cut[key].append(sum(ok.get(r["id"]) == "ok" and finish.get(r["id"]) == "length" for r in rows))
            results_tasks[task.name] = _score_task(task, data[task.name], generated[key], prompts_of[key], mode,
                                                   params, ctx_base, notes, echo, cut[key])
    finally:
        if owns_engine:
            engine.close()

    decoding_record = {"params": {k: v for k, v in decoding.to_dict().items() if k != "stop"},
                       "samples": samples, "seed": seed, "format": fmt}
    if previous and previous.get("decoding") == decoding_record and previous.get("limit") == limit:
        # Tasks evaluated earlier into this folder, the same way, stay in the results.
        results_tasks = {**{k: v for k, v in previous.get("tasks", {}).items() if k not in results_tasks},
                         **results_tasks}
    forced = []
    if fmt == "paper" and paper_layout:
        from sdft_data.recipes import get_recipe

        llama_family = [t.name for t in tasks if t.name in ("gsm8k", "multiarith")]  # the gsm8k recipe's layout
        if llama_family and get_recipe("gsm8k").paper_layout != "alpaca":
            difference = templates.layout_difference({"layout": paper_layout, "layout_from": "--paper-layout",
                                                      "model_layout": templates.model_layout(engine.tokenizer)})
            forced = [f"{difference} ({', '.join(llama_family)})"] if difference else []
    paper_diffs = [*paper_diffs, *forced]
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
    trained_dir = next((Path(p) for p in trained if p and (Path(p) / "train_manifest.json").is_file()), None)
    if trained_dir is not None:
        _update_card(trained_dir, results, out, echo)
    return results


def _update_card(model_dir: Path, results: dict, out: Path, echo) -> None:
    """The evaluated arm's model card gets the results as model-index entries (sdft_train.card.update_card)."""
    from .card import update_card

    try:
        readme, count = update_card(model_dir, results, out)
    except (OSError, KeyError, TypeError, ValueError) as e:  # a read-only folder, a manifest of an older sdft
        echo(f"note: the model card in {model_dir} was not updated with these results: {first_line(e) or repr(e)}")
        return
    repo = (results.get("train") or {}).get("push_to_hub") or "ORG/NAME"
    echo(f"model card: {readme} holds {count} eval result(s) as model-index metadata; to publish it on the Hub: "
         f"hf upload {repo} {readme} README.md")


def _refuse_other_run(out: Path, run_key: str, sample: int, known: dict) -> None:
    """ValueError when OUT/runs/<run_key>/sample-<k> holds a generation made with other `known` inputs."""
    from sdft_data.rundir import diff_keys, read_manifest

    run_dir = out / "runs" / run_key / f"sample-{sample}"
    if not (run_dir / "manifest.json").is_file():
        return
    def part(record, like):  # the part of `record` that `like` names
        if isinstance(like, dict) and isinstance(record, dict):
            return {k: part(record.get(k), v) for k, v in like.items()}
        return record if not isinstance(like, dict) else None

    differs = diff_keys(part(read_manifest(run_dir).get("fingerprint_inputs") or {}, known), known)
    if differs:
        raise ValueError(f"{out} holds an eval made another way ({run_key}, sample {sample}: differs in "
                         f"{', '.join(differs)}): use another --out, or the same options to continue it")


def _score_task(task: Task, data, samples_texts, prompts, mode, params, ctx_base, notes, echo,
                cut: list[int] | None = None) -> dict:
    from .tasks import TaskUnavailable

    rows = data.rows
    per_sample, per_row = [], []
    task_notes: list[str] = []
    records: dict = {}
    not_scored = None
    for k, texts in enumerate(samples_texts):
        ctx = Context(**ctx_base, sample=k, notes=task_notes, records=records)
        try:
            scored = task.score(rows, texts, ctx)
        except TaskUnavailable as e:
            # This task cannot be scored here; the others still are, and the results say why this one is not.
            not_scored = str(e)
            task_notes.append(f"{task.name}: not scored: {not_scored}")
            scored = [{"score": None} for _ in rows]
        per_row.append(scored)
        values = [s["score"] for s in scored if s.get("score") is not None]
        per_sample.append(sum(values) / len(values) if values else None)
    truncated = sum(cut or [])
    if truncated:
        task_notes.append(f"{task.name}: {truncated} of {len(rows) * len(samples_texts)} answers were cut at "
                          f"max_new_tokens {params.max_new_tokens} (scored as they are; raise --max-new-tokens)")
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
        "truncated": truncated,
        "data": data.source,
        "decoding": {"mode": mode, "samples": len(samples_texts), "params": params.to_dict()},
        "prompt_example": prompts[0],
        "predictions": f"predictions/{task.name}.jsonl",
        "notes": list(dict.fromkeys(task_notes)),
        **records,
    }
    if not_scored is not None:
        entry["not_scored"] = not_scored
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
         f"{f', {failed} failed generations' if failed else ''}{f', {truncated} cut at max_new_tokens' if truncated else ''})")
    return entry
