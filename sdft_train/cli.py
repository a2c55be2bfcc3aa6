"""`sdft-train`: fine-tune on a distilled dataset and evaluate, as thin click commands."""

from __future__ import annotations

import json

import click

from sdft_data.cli import user_errors

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdft-train")
def main():
    """Fine-tune a model on a distilled dataset (LoRA or full) and evaluate it as the paper does.

    \b
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k
    sdft-train eval --model ckpt/gsm8k --task gsm8k --data gsm8k_test.json --out ckpt/gsm8k/eval
    """


@main.command()
@click.option("--data", required=True, help="org/name@vN (published), a finished run directory, or a parquet/json file.")
@click.option("--local", default=None, type=click.Path(file_okay=False), help="Local publishing folder for org/name@vN.")
@click.option("--model", required=True, help="Base model: Hub id or local folder (the dataset's seed model).")
@click.option("--revision", default=None, help="Hub revision of --model.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where to save the adapter or model.")
@click.option("--responses", type=click.Choice(["sdft", "original"]), default="sdft", show_default=True,
              help="Which arm: the SDFT responses, or the original ones of the same rows (vanilla fine-tuning).")
@click.option("--recipe", default=None, help="Recipe whose train template to use (default: the dataset's).")
@click.option("--format", "fmt", type=click.Choice(["chat", "paper"]), default=None,
              help="Prompt format (default: the one the dataset was distilled in).")
@click.option("--paper-layout", type=click.Choice(["llama2", "llama3"]), default=None,
              help="Paper layout of a Llama-family recipe (default: the dataset's).")
@click.option("--full", is_flag=True, default=None, help="Full fine-tuning instead of LoRA.")
@click.option("--merge", is_flag=True, default=None, help="Also save the LoRA-merged model under OUT/merged.")
@click.option("--epochs", type=float, default=None, help="[paper: 5 for gsm8k/openfunctions, else 2]")
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimizer steps (overrides --epochs).")
@click.option("--lr", "learning_rate", type=float, default=None, help="[paper: 1e-4]")
@click.option("--lr-scheduler", default=None, help="[paper: cosine]")
@click.option("--warmup-ratio", type=float, default=None, help="[paper: 0]")
@click.option("--weight-decay", type=float, default=None, help="[paper: 0]")
@click.option("--max-grad-norm", type=float, default=None, help="[paper: 1.0]")
@click.option("--batch-size", type=int, default=None, help="Per device. [paper: 2]")
@click.option("--grad-accum", type=int, default=None, help="[paper: 4]")
@click.option("--lora-rank", type=int, default=None, help="[paper: 8]")
@click.option("--lora-alpha", type=int, default=None, help="[paper: 16]")
@click.option("--lora-dropout", type=float, default=None, help="[paper: 0.0]")
@click.option("--lora-targets", default=None, help="Comma-separated modules. [paper: q_proj,v_proj]")
@click.option("--max-length", type=int, default=None, help="Cutoff, prompt and response together. [paper: 1024]")
@click.option("--seed", type=int, default=None, help="[default: 42]")
@click.option("--save-steps", type=int, default=None, help="Checkpoint every N optimizer steps. [default: 500]")
@click.option("--save-total-limit", type=int, default=None, help="Checkpoints kept. [default: 2]")
@click.option("--bf16/--no-bf16", default=None, help="[default: on a GPU that has it]")
@click.option("--gradient-checkpointing/--no-gradient-checkpointing", default=None, help="[default: on GPU]")
@click.option("--padding-free/--no-padding-free", default=None,
              help="Flatten each batch into one sequence without padding. [default: on]")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its last checkpoint.")
@click.option("--allow-other-model", is_flag=True, help="Train a model that is not the dataset's seed model.")
@click.option("--push-to-hub", default=None, metavar="ORG/NAME", help="Upload the result to this model repo.")
@click.option("--private", is_flag=True, help="With --push-to-hub: create the repo private.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def train(data, local, model, revision, out, recipe, fmt, resume, allow_other_model, push_to_hub, private, quiet,
          **knobs):
    """Fine-tune MODEL on one arm of a distilled dataset; the loss on the response and EOS only.

    The defaults are the paper's preset; every flag in [brackets] overrides one
    value of it. Runs alone, under torchrun or under accelerate launch.

    \b
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k-sdft
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k-vanilla \\
        --responses original
    accelerate launch --config_file configs/ddp_8gpu.yaml -m sdft_train.cli train --data ... --out ...
    """
    import os

    from .train import TrainConfig, train as run_train

    knobs = {k: v for k, v in knobs.items() if v is not None}
    if "lora_targets" in knobs:
        knobs["lora_targets"] = tuple(t.strip() for t in knobs["lora_targets"].split(",") if t.strip())
    config = TrainConfig(format=fmt, **knobs)
    record = run_train(data=data, model=model, revision=revision, out=out, recipe=recipe, local=local, config=config,
                       resume=resume, allow_other_model=allow_other_model, push_to_hub=push_to_hub, private=private,
                       progress=not quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    ex = record["examples"]
    if ex["cut_away"]:
        click.echo(f"note: {ex['cut_away']} of {ex['rows']} rows had their whole response cut away by the"
                   f" {record['config']['max_length']}-token cutoff and were not trained on (see train_manifest.json)")
    if record["seed_model_match"] is False:
        click.echo(f"note: {model} is not the dataset's seed model (--allow-other-model)")
    final = f"{record['final_loss']:.4f}" if record["final_loss"] is not None else "n/a"
    click.echo(f"trained {record['optimizer_steps']} steps on {ex['examples']} examples ({record['responses']}"
               f" responses, {record['world_size']} process(es), global batch {record['global_batch']});"
               f" final loss {final}; saved to {out}" + (f" and pushed to {push_to_hub}" if push_to_hub else ""))


@main.command("eval")
@click.option("--model", required=True, help="Model folder, Hub id, or a LoRA adapter folder from `sdft-train train`.")
@click.option("--task", type=click.Choice(["gsm8k", "multiarith", "openfunctions", "advbench"]), required=True)
@click.option("--data", required=True, type=click.Path(dir_okay=False, exists=True), help="The task's test file.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Write scores and predictions here.")
@click.option("--limit", type=int, default=None)
@click.option("--jailbreak", is_flag=True, help="advbench: append the paper's adversarial suffix.")
@click.option("--format", "fmt", type=click.Choice(["chat", "paper"]), default="chat", show_default=True)
@click.option("--max-new-tokens", type=int, default=512, show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True)
@user_errors
def evaluate(model, task, data, out, limit, jailbreak, fmt, max_new_tokens, batch_size):
    """Score a model on GSM8K/MultiArith/OpenFunctions accuracy or AdvBench safe rate (greedy).

    \b
    sdft-train eval --model ckpt/gsm8k --task gsm8k --data gsm8k_test.json --out ckpt/gsm8k/eval
    sdft-train eval --model ckpt/gsm8k --task advbench --data harmful_behaviors.csv --jailbreak
    """
    from sdft_data.backends import GenerationParams

    from .evaluate import evaluate as run_eval

    report = run_eval(model=model, task=task, data=data, out=out, limit=limit, jailbreak=jailbreak, fmt=fmt,
                      params=GenerationParams(max_new_tokens=max_new_tokens, temperature=0), batch_size=batch_size)
    click.echo(json.dumps({"task": task, "jailbreak": jailbreak, "rows": report["rows"], **report["scores"]}))


if __name__ == "__main__":  # torchrun / accelerate launch -m sdft_train.cli train ...
    main()
