"""The model card (README.md) of a trained arm, rendered from `cards/model_card.md` by huggingface_hub's ModelCard.

Only what applies is shown: LoRA settings for an adapter, not for a full fine-tune; the epochs that ran
(not the ones asked for when --max-steps stopped it); numbers rounded; a licence only when the base
model's own record states one. Adapters carry `library_name: peft` and the Hub's
`base_model:adapter:<id>` tag, so the Hub links them to their base.
"""

from __future__ import annotations

from pathlib import Path

from sdft_data.card import SDFT_CITATION, template_path
from sdft_data.models import source_line
from sdft_data.spec import TrainSpec, from_dict, public, show, to_argv


def onpolicy_citation() -> str:
    from .onpolicy import CITATION

    return CITATION

TEMPLATE_NAME = "model_card.md"


def _is_hub_id(name) -> bool:
    from sdft_data.models import is_hub_id

    return is_hub_id(name) and not Path(name).expanduser().exists()


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


def model_card(record: dict) -> str:
    """README.md text for a trained arm, from its train manifest (sdft_train.train)."""
    from huggingface_hub import ModelCard, ModelCardData

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
                         pipeline_tag="text-generation")
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
        data_revision=str(source.get("revision") or "")[:40] or None,
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
    )
    card = ModelCard.from_template(meta, template_path=str(template_path(TEMPLATE_NAME)), **kwargs)
    return str(card)
