"""The on-policy arm: TRL's SDFTTrainer (Shenfeld et al., 2026) on the rows of a published SDFT dataset.

Same name as this toolkit's method, another algorithm. SDFT (Yang et al., 2024)
fine-tunes on responses written before training (the seed model's rewrites).
On-policy self-distillation has the model being trained (the student) sample
answers to each prompt as it goes, and the same model shown the row's original
response as privileged context (the teacher) score them: the loss pulls the
student's next-token distribution on its own answers towards the teacher's
(TRL's: top-k logit distillation with a generalised Jensen-Shannon divergence).

A published SDFT dataset holds what it needs:

    the student's prompt  the recipe's train template, exactly as the other arms train
                          with it: the same text (sdft_data.templates, in the dataset's
                          format) and the same token ids (no special token added)
    privileged context    the row's `original_response`
    the teacher's prompt  the same prompt, its instruction replaced by TRL's
                          teacher_prompt_template filled with the instruction and the context
                          ("{prompt}\\n\\n{privileged_context}" by default)

The conversation TRL is given is [system line, the row's instruction], TRL's "prompt", and
TRL composes the teacher's from it as it does for any conversational dataset (the template
fills the last user turn). Rendering a conversation puts its user turn into the recipe's train
template ("### Instruction:\\n{instruction}\\n\\n### Response:\\n" for Alpaca-style recipes), so
the privileged context lands in the instruction's place, before "### Response:".

Everything else is TRL's: the sampling (transformers' generate, or TRL's vLLM
engine when vLLM and a GPU are present), the teacher (the model before
training: the adapter switched off under LoRA, a frozen copy with --full), the
loss and its defaults. The optimizer, schedule, batch and budget are the other
arms' (sdft_data.spec.Training). `describe` lists every value that departs from
TRL's defaults, with its reason; the train manifest and the model card show it.

Budget: a step trains on --batch-size x --grad-accum x processes sampled answers,
--generations of them per prompt, so a step of 16 answers at TRL's 8 per prompt
covers 2 prompts; an epoch is every prompt once (TRL's sampler), that is
--generations answers per row.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields

from sdft_data import templates
from sdft_data.recipes import Recipe

from .data import ORIGINAL_COLUMN, Examples, check_columns

TRAINER = "trl.experimental.sdft.SDFTTrainer"
CITATION = """@article{shenfeld2026selfdistillation,
  title={Self-Distillation Enables Continual Learning},
  author={Shenfeld, Idan and Damani, Mehul and H{\\"u}botter, Jonas and Agrawal, Pulkit},
  journal={arXiv preprint arXiv:2601.19897},
  year={2026}
}"""

# TRL's SDFTConfig fields that shape what is trained: recorded in every on-policy manifest.
TRL_FIELDS = ("num_generations", "max_completion_length", "temperature", "top_p", "top_k", "min_p",
              "repetition_penalty", "teacher_model_kind", "teacher_update_rate", "teacher_sync_steps",
              "teacher_prompt_template", "generate_from_teacher", "distillation_mode", "distillation_alpha",
              "distillation_topk", "distillation_is_clip", "distillation_add_tail", "num_loss_tokens_to_skip",
              "num_iterations", "max_prompt_length", "shuffle_dataset", "disable_dropout", "use_vllm", "vllm_mode",
              "vllm_gpu_memory_utilization")
# Where a value differs from TRL's default, why.
WHY = {
    "num_generations": "--generations",
    "max_completion_length": "--max-completion-length",
    "temperature": "--rollout-temperature",
    "teacher_model_kind": "--teacher",
    "teacher_prompt_template": "--teacher-template",
    "use_vllm": "vLLM and a GPU are present, or --vllm",
    "max_prompt_length": "the student's prompt is the other arms' whole prompt (TRL cuts it from the left); a row "
                         "whose prompt reaches --max-length is left out and counted, as for the other arms",
}
# TrainingArguments the arms share (the paper's preset and the flags), against TRL's defaults.
SHARED_FIELDS = ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay", "max_grad_norm",
                 "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "max_steps",
                 "seed", "bf16", "activation_checkpointing", "logging_steps")
TRL_EFFECTIVE_DEFAULTS = {"bf16": True, "activation_checkpointing": True}  # set in TRL's __post_init__


def _trl():
    # TRL warns on every import of its experimental package; the manifest and the card say it is experimental.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are importing from 'trl.experimental'")
        from trl.experimental import sdft

    return sdft


@dataclass
class Prompts:
    """How a conversation [system, user] becomes the prompt text and ids the other arms train with."""

    recipe: Recipe
    tokenizer: object
    fmt: str
    layout: str | None  # the --paper-layout override, as for the other arms

    def turns(self, instruction: str) -> list[dict]:
        """The student's conversation for one row: the recipe's train system line and the row's instruction."""
        return [{"role": "system", "content": self.recipe.train_system}, {"role": "user", "content": instruction}]

    def text(self, messages: list[dict]) -> str:
        """The prompt text: the user turn put into the recipe's train template, then rendered as train_prompt does."""
        roles = [m.get("role") for m in messages]
        if roles != ["system", "user"]:
            raise ValueError(f"a prompt is a system and a user turn, not {roles}")
        user = self.recipe.train_user_for(self.fmt).format(instruction=messages[1]["content"])
        return templates.render_turns(messages[0]["content"], user, "", self.tokenizer, self.fmt,
                                      layout=self.recipe.paper_layout, override=self.layout)

    def ids(self, messages: list[dict]) -> list[int]:
        # As build_examples: the rendered text carries BOS where its layout has one; the tokenizer adds nothing.
        return self.tokenizer(self.text(messages), add_special_tokens=False)["input_ids"]

    def teacher_text(self, instruction: str, context: str, template: str) -> str:
        """The teacher's prompt as TRL composes it (its system turns, the template filling the user turn)."""
        system, _ = self.turns(instruction)
        return self.text([system, {"role": "user", "content": template.format(prompt=instruction,
                                                                              privileged_context=context)}])


def build_prompts(ds, prompts: Prompts, *, max_length: int) -> Examples:
    """One row per dataset row: the student's conversation and its privileged context (the original response).

    A row whose prompt reaches `max_length` tokens is left out and counted in
    `cut_away`, as build_examples does for the other arms.
    """
    import polars as pl

    check_columns(ds.column_names, prompts.recipe, "original")
    frame = pl.from_arrow(ds.data.table).select(
        prompts.recipe.instruction_expr(ds.column_names),
        # Stripped, as the other arms strip their responses.
        pl.col(ORIGINAL_COLUMN).cast(pl.String).fill_null("").str.strip_chars().alias("context"),
    )
    rows, cut_away, prompt_tokens = [], 0, 0
    for instruction, context in frame.iter_rows():
        messages = prompts.turns(instruction)
        n = len(prompts.ids(messages))
        if n >= max_length:
            cut_away += 1
            continue
        rows.append({"prompt": messages, "privileged_context": context})
        prompt_tokens += n
    if not rows:
        raise ValueError(f"no training prompt left: all {ds.num_rows} rows have prompts of at least --max-length "
                         f"{max_length} tokens")
    stats = {"rows": ds.num_rows, "examples": len(rows), "truncated": 0, "cut_away": cut_away,
             "prompt_tokens": prompt_tokens, "completion_tokens": 0}
    return Examples(rows, stats)


def use_vllm(config) -> bool:
    """Whether TRL samples with vLLM: --vllm / --no-vllm, else when vLLM is installed and a GPU is present."""
    import importlib.util

    import torch

    installed, gpu = importlib.util.find_spec("vllm") is not None, torch.cuda.is_available()
    if config.vllm is None:
        return installed and gpu
    if config.vllm and not installed:
        raise ValueError("--vllm needs the vllm package (pip install vllm), or drop --vllm to sample with "
                         "transformers' generate")
    if config.vllm and not gpu:
        raise ValueError("--vllm needs a GPU: drop it to sample with transformers' generate")
    return bool(config.vllm)


def sdft_args(out, config, epochs: float, progress: bool, *, revision: str | None = None):
    """TRL's SDFTConfig: the other arms' optimizer, schedule, batch and budget; TRL's defaults for the rest."""
    from .train import common_args

    return _trl().SDFTConfig(
        **common_args(out, config, epochs, progress),
        num_generations=config.generations,
        max_completion_length=config.max_completion_length,
        temperature=config.rollout_temperature,
        teacher_model_kind=config.teacher,
        teacher_prompt_template=config.teacher_template,
        use_vllm=use_vllm(config),
        max_prompt_length=None,
        # With --full the teacher is loaded again from the model's name: the same revision as the student.
        model_init_kwargs={"revision": revision} if revision else None,
    )


def _trainer_class():
    SDFTTrainer = _trl().SDFTTrainer

    class OnPolicyTrainer(SDFTTrainer):
        """TRL's SDFTTrainer, its loss untouched; a conversation becomes tokens as the other arms' prompts do."""

        def __init__(self, *args, prompts: Prompts, **kwargs):
            self.prompts = prompts
            super().__init__(*args, **kwargs)

        def _tokenize_prompts(self, prompts):
            # TRL applies the chat template to the bare conversation. Here the student's prompt and the teacher's are
            # the recipe's train template, rendered as the other arms' prompts are (chat template or the authors'
            # raw text), so that the student's is theirs token for token.
            return [self.prompts.ids(p) for p in prompts]

    return OnPolicyTrainer


def make_trainer(net, tokenizer, examples: Examples, args, config, prompts: Prompts):
    import datasets

    peft_config = None
    if not config.full:
        from peft import LoraConfig

        # The other arms' adapter (sdft_train.train._trainer).
        peft_config = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                 target_modules=list(config.lora_targets), bias="none", task_type="CAUSAL_LM")
    rows = datasets.Dataset.from_list(examples.rows)
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    trainer = _trainer_class()(model=net, args=args, train_dataset=rows, processing_class=tokenizer,
                               peft_config=peft_config, prompts=prompts)
    if not args.disable_tqdm:
        from transformers.trainer_callback import ProgressCallback

        from .train import _loss_on_the_bar

        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(_loss_on_the_bar())
    return trainer


def generated_tokens(trainer) -> int:
    """Tokens sampled over the run (every answer, EOS included): each step logs the mean length of its answers."""
    per_step = trainer.args.generation_batch_size  # all processes: one generation per optimizer step
    return int(round(sum(e["completions/mean_length"] * per_step for e in trainer.state.log_history
                         if "completions/mean_length" in e)))


def _show(value) -> str:
    if isinstance(value, str):
        return repr(value) if "\n" in value or not value else value
    return "not set" if value is None else str(value.value if hasattr(value, "value") else value)


def deviations(args) -> list[str]:
    """Every value of `args` that is not TRL's default, with why (one phrase each)."""
    sdft = _trl()
    defaults = {f.name: f.default for f in fields(sdft.SDFTConfig)} | TRL_EFFECTIVE_DEFAULTS
    out = ["prompts: the conversation (system line, instruction) is rendered as the other arms' prompts are (the "
           "recipe's train template through sdft_data.templates) and tokenized without added special tokens; TRL "
           "would apply the chat template to the bare conversation"]
    for name in TRL_FIELDS:
        ours, theirs = getattr(args, name), defaults[name]
        if ours != theirs:
            out.append(f"{name} {_show(ours)} (TRL: {_show(theirs)}): {WHY.get(name, 'set')}")
    shared = []
    for name in SHARED_FIELDS:
        ours, theirs = getattr(args, name), defaults[name]
        ours = getattr(ours, "value", ours)
        if ours != theirs:
            shared.append(f"{name} {_show(ours)} (TRL: {_show(theirs)})")
    if shared:
        out.append("the optimizer, schedule, batch, budget and precision of the other arms: " + ", ".join(shared))
    return out


def describe(trainer, prompts: Prompts) -> dict:
    """The train manifest's `on_policy` entry: TRL's trainer and settings, the prompts, every deviation."""
    args = trainer.args
    return {
        "trainer": TRAINER,
        "paper": "Shenfeld et al., 2026, Self-Distillation Enables Continual Learning (arXiv:2601.19897)",
        "privileged_context_column": ORIGINAL_COLUMN,
        "student_prompt": {"example": prompts.text(prompts.turns("{instruction}"))},
        "teacher_prompt": {"template": args.teacher_prompt_template,
                           "example": prompts.teacher_text("{instruction}", "{privileged_context}",
                                                           args.teacher_prompt_template)},
        "generation": f"vLLM ({args.vllm_mode})" if args.use_vllm else "transformers generate",
        "answers_per_step": args.generation_batch_size,
        "prompts_per_step": args.generation_batch_size // args.num_generations,
        "answer_tokens": generated_tokens(trainer),
        "trl_config": {name: getattr(args, name) for name in TRL_FIELDS},
        "deviations": deviations(args),
    }
