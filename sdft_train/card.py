"""The model card (README.md) of a trained arm, rendered from `cards/model_card.md` by huggingface_hub's ModelCard.

Only what applies is shown: LoRA settings for an adapter, not for a full fine-tune; the epochs that ran
(not the ones asked for when --max-steps stopped it); numbers rounded; a licence only when the base
model's own record states one. Adapters carry `library_name: peft` and the Hub's
`base_model:adapter:<id>` tag, so the Hub links them to their base.

`sdft-train eval` of a trained arm's folder renders its card again with the results (`update_card`):
each task becomes a Hub `model-index` entry (task type text-generation, the test data's name, type and
revision, the metric and its value), which the Hub shows on the model page, and a table in the text with
each score's bootstrap 95% confidence interval. Results of other tasks already in the card stay.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdft_data.card import SDFT_CITATION, template_path
from sdft_data.models import source_line
from sdft_data.spec import TrainSpec, from_dict, public, show, to_argv


def onpolicy_citation() -> str:
    from .onpolicy import CITATION

    return CITATION

TEMPLATE_NAME = "model_card.md"
MANIFEST = "train_manifest.json"  # sdft_train.train.MANIFEST (train imports this module)
README = "README.md"


def _is_hub_id(name) -> bool:
    from sdft_data.models import is_hub_id

    return is_hub_id(name) and not Path(name).expanduser().exists()


def _data_revision(source: dict) -> str | None:
    # A Hub commit, a file's sha256, or for a local publishing folder the version alone: the folder's path is
    # this machine's, and a card may be published.
    revision = str(source.get("revision") or "")
    if "/" in revision or "\\" in revision:
        return f"{source.get('version')} (a local publishing folder)" if source.get("version") else None
    return revision[:40] or None


def base_id(record: dict) -> str:
    """The base model as a reader knows it: its Hub id (given, from its provenance or --model-id), else its name."""
    base = record.get("base_model") or {}
    for key in ("model_id", "name"):
        value = base.get(key)
        if _is_hub_id(value):
            return value
    return Path(str(base.get("model_id") or base.get("name") or "?")).name


def base_argument(record: dict) -> str:
    """--model as a reader can pass it: a fetched model's folder, a Hub id, a relative path as given; an
    absolute path never (its Hub id or name instead)."""
    from sdft_data.models import DEFAULT_DIR, SMOLLM2

    base = record.get("base_model") or {}
    if ((base.get("source") or {}).get("provenance") or {}).get("stands_for") == SMOLLM2.hub_id:
        return str(DEFAULT_DIR)
    name = str(base.get("name") or "")
    if name and not name.startswith(("/", "~")):
        return name
    return base_id(record)


def reproduce_command(record: dict) -> str:
    """The `sdft-train train` command that makes this arm again (paths as given; absolute ones by name)."""
    import shlex

    spec = record.get("spec")
    if not spec:
        return "# not recorded (trained by an older sdft)"
    made = public(from_dict(TrainSpec, spec), out=f"ckpt/{Path(str(spec.get('out') or 'model')).name}",
                  model=base_argument(record))
    return "sdft-train train " + shlex.join(to_argv(made))


def arm_of(record: dict) -> str:
    """sdft, vanilla or on-policy (records made before the on-policy arm name only their responses)."""
    return record.get("arm") or ("vanilla" if record.get("responses") == "original" else "sdft")


def _on_policy_rows(record: dict) -> list[tuple[str, str]]:
    entry, cfg = record.get("on_policy") or {}, record["config"]
    trl = entry.get("trl_config") or {}
    teacher = {"base": "the model before training", "live": "the student as it trains",
               "ema": "a moving average of the student"}.get(trl.get("teacher_model_kind"), "?")
    clip = trl.get("distillation_is_clip")
    return [
        ("sampled answers", f"{trl.get('num_generations')} per prompt, up to {trl.get('max_completion_length')} tokens,"
                            f" temperature {show(trl.get('temperature'))} ({entry.get('generation', '?')}); "
                            f"{entry.get('prompts_per_step')} prompts per step"),
        ("teacher", f"{teacher} (`{trl.get('teacher_model_kind')}`), shown the original response"),
        ("loss", f"TRL's: {trl.get('distillation_mode')} (k {trl.get('distillation_topk')}), divergence alpha "
                 f"{show(trl.get('distillation_alpha'))}" + (f", importance-sampling clip {show(clip)}" if clip else "")),
        ("answer tokens sampled", f"{entry.get('answer_tokens', 0):,}"),
        ("where it departs from TRL's defaults", "; ".join(entry.get("deviations") or ["nowhere"])),
    ]


def _procedure(record: dict) -> list[tuple[str, str]]:
    cfg = record["config"]
    on_policy = arm_of(record) == "on-policy"
    rows = [("arm", "on-policy self-distillation, TRL's experimental `SDFTTrainer`")] if on_policy else []
    if cfg.get("full"):
        rows.append(("method", "full fine-tuning"))
    else:
        rows.append(("method", f"LoRA, rank {cfg['lora_rank']}, alpha {cfg['lora_alpha']}, dropout "
                               f"{show(cfg['lora_dropout'])}, on `{','.join(cfg['lora_targets'])}`"))
    epochs = record.get("epochs_done")
    stopped = f" (stopped by --max-steps {cfg['max_steps']})" if cfg.get("max_steps") else ""
    rows.append(("optimizer steps", f"{record['optimizer_steps']}, {show(float(epochs or 0))} epochs{stopped}"))
    warmup = f", warmup {show(cfg['warmup_ratio'])} of the steps" if cfg.get("warmup_ratio") else ", no warmup"
    rows.append(("learning rate", f"{show(cfg['learning_rate'])}, {cfg['lr_scheduler']}{warmup}"))
    rows.append(("batch", f"{cfg['batch_size']} per device x {cfg['grad_accum']} accumulation x "
                          f"{record['world_size']} process(es) = {record['global_batch']} "
                          f"{'sampled answers' if on_policy else 'rows'} per step"))
    if on_policy:
        rows += _on_policy_rows(record)
    if cfg.get("weight_decay"):
        rows.append(("weight decay", show(cfg["weight_decay"])))
    rows.append(("gradient clipping", show(cfg["max_grad_norm"])))
    if on_policy:
        rows.append(("cutoff", f"{cfg['max_length']} tokens of prompt (a row with a longer one is left out)"))
    else:
        rows.append(("cutoff", f"{cfg['max_length']} tokens, prompt and response together"))
        rows.append(("row order", "grouped by length" if cfg.get("group_by_length") else "random"))
    rows.append(("precision", record.get("precision", "?")))
    rows.append(("seed", str(cfg.get("seed"))))
    final = record.get("final_loss")
    rows.append(("final loss", "n/a" if final is None else f"{final:.4f}"))
    tokens = (record.get("tokens") or {}).get("trained")
    if tokens:
        rows.append(("tokens trained", f"{tokens:,}"))
    rows.append(("time", f"{record.get('seconds', 0):.0f} s"))
    return rows


def _paper_line(entry: dict) -> str:
    if entry.get("matches"):
        return "yes" + (" (`--paper`)" if entry.get("mode") else "")
    return "no: " + "; ".join(entry.get("differences") or ["not recorded"])


def card_name(record: dict) -> str:
    """The model's name in its card's model-index: the Hub repo it was pushed to, else its folder's name."""
    return record.get("push_to_hub") or Path(str((record.get("spec") or {}).get("out") or "model")).name


def eval_results(results: dict, folder: str | Path) -> list:
    """huggingface_hub EvalResults for the scored tasks of an `sdft-train eval` output (`results`, read from `folder`).

    The dataset is the task's test data as results.json records it: a Hub dataset by its id, config, split and
    commit; a file (the paper's data folder) by the task's name and the file's sha256 as its revision. A row
    limit is in the dataset's name. Values are what the compare table shows: percent for rates.
    """
    from huggingface_hub import EvalResult

    from . import stats

    out = []
    for task, entry in results.get("tasks", {}).items():
        if entry.get("score") is None:
            continue
        data = entry.get("data") or {}
        percent = entry.get("percent", True)
        scale = 100.0 if percent else 1.0
        hub = data.get("kind") == "hub"
        limit = data.get("limit") or results.get("limit")
        name = f"{task}: {data.get('id') or '?'}" + (f", first {limit} rows" if limit else "")
        revision = data.get("revision") if hub else (f"sha256:{data['sha256']}" if data.get("sha256") else None)
        decoding = entry.get("decoding") or {}
        args = {"prompts": entry.get("scored"), "decoding": decoding.get("mode"),
                "samples": decoding.get("samples")}
        scores = stats.row_scores(folder, task, entry)
        ci = stats.mean_ci([scores]) if scores else None
        if ci is not None:
            args["ci95"] = [round(v * scale, 2 if percent else 4) for v in ci["ci"]]
        out.append(EvalResult(
            task_type="text-generation", task_name=task,
            dataset_type=data["id"] if hub and data.get("id") else task, dataset_name=name,
            dataset_config=data.get("config") if hub else None, dataset_split=data.get("split") if hub else None,
            dataset_revision=revision,
            metric_type=entry.get("metric") or "score", metric_name=f"{entry.get('metric') or 'score'}"
            + (" (%)" if percent else ""), metric_value=round(entry["score"] * scale, 2 if percent else 4),
            metric_args={k: v for k, v in args.items() if v is not None}, verified=False))
    return out


def update_card(model_dir: str | Path, results: dict, results_folder: str | Path) -> tuple[Path, int]:
    """Render `model_dir`'s README.md again from its train manifest, with `results` as model-index entries.

    Entries already in the card for other tasks stay; a task evaluated again replaces its entry. Returns
    the card's path and how many entries it holds.
    """
    from huggingface_hub import ModelCard

    model_dir = Path(model_dir)
    record = json.loads((model_dir / MANIFEST).read_text())
    new = eval_results(results, results_folder)
    readme = model_dir / README
    old = []
    if readme.is_file():
        try:
            old = ModelCard.load(readme).data.eval_results or []
        except Exception:  # a card edited into something that does not parse: rendered anew from the manifest
            old = []
    tasks = {e.task_name for e in new}
    evals = [e for e in old if e.task_name not in tasks] + new
    tmp = model_dir / f".{README}.tmp"
    tmp.write_text(model_card(record, evals=evals))
    tmp.replace(readme)
    return readme, len(evals)


def _eval_rows(evals: list) -> list[dict]:
    rows = []
    for e in evals:
        args = e.metric_args or {}
        ci = args.get("ci95")
        revision = str(e.dataset_revision or "")
        rows.append({"task": e.task_name or e.task_type, "data": e.dataset_name,
                     "revision": revision.split(":")[-1][:12] if revision else "-",
                     "metric": e.metric_name or e.metric_type, "value": e.metric_value,
                     "ci": f"{ci[0]} to {ci[1]}" if ci else "-", "prompts": args.get("prompts", "-"),
                     "decoding": args.get("decoding", "-")
                     + (f", {args['samples']} samples" if (args.get("samples") or 1) > 1 else "")})
    return rows


def model_card(record: dict, evals: list | None = None) -> str:
    """README.md text for a trained arm, from its train manifest (sdft_train.train) and its eval results, if any
    (huggingface_hub EvalResults, from `eval_results`)."""
    from huggingface_hub import ModelCard, ModelCardData

    from .stats import BOOTSTRAP_SEED, RESAMPLES

    base = record["base_model"]
    source = record["data_source"]
    lora = not record["config"].get("full")
    hub_base = base_id(record) if _is_hub_id(base_id(record)) else None
    data_repo = source["spec"].partition("@")[0] if source.get("kind") == "published" and \
        not (record.get("spec") or {}).get("hub_dir") else None
    arm = arm_of(record)
    on_policy = arm == "on-policy"
    tags = ["sdft", "on-policy", "trl", "self-distillation"] if on_policy else \
        ["sdft", f"responses-{record['responses']}", "trl", "sft"]
    tags += ["lora"] if lora else []
    if lora and hub_base:
        tags.append(f"base_model:adapter:{hub_base}")
    licence = ((base.get("source") or {}).get("provenance") or {}).get("license")
    meta = ModelCardData(base_model=hub_base, datasets=[data_repo] if data_repo else None,
                         library_name="peft" if lora else "transformers", tags=tags, license=licence,
                         pipeline_tag="text-generation", model_name=card_name(record) if evals else None,
                         eval_results=list(evals) if evals else None)
    sdft_arm = arm == "sdft"
    name = Path(str((record.get("spec") or {}).get("out") or "model")).name
    seed_model = record.get("seed_model") or {}
    match = record.get("seed_model_match")
    versions = [(k, v) for k, v in (record.get("library_versions") or {}).items() if v]
    ex = record["examples"]
    kwargs = dict(
        title=f"{record['recipe']['name']}: {'SDFT' if sdft_arm else 'on-policy' if on_policy else 'vanilla'} arm"
              + (" (LoRA adapter)" if lora else ""),
        what="A LoRA adapter for" if lora else "A full fine-tune of",
        base_id=base_id(record),
        base_revision=str(base.get("revision") or "")[:24] or None,
        base_source=source_line(base["source"]) if base.get("source") else None,
        arm_text="prompts and original responses" if on_policy
        else "SDFT responses (the seed model's own rewrites)" if sdft_arm
        else "original responses (vanilla fine-tuning)",
        other_arm="original" if sdft_arm else "sdft",
        on_policy=on_policy,
        teacher_prompt=(record.get("on_policy") or {}).get("teacher_prompt"),
        student_prompt=((record.get("on_policy") or {}).get("student_prompt") or {}).get("example"),
        on_policy_citation=onpolicy_citation() if on_policy else None,
        data_spec=source["spec"] if source.get("kind") == "published" else Path(str(source["spec"])).name,
        data_revision=_data_revision(source),
        data_fingerprint=(source.get("fingerprint") or "")[:16] or None,
        recipe=record["recipe"]["name"],
        responses=record["responses"],
        examples=ex["examples"], rows=ex["rows"], truncated=ex.get("truncated"), cut_away=ex.get("cut_away"),
        max_length=record["config"]["max_length"],
        fmt=record["format"], layout=record.get("paper_layout"), format_from=record.get("format_from", "?"),
        seed_model=seed_model.get("model_id"),
        seed_match="this base is the seed model" if match else
        "this base is not the seed model (--allow-other-model)" if match is False else "not checked",
        procedure=_procedure(record),
        paper_line=_paper_line(record.get("paper") or {}),
        has_loss_plot=bool(record.get("losses")),
        lora=lora,
        self_ref=record.get("push_to_hub") or f"ckpt/{name}",
        eval_model=(f"{base_argument(record)} --adapter ckpt/{name}" if lora else f"ckpt/{name}"),
        name=name,
        reproduce=reproduce_command(record),
        versions=versions,
        sdft_citation=SDFT_CITATION,
        evals=_eval_rows(evals or []),
        resamples=RESAMPLES, bootstrap_seed=BOOTSTRAP_SEED,
    )
    card = ModelCard.from_template(meta, template_path=str(template_path(TEMPLATE_NAME)), **kwargs)
    return str(card)
