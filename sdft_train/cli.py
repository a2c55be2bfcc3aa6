"""`sdft-train`: fine-tune on a distilled dataset and evaluate, as thin click commands."""

from __future__ import annotations

import json
from pathlib import Path

import click

from sdft_data.cli import option_given, user_errors

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
@click.option("--data", required=True, help="org/name@vN (published), a finished run directory, or a parquet/json file.")
@click.option("--local", default=None, type=click.Path(file_okay=False), help="Local publishing folder for org/name@vN.")
@click.option("--model", required=True, help="Base model: Hub id or local folder (the dataset's seed model).")
@click.option("--revision", default=None, help="Hub revision of --model.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Where to save the adapter or model.")
@click.option("--responses", type=click.Choice(["sdft", "original"]), default="sdft", show_default=True,
              help="Which arm: the SDFT responses, or the original ones of the same rows (vanilla fine-tuning).")
@click.option("--paper", "paper_mode", is_flag=True,
              help="Reproduce the paper: its prompt format (--format paper) and its training preset; any option "
                   "that changes them is refused. Recorded in the train manifest and the model card.")
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
@click.option("--attn-implementation", default=None,
              help="Attention kernel, e.g. flash_attention_2 (needs flash-attn) on GPU. [default: transformers' (sdpa)]")
@click.option("--padding-free/--no-padding-free", default=None,
              help="Flatten each micro-batch into one sequence without padding. [default: on]")
@click.option("--pack-steps/--no-pack-steps", default=None,
              help="Padding-free: cut each optimizer step's rows into micro-batches of up to batch size x max length"
                   " tokens instead of batch-size rows (same rows, loss and gradients). [default: off]")
@click.option("--group-by-length", is_flag=True, default=None,
              help="Micro-batches of rows of similar length: less padding, but not the paper's random order.")
@click.option("--resume", is_flag=True, help="Continue the run in OUT from its last checkpoint.")
@click.option("--allow-other-model", is_flag=True, help="Train a model that is not the dataset's seed model.")
@click.option("--push-to-hub", default=None, metavar="ORG/NAME", help="Upload the result to this model repo.")
@click.option("--private", is_flag=True, help="With --push-to-hub: create the repo private.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors
def train(data, local, model, revision, out, recipe, fmt, paper_mode, resume, allow_other_model, push_to_hub, private,
          quiet, **knobs):
    """Fine-tune MODEL on one arm of a distilled dataset; the loss on the response and EOS only.

    The defaults are the paper's preset; every flag in [brackets] overrides one
    value of it. Runs alone, under torchrun or under accelerate launch.

    \b
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k-sdft
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k-vanilla \\
        --responses original
    sdft-train train --data my-org/gsm8k-sdft@v1 --model meta-llama/Llama-2-7b-chat-hf --out ckpt/gsm8k-sdft --paper
    accelerate launch --config_file configs/ddp_8gpu.yaml -m sdft_train.cli train --data ... --out ...
    """
    import os

    from .train import TrainConfig, train as run_train

    if paper_mode:
        if fmt not in (None, "paper"):
            raise click.UsageError(f"--paper sets --format paper: drop --format {fmt}, or drop --paper")
        fmt = "paper"
    knobs = {k: v for k, v in knobs.items() if v is not None}
    if "lora_targets" in knobs:
        knobs["lora_targets"] = tuple(t.strip() for t in knobs["lora_targets"].split(",") if t.strip())
    config = TrainConfig(format=fmt, **knobs)
    record = run_train(data=data, model=model, revision=revision, out=out, recipe=recipe, local=local, config=config,
                       resume=resume, allow_other_model=allow_other_model, push_to_hub=push_to_hub, private=private,
                       progress=not quiet, paper_mode=paper_mode)
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
@click.option("--model", required=True, help="Model: Hub id, local folder, or a LoRA adapter folder from `sdft-train train`.")
@click.option("--adapter", default=None, type=click.Path(file_okay=False, exists=True),
              help="LoRA adapter folder to apply to --model (local backend; merged in memory).")
@click.option("--tasks", "task_list", default=None, help="Comma-separated tasks: gsm8k,multiarith,openfunctions,"
              "humaneval,advbench,advbench-jailbreak,alpacaeval,similarity.")
@click.option("--suite", default=None, help="A named list of tasks: paper (the paper's table) or quick.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Results folder for this model.")
@click.option("--data-dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="Local test files laid out like the paper's data folder (default: the Hub datasets).")
@click.option("--backend", type=click.Choice(["local", "tgi", "openai"]), default="local", show_default=True)
@click.option("--endpoint", "endpoints", multiple=True, help="Server URL (tgi/openai); repeat for several.")
@click.option("--tokenizer", default=None, help="Tokenizer for prompt rendering with a server (default: --model).")
@click.option("--concurrency", type=int, default=None, help="Requests in flight per endpoint.")
@click.option("--paper", "paper_mode", is_flag=True,
              help="Evaluate as the paper: its prompt format (--format paper) and decoding (--decoding paper, 512 "
                   "new tokens); an option that changes them is refused. Recorded in results.json.")
@click.option("--decoding", type=click.Choice(["paper", "greedy"]), default="paper", show_default=True,
              help="paper: sampling as the authors (T 0.95, top-p 0.7, top-k 50, per-row seeds); greedy.")
@click.option("--samples", type=int, default=1, show_default=True, help="Generations per row (paper decoding): "
              "mean and spread.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--limit", type=int, default=None, help="First N rows of each task.")
@click.option("--format", "fmt", type=click.Choice(["chat", "paper"]), default="chat", show_default=True)
@click.option("--max-new-tokens", type=int, default=None, help="Default: the paper's 512.")
@click.option("--batch-size", type=int, default=16, show_default=True)
@click.option("--judge-endpoint", default=None, help="OpenAI-compatible server judging AlpacaEval.")
@click.option("--judge-model", default=None, help="The judge's model name.")
@click.option("--seed-results", default=None, type=click.Path(file_okay=False, exists=True),
              help="The seed model's eval folder (for similarity).")
@click.option("--embedding-model", default=None, help="Sentence-transformers model for similarity "
              "(default: all-MiniLM-L6-v2, as the authors).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@user_errors
def evaluate(model, adapter, task_list, suite, out, data_dir, backend, endpoints, tokenizer, concurrency, paper_mode,
             decoding, samples, seed, limit, fmt, max_new_tokens, batch_size, judge_endpoint, judge_model,
             seed_results, embedding_model, quiet):
    """Evaluate a model as the paper does; writes OUT/results.json and per-row predictions.

    Each task's generation is a resumable run (OUT/runs/): run the same command
    again after a kill and it continues. Tokens come from HF_TOKEN (Hub, TGI)
    and OPENAI_API_KEY (openai backend, judge), never from the command line.

    \b
    sdft-train eval --model meta-llama/Llama-2-7b-chat-hf --suite paper --data-dir data --out eval/seed
    sdft-train eval --model meta-llama/Llama-2-7b-chat-hf --adapter ckpt/gsm8k-sdft --suite paper \\
        --data-dir data --seed-results eval/seed --out eval/gsm8k-sdft
    sdft-train eval --backend openai --endpoint http://gpu:8000 --model gsm8k-sdft \\
        --tokenizer meta-llama/Llama-2-7b-chat-hf --tasks gsm8k,humaneval --out eval/gsm8k-sdft
    sdft-train eval --model meta-llama/Llama-2-7b-chat-hf --paper --suite paper --data-dir data --out eval/seed
    sdft-train eval --model models/tiny --suite quick --limit 8 --max-new-tokens 16 --out eval/tiny
    """
    import os

    from .evaluate import evaluate as run_eval
    from .tasks import resolve

    if paper_mode:
        from sdft_data import paper

        for flag, name, ours, theirs in (("--format", "fmt", fmt, paper.FORMAT),
                                         ("--decoding", "decoding", decoding, "paper"),
                                         ("--max-new-tokens", "max_new_tokens", max_new_tokens,
                                          paper.DECODING.max_new_tokens)):
            if ours is not None and ours != theirs and option_given(name):
                raise click.UsageError(f"--paper sets {flag} {theirs}: drop {flag} {ours}, or drop --paper")
        fmt, decoding = paper.FORMAT, "paper"
    tasks = resolve(task_list, suite)
    judge = None
    if bool(judge_endpoint) != bool(judge_model):
        raise click.UsageError("--judge-endpoint and --judge-model go together")
    if judge_endpoint:
        from .tasks.alpacaeval import Judge

        judge = Judge(judge_endpoint, judge_model, token=os.environ.get("OPENAI_API_KEY"))
    token = os.environ.get("OPENAI_API_KEY") if backend == "openai" else os.environ.get("HF_TOKEN")
    results = run_eval(model=model, adapter=adapter, tasks=tasks, out=out, backend=backend, endpoints=endpoints,
                       tokenizer=tokenizer, concurrency=concurrency, token=token, data_dir=data_dir, decoding=decoding,
                       samples=samples, seed=seed, limit=limit, fmt=fmt, max_new_tokens=max_new_tokens,
                       batch_size=batch_size, judge=judge, seed_results=seed_results, embedding_model=embedding_model,
                       suite=suite, progress=not quiet, echo=click.echo)
    for note in results["notes"]:
        click.echo(f"note: {note}")
    click.echo(f"results: {Path(out) / 'results.json'} ({results['arm']}"
               f"{', ' + results['dataset'] if results['dataset'] else ''})")


@main.command()
@click.argument("dirs", nargs=-1, required=True, type=click.Path(file_okay=False, exists=True))
@click.option("--seed", "seed_dir", default=None, type=click.Path(file_okay=False, exists=True),
              help="The seed model's results folder (default: the one whose model has no training record).")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Also write table.md, table.tex, table.csv and table.png here.")
@click.option("--format", "fmt", type=click.Choice(["terminal", "markdown", "latex", "csv"]), default="terminal",
              show_default=True, help="What to print.")
@user_errors
def compare(dirs, seed_dir, out, fmt):
    """The paper's table from eval results: seed, vanilla and SDFT per fine-tuning dataset, a column per task.

    SDFT's change over vanilla fine-tuning is shown with an arrow. Results made
    with different task versions, decoding, data or limits are refused, with
    what differs.

    \b
    sdft-train compare eval/seed eval/gsm8k-vanilla eval/gsm8k-sdft
    sdft-train compare eval/* --seed eval/seed --out eval/table --format markdown
    """
    from .compare import compare as run_compare

    table = run_compare(list(dirs), seed=seed_dir, out=out)
    click.echo(table[fmt])


if __name__ == "__main__":  # torchrun / accelerate launch -m sdft_train.cli train ...
    main()
