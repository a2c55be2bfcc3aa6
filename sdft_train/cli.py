"""`sdft-train`: fine-tune on a distilled dataset and evaluate, as thin click commands."""

from __future__ import annotations

from pathlib import Path

import click

from sdft_data.cli import user_errors
from sdft_data.spec import EvalSpec, TrainSpec, cli_options, from_cli

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdft-train")
def main():
    """Fine-tune a model on a distilled dataset (LoRA or full) and evaluate it as the paper does.

    \b
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k
    sdft-train eval --model meta-llama/Llama-2-7b-chat-hf --adapter ckpt/gsm8k --suite paper --out eval/gsm8k-sdft
    sdft-train compare eval/seed eval/gsm8k-vanilla eval/gsm8k-sdft
    """


@main.command()
@cli_options(TrainSpec)
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its last complete checkpoint.")
@click.option("--quiet", is_flag=True, help="No progress bar and no per-step lines.")
@user_errors
def train(resume, quiet, **settings):
    """Fine-tune MODEL on one arm of a distilled dataset; the loss on the response and EOS only.

    The defaults are the paper's preset (LoRA r8 on q_proj,v_proj, lr 1e-4
    cosine, batch 2 x 4, 5 epochs for gsm8k and openfunctions, else 2); every
    option overrides one value of it. Runs alone, under torchrun or under
    accelerate launch. --method on-policy trains a third arm from the same
    rows: on-policy self-distillation with TRL's SDFTTrainer (not in the paper).

    \b
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k-sdft
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k-vanilla \\
        --responses original
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k-sdft --paper
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k-on-policy \\
        --method on-policy
    accelerate launch --config_file configs/ddp_8gpu.yaml -m sdft_train.cli train --data ... --out ...
    """
    import os

    from .train import train as run_train

    spec = from_cli(TrainSpec, settings)
    if quiet:
        _no_progress_bars()
    record = run_train(spec, resume=resume, progress=not quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    ex = record["examples"]
    for skipped in record.get("incomplete_checkpoints") or ():
        click.echo(f"note: checkpoint {skipped}: not resumed from, removed; "
                   + (f"resumed from {record['resumed_from']}" if record["resumed_from"] else
                      "no complete checkpoint was left, so training started from the beginning"))
    if ex["cut_away"]:
        click.echo(f"note: {ex['cut_away']} of {ex['rows']} rows had their whole response cut away by the"
                   f" {record['config']['max_length']}-token cutoff and were not trained on (see train_manifest.json)")
    if record["seed_model_match"] is False:
        click.echo(f"note: {spec.model} is not the dataset's seed model (--allow-other-model)")
    final = f"{record['final_loss']:.4f}" if record["final_loss"] is not None else "n/a"
    arm = (f"on-policy, {record['on_policy']['answer_tokens']:,} answer tokens sampled"
           if record.get("arm") == "on-policy" else f"{record['responses']} responses")
    click.echo(f"trained {record['optimizer_steps']} steps on {ex['examples']} examples ({arm},"
               f" {record['world_size']} process(es), global batch {record['global_batch']});"
               f" final loss {final}; saved to {spec.out}"
               + (f" and pushed to {spec.push_to_hub}" if spec.push_to_hub else ""))


def _no_progress_bars() -> None:
    """--quiet: not the libraries' bars either (loading weights, reading a dataset)."""
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()


@main.command("eval")
@cli_options(EvalSpec, required={"model"})
@click.option("--quiet", is_flag=True, help="No progress bars.")
@user_errors
def evaluate(quiet, **settings):
    """Evaluate a model as the paper does; writes OUT/results.json and per-row predictions.

    Each task's generation is a resumable run (OUT/runs/): run the same command
    again after a kill and it continues. An endpoint's token comes from
    --token-file, else OPENAI_API_KEY (openai backend) or HF_TOKEN (tgi), never
    from the command line; the AlpacaEval judge's from OPENAI_API_KEY.

    \b
    sdft-train eval --model meta-llama/Llama-2-7b-chat-hf --suite paper --data-dir data --out eval/seed
    sdft-train eval --model meta-llama/Llama-2-7b-chat-hf --adapter ckpt/gsm8k-sdft --suite paper \\
        --data-dir data --seed-results eval/seed --out eval/gsm8k-sdft
    sdft-train eval --backend openai --endpoint http://gpu:8000 --model gsm8k-sdft \\
        --tokenizer meta-llama/Llama-2-7b-chat-hf --tasks gsm8k,humaneval --out eval/gsm8k-sdft
    sdft-train eval --model meta-llama/Llama-2-7b-chat-hf --paper --suite paper --data-dir data --out eval/seed
    sdft-train eval --model models/tiny --suite quick --limit 8 --max-new-tokens 16 --temperature 0 --out eval/tiny
    """
    from sdft_data.backends._http import normalize_endpoint

    from .evaluate import evaluate as run_eval

    for url in settings.get("endpoints") or ():
        normalize_endpoint(url)
    spec = from_cli(EvalSpec, settings)
    if quiet:
        _no_progress_bars()
    results = run_eval(spec, progress=not quiet, echo=click.echo)
    for note in results["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"results: {Path(spec.out) / 'results.json'} ({results['arm']}"
               f"{', ' + results['dataset'] if results['dataset'] else ''})")


@main.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--seed", "seed_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="The seed model's results folder (default: the one whose model has no training record).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Also write table.md, table.tex, table.csv and table.png here.")
@click.option("--format", "fmt", type=click.Choice(["terminal", "markdown", "latex", "csv"]), default="terminal",
              show_default=True, help="What to print.")
@click.option("--resamples", default=10_000, show_default=True, type=click.IntRange(min=1),
              help="Bootstrap resamples for the 95% confidence intervals.")
@click.option("--bootstrap-seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the bootstrap (the same seed gives the same intervals).")
@user_errors
def compare(dirs, seed_dir, out, fmt, resamples, bootstrap_seed):
    """The paper's table from eval results: seed, vanilla and SDFT per fine-tuning dataset, a column per task.

    Each arm's difference from vanilla fine-tuning on the same dataset is shown
    with an arrow and its paired 95% confidence interval over the prompts (≈:
    within noise); a second table compares every arm with vanilla and with the
    seed model, with McNemar's exact test for 0/1 scores. Folders of one arm
    trained with different --seed make one row (mean and spread over the
    seeds). Results made with different task versions, decoding, data or
    limits are refused, with what differs.

    \b
    sdft-train compare eval/seed eval/gsm8k-vanilla eval/gsm8k-sdft
    sdft-train compare eval/* --seed eval/seed --out eval/table --format markdown
    sdft-train compare eval/seed eval/gsm8k-original-seed* eval/gsm8k-sdft-seed*   # several seeds an arm
    """
    from .compare import compare as run_compare

    table = run_compare(list(dirs), seed=seed_dir, out=out, resamples=resamples, bootstrap_seed=bootstrap_seed)
    click.echo(table[fmt])


if __name__ == "__main__":  # torchrun / accelerate launch -m sdft_train.cli train ...
    main()
