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
@click.option("--data", required=True, help="org/name@vN (published), a run directory, or a parquet/json file.")
@click.option("--local", default=None, type=click.Path(file_okay=False), help="Local publishing folder for org/name@vN.")
@click.option("--model", required=True, help="Base model: Hub id or local folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where to save the model or adapter.")
@click.option("--recipe", default=None, help="Recipe whose train template to use (default: the dataset's).")
@click.option("--full", is_flag=True, help="Full fine-tuning instead of LoRA.")
@click.option("--epochs", type=float, default=None, help="Default: the paper's (5 for gsm8k/openfunctions, else 2).")
@click.option("--max-steps", type=int, default=None, help="Stop after this many optimizer steps.")
@click.option("--lr", type=float, default=1e-4, show_default=True)
@click.option("--batch-size", type=int, default=2, show_default=True)
@click.option("--grad-accum", type=int, default=4, show_default=True)
@click.option("--max-length", type=int, default=1024, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["chat", "paper"]), default="chat", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@user_errors
def train(data, local, model, out, recipe, full, epochs, max_steps, lr, batch_size, grad_accum, max_length, fmt, seed):
    """Fine-tune MODEL on a distilled dataset; loss on the response only.

    \b
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k
    sdft-train train --data demo/gsm8k-sdft@v1 --local hub --model models/tiny --out ckpt/demo --max-steps 2
    """
    from .train import TrainConfig, train as run_train

    config = TrainConfig(lora=not full, learning_rate=lr, batch_size=batch_size, grad_accum=grad_accum,
                         epochs=epochs, max_steps=max_steps, max_length=max_length, seed=seed, format=fmt)
    record = run_train(data=data, model=model, out=out, recipe=recipe, local=local, config=config)
    final = f"{record['losses'][-1]:.4f}" if record["losses"] else "n/a"
    click.echo(f"trained {record['optimizer_steps']} steps on {record['examples']} examples; last loss {final}; saved to {out}")


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
