"""The run engine: distill a source dataset into a resumable, fingerprinted run directory.

    run = distill(recipe="gsm8k", source="openai/gsm8k", model="models/tiny", out="runs/gsm8k", limit=50)
    run = distill(DistillSpec.make(recipe="gsm8k", ...))   # the same, from a spec (sdft_data.spec)

A run is identified by a fingerprint: a hash of the source (id, config, split,
resolved revision or file hash), the recipe and its version, the rendered
template, the model (id, revision, backend), the generation parameters and the
seed. Same fingerprint into the same folder: resume, skipping finished rows.
Different fingerprint: refused. The layout is in docs/run-directory.md.

Finished rows are buffered and flushed to a new generations shard (tmp file,
then rename) every `flush_rows` rows (1024) or `flush_seconds` seconds (10), so
a killed run loses at most that much work and never writes a row twice; the
row bound keeps a million-row run at about a thousand shard files.

`generate_run` is that engine without the dataset: it takes already-rendered
requests (row id, prompt, seed) and the inputs that identify the run, and is
what `distill` and `sdft-train eval` both call.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

import polars as pl

from . import __version__, templates
from .backends import GenerationParams, Request, Result, make_backend
from .errors import sigterm_as_interrupt
from .recipes import Recipe
# The run directory's helpers live in rundir; imported here under the names other modules and tests use.
from .rundir import (  # noqa: F401
    GENERATION_SCHEMA,
    ShardWriter,
    check_shards,
    diff_keys,
    fingerprint,
    generations,
    read_manifest,
    write_manifest,
)
from .rundir import library_versions as _library_versions
from .rundir import now as _now
from .source import SourceSpec, check_text_columns, open_source, write_source_parquet
from .spec import DistillSpec

def recipe_object(settings: dict) -> Recipe | None:
    """A Recipe object given as the `recipe` keyword (one with a Check of your own): it is used, and the
    spec names it (its name, or custom with its columns). None when `recipe` is a name."""
    rec = settings.get("recipe")
    if not isinstance(rec, Recipe):
        return None
    custom = rec.name == "custom"
    settings["recipe"] = "custom" if custom else rec.name
    if custom:
        for name in ("prompt_column", "input_column", "response_column"):
            settings.setdefault(name, getattr(rec, name))
    return rec


# Inside a batch, the progress bar shows the tokens generated at most this often (seconds).
PROGRESS_SECONDS = 0.5


def row_seed(seed: int, row_id: int) -> int:
    """The row's own sampling seed: stable across resumes, batches and machines (31 bits)."""
    digest = hashlib.sha256(f"{seed}:{row_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass
class RunSummary:
    """What `distill` did: where, which run, and how many rows ended how."""

    run_dir: Path
    fingerprint: str
    resumed: bool
    generated_now: int
    counts: dict = field(default_factory=dict)  # rows by generation status
    by_reason: dict = field(default_factory=dict)  # rows by check reason
    distilled: Path | None = None
    template_leaks: int = 0  # rewrites that write the distill template's headers (sdft_data.check)
    gap: dict | None = None  # the manifest's gap entry (sdft_data.gap), or why there is none


# The most characters a rendered prompt may have; a longer row fails with the reason, untokenized.
# Tokenizing takes about 300 bytes of memory a character (a 10 MB row took 2.7 GB, a 200 MB one
# more than 20 GB), and no model's context holds a million characters of text.
MAX_PROMPT_CHARS = 1_000_000


@dataclass(frozen=True)
class Refused:
    """A row failed before it was rendered or sent (no text to rewrite, too long): recorded, never generated."""

    row_id: int
    seed: int
    error: str


def _too_long(chars: int, limit: int) -> str:
    return (f"prompt too long: {chars:,} characters, more than --max-prompt-chars {limit:,} (tokenizing it would "
            f"take about {chars * 300 / 1e9:.1f} GB); it is not sent")


def _pending_requests(
    run_dir: Path, recipe: Recipe, tokenizer, fmt: str, seed: int, wanted, layout: str | None = None,
    max_chars: int = MAX_PROMPT_CHARS,
) -> Iterator[Request | Refused]:
    """Requests for the rows still to do, read from source.parquet batch by batch.

    A row that cannot be distilled is yielded as Refused instead, never rendered: one with
    no instruction or no reference response (null or empty: nothing to rewrite, or nothing to
    check a rewrite against), or one whose texts alone are over `max_chars` characters.
    """
    import pyarrow.parquet as pq

    source = pq.ParquetFile(run_dir / "source.parquet")
    names = source.schema_arrow.names
    # Small batches: a batch of rows is in memory at once, and a row may be large.
    for batch in source.iter_batches(batch_size=256):
        frame = pl.from_arrow(batch).select("row_id", recipe.instruction_expr(names), recipe.reference_expr())
        sizes = frame.select(pl.col("instruction").str.len_chars() + pl.col("reference").str.len_chars())
        for (row_id, instruction, reference), (size,) in zip(frame.iter_rows(), sizes.iter_rows()):
            if not wanted(row_id):
                continue
            missing = [what for what, text in (("instruction", instruction), ("reference response", reference))
                       if not text]
            if missing:
                yield Refused(row_id, row_seed(seed, row_id),
                              f"the source row has no {' and no '.join(missing)} (null or empty): not sent")
            elif size > max_chars:
                yield Refused(row_id, row_seed(seed, row_id), _too_long(size, max_chars))
            else:
                prompt = templates.distill_prompt(recipe, instruction, reference, tokenizer, fmt, layout=layout)
                yield Request(row_id=row_id, prompt=prompt, seed=row_seed(seed, row_id))


def _model_hint(backend: str, model: str | None, model_id: str | None = None) -> dict:
    """The parts of the fingerprint's `model` entry known before the backend opens (no weights loaded)."""
    hint = {"backend": backend}
    if model and backend == "local":
        from .models import resolve_model

        hint["model_id"] = resolve_model(model, model_id=model_id, content_hash=False).model_id
    elif model:
        hint["model_id"] = model
    return hint


def _filter_rows(ds, source_desc: dict, rec: Recipe, limit: int | None):
    """Keep the rows the recipe's row_filter selects (when the source has its column), then the first `limit`."""
    column, value = rec.row_filter
    if column in ds.column_names:
        ds = ds.filter(lambda values: [v == value for v in values], input_columns=[column], batched=True)
        if len(ds) == 0:
            raise ValueError(f"source {source_desc['id']} has no rows with {column} == {value!r}")
    else:
        rec = replace(rec, row_filter=None)  # recorded truthfully: nothing was filtered
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    return ds, {**source_desc, "rows": len(ds), "limit": limit}, rec


def _refuse_other_run(run_dir: Path, known: dict) -> None:
    """ValueError when run_dir holds a run that differs in what is `known` before the model loads.

    Checked before the backend opens, so a different run is refused in a
    second, not after minutes of loading weights; the full fingerprint is
    compared again once the model (revision, tokenizer, template) is known.
    """
    if not (run_dir / "manifest.json").is_file():
        return
    manifest = read_manifest(run_dir)
    old = manifest.get("fingerprint_inputs") or {}
    old_known = {k: old.get(k) for k in known}
    old_known["model"] = {k: (old.get("model") or {}).get(k) for k in known["model"]}
    differs = diff_keys(old_known, known)
    if differs:
        raise ValueError(
            f"{run_dir} holds a different run (fingerprint {str(manifest.get('fingerprint', '?'))[:12]}; differs in: "
            f"{', '.join(differs)}): use another --out, or the same options to resume it"
        )
    check_shards(sorted((run_dir / "generations").glob("*.parquet")))


def distill(spec: DistillSpec | None = None, *, engine=None, retry_failed: bool = False, progress: bool = True,
            flush_rows: int = 1024, flush_seconds: float = 10.0, **settings) -> RunSummary:
    """Distill as `spec` says into its run directory, resuming if it holds the same run.

    `spec` is a DistillSpec (sdft_data.spec); or give its settings as keywords, with the command line's
    names: distill(recipe="gsm8k", source="openai/gsm8k", model="models/tiny", out="runs/gsm8k", limit=50,
    max_new_tokens=256); `recipe` may then be a Recipe object (a Check of your own).
    `engine` takes an already-open backend (tests, notebooks); otherwise one is
    opened from the spec's backend settings. Bad input raises ValueError with one clear line before
    anything is written. `retry_failed` re-runs only the rows that failed.
    """
    from . import paper
    from .check import check_rules

    own_recipe = recipe_object(settings)
    if spec is None:
        spec = DistillSpec.make(**settings)
    elif settings:
        raise TypeError("give a DistillSpec or keyword settings, not both")
    rec = own_recipe or spec.recipe.resolve()
    fmt, rules, params, seed, limit = spec.prompt.format, spec.rules, spec.decoding, spec.seed, spec.source.limit
    paper_layout, backend, model = spec.prompt.paper_layout, spec.backend.backend, spec.backend.model
    check_rules(rules)
    if paper_layout is not None:  # a bad --paper-layout fails here, before any work
        templates.resolve_layout("llama", None, paper_layout)
    diffs = spec.paper_differences()
    if spec.paper and diffs:
        raise ValueError(f"--paper distills with the paper's settings, and these are not: {'; '.join(diffs)}. "
                         "Drop those options, or drop --paper")
    source = spec.source.source or rec.source
    if not source:
        raise ValueError(f"recipe {rec.name} has no default source: pass --source (a Hub id or a local file)")
    # The recipe's config and split are for its own Hub source; another source starts from "train".
    own = source == rec.source
    config, split = spec.source.config, spec.source.split
    source_spec = SourceSpec(source, config if config is not None else (rec.config if own else None),
                             split if split is not None else (rec.split if own else None), spec.source.revision)
    # A recipe with several column layouts picks the one the source has (recorded in the manifest).
    several = len(rec.layouts) > 1
    ds, source_desc = open_source(source_spec, required=[] if several else [rec.prompt_column, rec.response_column],
                                  limit=None if rec.row_filter else limit)
    rec = rec.for_columns(ds.column_names)
    check_text_columns(ds, rec.columns, f"source {source}")
    if rec.row_filter:
        ds, source_desc, rec = _filter_rows(ds, source_desc, rec, limit)
    source_inputs = {k: v for k, v in source_desc.items() if k != "format"}
    if engine is None:
        _refuse_other_run(Path(spec.out), {
            "source": source_inputs, "recipe": rec.describe(), "generation": params.to_dict(), "seed": seed,
            "rules": rules, "model": _model_hint(backend, model, spec.backend.model_id),
        })

    run_dir = Path(spec.out)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "manifest.json").is_file():
        raise ValueError(f"--out {run_dir} is not empty and is not a run directory: choose another folder")

    owns_engine = engine is None
    if engine is None:
        engine = spec.backend.open()
    try:
        check_params = getattr(engine, "check_params", None)
        if check_params is not None:  # parameters this model or endpoint refuses for every row
            check_params(params)
        info = engine.info.to_dict()
        inputs = {
            "source": source_inputs,
            "recipe": rec.describe(),
            "template": templates.describe(rec, engine.tokenizer, fmt, layout=paper_layout),
            # Where the model runs (device, endpoints) is recorded, not fingerprinted:
            # adding an endpoint or moving to another GPU continues the same run.
            "model": {k: info[k] for k in ("backend", "model_id", "revision")},
            "generation": params.to_dict(),
            "seed": seed,
            "rules": rules,
        }
        # A paper layout forced onto a model of another family renders, but is not the paper's prompt.
        forced = templates.layout_difference(inputs["template"]) if fmt == "paper" else None
        if forced:  # recorded, not refused: --paper-layout was asked for by name
            diffs = [*diffs, forced]
        paper_entry = paper.describe(diffs, inputs["template"]["layout"])

        def write_source(run: Path) -> None:
            if not (run / "source.parquet").is_file():
                write_source_parquet(ds, run / "source.parquet")

        max_chars = spec.backend.max_prompt_chars

        def requests(wanted) -> Iterator[Request | Refused]:
            return _pending_requests(run_dir, rec, engine.tokenizer, fmt, seed, wanted, paper_layout, max_chars)

        gen = generate_run(
            run_dir, inputs=inputs, rows=source_desc["rows"], requests=requests, engine=engine, params=params,
            manifest_extra={"spec": spec.to_dict(), "format": fmt, "rules": rules, "paper": paper_entry},
            prepare=write_source, retry_failed=retry_failed, flush_rows=flush_rows, flush_seconds=flush_seconds,
            progress=progress, desc="distill", max_prompt_chars=max_chars,
        )
        gap = _score_gap(spec, run_dir, engine, fmt, paper_layout, progress)
    finally:
        if owns_engine:
            engine.close()

    from .check import check_run

    checked = check_run(run_dir)
    manifest = read_manifest(run_dir)
    return RunSummary(
        run_dir=run_dir,
        fingerprint=gen.fingerprint,
        resumed=gen.resumed,
        generated_now=gen.generated_now,
        counts=manifest.get("counts", {}),
        by_reason=manifest.get("check", {}).get("by_reason", {}),
        distilled=run_dir / "distilled.parquet" if len(checked) else None,
        template_leaks=manifest.get("check", {}).get("template_leaks", 0),
        gap=gap,
    )


def _score_gap(spec: DistillSpec, run_dir: Path, engine, fmt: str, layout: str | None, progress: bool) -> dict:
    """The gap pass after generation (sdft_data.gap), with the engine's model already loaded; a served model
    has no token log-probabilities here, so its run says how to score it afterwards."""
    if not spec.gap:
        return {"status": "off"}
    if not hasattr(engine, "score"):
        return {"status": "not computed",
                "why": f"the {engine.info.backend} backend returns no token log-probabilities here: run "
                       f"`sdft-data gap {run_dir} --model M` with the seed model loaded locally"}
    from .gap import score_run

    return score_run(run_dir, engine, fmt=fmt, layout=layout, progress=progress,
                     max_chars=spec.backend.max_prompt_chars)


@dataclass
class GenerationSummary:
    """What `generate_run` did: which run, whether it resumed, how many rows it generated now."""

    run_dir: Path
    fingerprint: str
    resumed: bool
    generated_now: int
    counts: dict = field(default_factory=dict)  # rows by generation status, from the shards


def generate_run(
    run_dir: str | Path,
    *,
    inputs: dict,
    rows: int,
    requests,
    engine,
    params: GenerationParams,
    manifest_extra: dict | None = None,
    prepare=None,
    retry_failed: bool = False,
    flush_rows: int = 1024,
    flush_seconds: float = 10.0,
    progress: bool = True,
    desc: str = "generate",
    max_prompt_chars: int | None = MAX_PROMPT_CHARS,
) -> GenerationSummary:
    """Generate already-rendered requests into the run directory `run_dir`, resumably.

    The engine that distill and eval share. `inputs` is everything that
    identifies the run (JSON-able; hashed into the fingerprint; it should name
    the model as `engine.info` reports it and the generation parameters).
    `rows` is how many rows the run has in all. `requests` gives the rows as
    `Request(row_id, prompt, seed)`: an iterable (rows already done are skipped
    here), or a callable `requests(wanted)` that yields only rows for which
    `wanted(row_id)` is true (so a big run renders only what is left). Each
    generated row is recorded with its request's seed. A `Refused` in place of
    a request is a row failed before it was rendered: recorded with its error,
    never sent. A prompt over `max_prompt_chars` characters fails its row
    the same way, before any tokenizer sees it (None: no bound).

    SIGTERM, like Ctrl-C, stops the run with what finished flushed to its shard
    and the manifest saying "interrupted" (Terminated, a KeyboardInterrupt).

    Same fingerprint in `run_dir`: resume; a different one: ValueError naming
    the inputs that differ, before anything is written. `prepare(run_dir)` runs
    once the run is locked (to write the rows' source, say). `manifest_extra`
    goes into a new run's manifest. The engine stays open (the caller owns it).
    """
    from tqdm.auto import tqdm

    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} exists and is not a directory")
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (run_dir / "manifest.json").is_file():
        raise ValueError(f"--out {run_dir} is not empty and is not a run directory: choose another folder")
    fp = fingerprint(inputs)
    lock = None
    try:
        resumed = (run_dir / "manifest.json").is_file()
        if resumed:
            manifest = read_manifest(run_dir)
            if manifest.get("fingerprint") != fp:
                differs = diff_keys(manifest.get("fingerprint_inputs", {}), inputs)
                raise ValueError(
                    f"{run_dir} holds a different run (fingerprint {str(manifest.get('fingerprint', '?'))[:12]}, this "
                    f"one {fp[:12]}; differs in: {', '.join(differs) or 'unknown'}): use another --out"
                )
        elif retry_failed:
            raise ValueError(f"--retry-failed needs an existing run in {run_dir}")
        # A damaged shard is refused before the manifest records a new session.
        check_shards(sorted((run_dir / "generations").glob("*.parquet")))
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = open(run_dir / ".lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another process is writing {run_dir}; wait for it or use another --out") from None

        info = engine.info.to_dict()
        if not resumed:
            manifest = {
                "sdft_version": __version__,
                "fingerprint": fp,
                "fingerprint_inputs": inputs,
                "model_info": info,
                **(manifest_extra or {}),
                "library_versions": _library_versions(),
                "created_at": _now(),
                "sessions": [],
            }
        if prepare is not None:
            prepare(run_dir)
        manifest["status"] = "generating"
        manifest["model_info"] = info
        # Recorded before any work, so a session killed outright still leaves
        # its trace (finished_at stays null).
        session = {"started_at": _now(), "finished_at": None, "retry_failed": retry_failed}
        manifest["sessions"].append(session)
        write_manifest(run_dir, manifest)

        done = generations(run_dir).select("row_id", "status").collect()
        failed = set(done.filter(pl.col("status") == "failed")["row_id"].to_list())
        if retry_failed:
            total = len(failed)
            wanted = failed.__contains__
        else:
            skip = set(done["row_id"].to_list())
            total = rows - len(skip)
            wanted = lambda row_id: row_id not in skip  # noqa: E731

        seeds: dict[int, int] = {}
        # Rows failed before they were sent. Filled where the engine pulls requests (a pump thread
        # for the HTTP backends), emptied here: deque appends and pops are atomic.
        refused: deque[tuple[Result, int]] = deque()

        def failed(row_id: int, error: str) -> Result:
            return Result(row_id, None, status="failed", attempts=0, error=error)

        def pending() -> Iterator[Request]:
            source = requests(wanted) if callable(requests) else (r for r in requests if wanted(r.row_id))
            for request in source:
                if isinstance(request, Refused):
                    refused.append((failed(request.row_id, request.error), request.seed))
                elif max_prompt_chars is not None and len(request.prompt) > max_prompt_chars:
                    refused.append((failed(request.row_id, _too_long(len(request.prompt), max_prompt_chars)),
                                    request.seed))
                else:
                    seeds[request.row_id] = request.seed
                    yield request

        writer = ShardWriter(run_dir / "generations", flush_rows=flush_rows, flush_seconds=flush_seconds)
        t0 = time.monotonic()
        n_done = n_failed = n_tokens = 0
        bar = tqdm(total=total, unit="row", desc=desc, disable=not progress or total == 0, dynamic_ncols=True)
        # Tokens as the engine generates them, for an engine that reports them (the local
        # backend): a batch's rows can all take minutes, and the row count alone looks stuck.
        live = {"tokens": 0, "shown": t0}

        def show(refresh: bool) -> None:
            tokens = max(live["tokens"], n_tokens)
            bar.set_postfix(failed=n_failed, tokens=tokens, tok_s=f"{tokens / max(time.monotonic() - t0, 1e-9):.0f}",
                            retries=getattr(engine, "retries", 0), refresh=refresh)

        def on_tokens(n: int) -> None:
            live["tokens"] += n
            if time.monotonic() - live["shown"] >= PROGRESS_SECONDS:
                live["shown"] = time.monotonic()
                show(refresh=True)

        reports = hasattr(engine, "on_tokens")
        if reports:
            engine.on_tokens = on_tokens
        status = "interrupted"

        def record(result: Result, row_seed_: int) -> None:
            nonlocal n_done, n_failed, n_tokens
            writer.add(result, row_seed_)
            n_done += 1
            n_failed += result.status != "ok"
            n_tokens += result.generated_tokens or 0
            bar.update(1)
            show(refresh=False)

        try:
            with sigterm_as_interrupt():
                for result in engine.generate(pending(), params):
                    while refused:
                        record(*refused.popleft())
                    record(result, seeds.pop(result.row_id))
                while refused:
                    record(*refused.popleft())
            status = "generated"
        finally:
            while refused:  # refused rows are finished rows too
                record(*refused.popleft())
            if reports:
                engine.on_tokens = None
            bar.close()
            writer.flush()
            session.update(finished_at=_now(), rows=n_done, failed=n_failed, generated_tokens=n_tokens,
                           seconds=round(time.monotonic() - t0, 3), retries=getattr(engine, "retries", 0))
            manifest["status"] = status
            _update_totals(run_dir, manifest, rows)
            write_manifest(run_dir, manifest)
    finally:
        if lock is not None:
            lock.close()  # releases the flock
    return GenerationSummary(run_dir, fp, resumed, n_done, manifest.get("counts", {}))


def _update_totals(run_dir: Path, manifest: dict, rows: int) -> None:
    """Row counts by status and token totals, recomputed from the shards (the truth)."""
    # Only the counted columns: a million-row run's texts need not be read for this.
    gen = generations(run_dir).select("status", "prompt_tokens", "generated_tokens").collect()
    by_status = dict(gen.group_by("status").len().iter_rows()) if len(gen) else {}
    manifest["counts"] = {
        "rows": rows,
        "ok": by_status.get("ok", 0),
        "failed": by_status.get("failed", 0),
        "pending": rows - len(gen),
    }
    manifest["tokens"] = {
        "prompt": int(gen["prompt_tokens"].sum() or 0),
        "generated": int(gen["generated_tokens"].sum() or 0),
    }
    manifest["timings"] = {"generation_seconds": round(sum(s.get("seconds", 0) for s in manifest["sessions"]), 3)}
