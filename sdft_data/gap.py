"""The gap SDFT is about, per row: how likely the seed model finds the original response and the rewrite.

SDFT's premise is that the seed model's own rewrites lie closer to its distribution than the task's
references, so that training on them moves the model less. This module measures the first half on a
dataset: under the seed model and the training prompt (the recipe's train template, in the format the arms
train in: sdft_train.data.train_prompt), each row's mean log-likelihood per token of the original response
and of the rewrite, and their token counts. A response is scored as training scores it: stripped, followed
by the end-of-turn token, prompt and response tokenized apart and joined (sdft_train.data.build_examples),
the mean taken over the response tokens and that end-of-turn token.

    token_scores(model, sequences)   the computation: each sequence's token log-probabilities from a start
                                     position on; with `other`, the other model's too and the KL divergence
                                     KL(model || other) over the vocabulary at every position (drift)
    score_run(run_dir, engine)       a run's rows scored into RUN_DIR/gap/ (resumable shards), the gap_*
                                     columns joined into distilled.parquet, a `gap` entry in the manifest
    gap_run(run_dir, spec)           the same with the model a GapSpec names (`sdft-data gap RUN --model M`)
    join_gap(run_dir, frame)         the gap_* columns for a distilled frame (sdft_data.check calls it, so a
                                     re-check keeps them)
    summarize(frame, entry)          the figures the report and the dataset card show

Columns (docs/run-directory.md): gap_original_logprob and gap_rewrite_logprob (mean log-probability per
token, in nats; null when there is no rewrite or the row does not fit the model's context), and
gap_original_tokens and gap_rewrite_tokens (the tokens averaged over, end-of-turn token included).

Memory: one forward pass through the decoder per batch (rows padded on the right, so every token keeps the
position it has alone, and rows of similar length batched together), then the LM head and a float32
log-softmax over chunks of positions: no [batch, sequence, vocabulary] float32 tensor is made, whatever
the length of the rows or the size of the vocabulary.

Resuming: RUN_DIR/gap/ holds parquet shards (row_id, side, sha256 of the text scored, tokens, logprob),
each written whole (tmp + rename); a killed pass continues with the texts it has no score for. A score
counts only for the text it was computed on (its sha256), and only under the model recorded in the
manifest's `gap` entry: scoring under another model is refused until RUN_DIR/gap is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

import polars as pl

from .rundir import now, read_manifest, write_distilled, write_manifest
from .run import MAX_PROMPT_CHARS

GAP_DIR = "gap"
GAP_COLUMNS = ("gap_original_logprob", "gap_original_tokens", "gap_rewrite_logprob", "gap_rewrite_tokens")
SHARD_SCHEMA = {"row_id": pl.Int64, "side": pl.String, "sha256": pl.String, "tokens": pl.Int64,
                "logprob": pl.Float64}
SIDES = ("original", "rewrite")
# How the numbers are made, recorded with them (manifest["gap"]["method"]).
METHOD = ("mean log-probability per token (nats) of the response and its end-of-turn token, after the "
          "recipe's train prompt, prompt and response tokenized apart as in training; float32 log-softmax")
# Float32 logits per chunk of positions: 2^24 elements = 64 MiB (e.g. 128 positions of a 128k vocabulary).
CHUNK_ELEMENTS = 1 << 24
# Points kept for the report's plot (a seeded sample when there are more rows).
PLOT_POINTS = 2000


# --------------------------------------------------------------------------------------------------
# The computation


def _parts(model):
    """(decoder, logits function) of a causal LM: hidden states, then the LM head on chosen positions."""
    import torch

    decoder = model.get_decoder()
    head = model.get_output_embeddings()
    if head is None or decoder is model:
        raise ValueError(f"{type(model).__name__} has no separate decoder and LM head to score with")
    cap = getattr(model.config, "final_logit_softcapping", None)

    def logits(hidden):
        out = head(hidden).float()
        if cap:  # Gemma-2 style: the model's forward caps its logits
            out = torch.tanh(out / cap) * cap
        return out

    return decoder, logits


def _check_parts(model, decoder, logits, ids: list[int], device) -> None:
    """ValueError unless the decoder + head path gives the model's own logits (a model that scales or
    post-processes them in its forward would be scored wrongly)."""
    import torch

    x = torch.tensor([ids[:32]], device=device)
    with torch.inference_mode():
        full = model(input_ids=x, use_cache=False).logits[0, -1].float()
        ours = logits(decoder(input_ids=x, use_cache=False).last_hidden_state[0, -1])
    tol = 1e-3 if full.dtype == torch.float32 and next(model.parameters()).dtype == torch.float32 else 3e-2
    if not torch.allclose(full, ours, rtol=tol, atol=tol * max(1.0, float(full.abs().max()))):
        raise ValueError(f"{type(model).__name__}'s forward pass changes its logits after the LM head in a way "
                         "this scorer does not reproduce; it cannot score this model")


def token_scores(model, sequences: list[tuple[list[int], int]], *, other=None, batch_size: int = 16,
                 batch_tokens: int | None = None, chunk_elements: int = CHUNK_ELEMENTS, device=None) -> list[dict]:
    """Score token sequences under `model` (and `other`, on the same tokens).

    `sequences` are (token ids, start): the tokens from position `start` on are scored, each given the ones
    before it (1 <= start < len(ids)). Returns, per sequence and in its order, a dict of float32 CPU tensors
    of length len(ids) - start: "logprobs" (log p_model of each token); with `other`, also
    "other_logprobs" (log p_other) and "kl" (KL(p_model || p_other) over the whole vocabulary at each of those
    positions). Rows are batched by length, at most `batch_size` rows and `batch_tokens` padded positions a
    batch (default batch_size x 2048); the LM head runs on `chunk_elements` / vocabulary positions at a time.
    A batch that runs out of memory is split in halves.
    """
    if not sequences:
        return []
    for ids, start in sequences:
        if not 1 <= start < len(ids):
            raise ValueError(f"a scored sequence needs 1 <= start < its length (got start {start} of {len(ids)})")
    device = device or next(model.parameters()).device
    batch_tokens = batch_tokens or batch_size * 2048
    models = [model] + ([other] if other is not None else [])
    parts = [_parts(m) for m in models]
    if other is not None:
        sizes = [m.get_output_embeddings().weight.shape[0] for m in models]
        if sizes[0] != sizes[1]:
            raise ValueError(f"the two models have different vocabularies ({sizes[0]} and {sizes[1]} tokens)")
    longest = max(sequences, key=lambda s: len(s[0]))[0]
    for m, (decoder, logits) in zip(models, parts):
        _check_parts(m, decoder, logits, longest, device)

    out: list[dict | None] = [None] * len(sequences)
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i][0]))
    i = 0
    while i < len(order):
        width = len(sequences[order[i]][0])  # longest first: it sets the batch's width
        n = max(1, min(batch_size, batch_tokens // max(width, 1)))
        _safe_batch(order[i:i + n], sequences, parts, out, chunk_elements, device)
        i += n
    return out  # type: ignore[return-value]


def _safe_batch(idx, sequences, parts, out, chunk_elements, device) -> None:
    from .backends.local import _free_memory, _is_out_of_memory

    try:
        _batch(idx, sequences, parts, out, chunk_elements, device)
        return
    except (MemoryError, RuntimeError) as e:
        if not _is_out_of_memory(e) or len(idx) == 1:
            raise
        _free_memory()
    half = len(idx) // 2
    _safe_batch(idx[:half], sequences, parts, out, chunk_elements, device)
    _safe_batch(idx[half:], sequences, parts, out, chunk_elements, device)


def _batch(idx, sequences, parts, out, chunk_elements, device) -> None:
    import torch

    seqs = [sequences[i] for i in idx]
    width = max(len(ids) for ids, _ in seqs)
    ids = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    rows, positions = [], []
    for r, (tokens, start) in enumerate(seqs):
        ids[r, :len(tokens)] = torch.tensor(tokens)
        mask[r, :len(tokens)] = 1
        # Position p's output predicts token p + 1.
        rows.append(torch.full((len(tokens) - start,), r))
        positions.append(torch.arange(start - 1, len(tokens) - 1))
    rows_t, pos_t = torch.cat(rows), torch.cat(positions)
    targets = ids[rows_t, pos_t + 1].to(device)
    ids, mask = ids.to(device), mask.to(device)
    rows_t, pos_t = rows_t.to(device), pos_t.to(device)
    with torch.inference_mode():
        # Right padding: every row's tokens keep the positions they have alone; pads come after and are masked.
        hidden = [decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state[rows_t, pos_t]
                  for decoder, _ in parts]
        vocab = parts[0][1](hidden[0][:1]).shape[-1]
        step = max(1, chunk_elements // vocab)
        lp_parts, lq_parts, kl_parts = [], [], []
        for c in range(0, len(targets), step):
            t = targets[c:c + step, None]
            lp = torch.log_softmax(parts[0][1](hidden[0][c:c + step]), dim=-1)
            lp_parts.append(lp.gather(1, t).squeeze(1))
            if len(parts) > 1:
                lq = torch.log_softmax(parts[1][1](hidden[1][c:c + step]), dim=-1)
                lq_parts.append(lq.gather(1, t).squeeze(1))
                # KL(p || q) = sum_v p(v) (log p(v) - log q(v)); terms with p(v) = 0 are 0 (xlogy convention).
                kl_parts.append(torch.where(lp.isinf(), 0.0, lp.exp() * (lp - lq)).sum(-1))
        lp_all = torch.cat(lp_parts).cpu()
        lq_all = torch.cat(lq_parts).cpu() if lq_parts else None
        kl_all = torch.cat(kl_parts).cpu() if kl_parts else None
    counts = [len(tokens) - start for tokens, start in seqs]
    offset = 0
    for i, n in zip(idx, counts):
        entry = {"logprobs": lp_all[offset:offset + n]}
        if lq_all is not None:
            entry["other_logprobs"] = lq_all[offset:offset + n]
            entry["kl"] = kl_all[offset:offset + n]
        out[i] = entry
        offset += n


# --------------------------------------------------------------------------------------------------
# A run's rows


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _texts(run: Path, recipe) -> pl.DataFrame:
    """row_id, instruction, original and rewrite as training sees them (stripped; rewrite null when none)."""
    from .check import build_distilled

    frame, _ = build_distilled(run, recipe=recipe)
    return frame.select(
        "row_id",
        recipe.instruction_expr(frame.columns),
        pl.col("original_response").cast(pl.String).fill_null("").str.strip_chars().alias("original"),
        pl.col("rewrite").cast(pl.String).str.strip_chars().alias("rewrite"),
    )


def _shards(run: Path) -> list[Path]:
    return sorted((run / GAP_DIR).glob("*.parquet"))


def read_scores(run_dir: str | os.PathLike) -> pl.DataFrame:
    """Every score in RUN_DIR/gap/ (the last one per row, side and text)."""
    from .rundir import check_shards

    shards = _shards(Path(run_dir))
    if not shards:
        return pl.DataFrame(schema=SHARD_SCHEMA)
    check_shards(shards)
    return (pl.concat([pl.read_parquet(p) for p in shards], how="vertical_relaxed")
            .unique(["row_id", "side", "sha256"], keep="last", maintain_order=True))


def _flush(folder: Path, buffer: list[dict]) -> None:
    if not buffer:
        return
    folder.mkdir(parents=True, exist_ok=True)
    seq = max((int(p.stem) for p in folder.glob("*.parquet") if p.stem.isdigit()), default=0) + 1
    tmp, final = folder / f".{seq:06d}.parquet.tmp", folder / f"{seq:06d}.parquet"
    try:
        pl.DataFrame(buffer, schema=SHARD_SCHEMA).write_parquet(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, final)
    buffer.clear()


def _prompt_format(manifest: dict, fmt: str | None, layout: str | None) -> tuple[str, str | None]:
    """The format and paper layout the arms train in: given, else the run's (as sdft-train train picks)."""
    template = (manifest.get("fingerprint_inputs") or {}).get("template") or {}
    fmt = fmt or manifest.get("format") or template.get("format") or "chat"
    if layout is None and fmt == "paper" and template.get("layout") in ("llama2", "llama3"):
        layout = template["layout"]
    return fmt, layout


def score_run(run_dir: str | os.PathLike, engine, *, fmt: str | None = None, layout: str | None = None,
              record: dict | None = None, progress: bool = True, window: int = 256, flush_rows: int = 1024,
              flush_seconds: float = 10.0, max_chars: int = MAX_PROMPT_CHARS) -> dict:
    """Score every row of a run under `engine`'s model (a LocalBackend, or anything with `tokenizer`, `info`
    and `score(sequences)`); resumable (see the module docstring). Joins the gap_* columns into
    distilled.parquet when the run has one, records a `gap` entry in the manifest, and returns it.

    `fmt`/`layout`: the prompt format (default: the run's, as training picks it). `record`: settings to
    keep in the entry (the GapSpec, when the CLI ran it).
    """
    run = Path(run_dir)
    read_manifest(run)  # a run directory, or one line saying it is not
    with _locked(run):
        return _score_run(run, engine, fmt, layout, record, progress, window, flush_rows, flush_seconds, max_chars)


@contextlib.contextmanager
def _locked(run: Path):
    """The run's lock (the one the run engine takes), so that two writers never interleave."""
    import fcntl

    with open(run / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"another process is writing {run}; wait for it") from None
        yield


def _score_run(run: Path, engine, fmt, layout, record, progress, window, flush_rows, flush_seconds,
               max_chars) -> dict:
    from tqdm.auto import tqdm

    from sdft_train.data import target_eos_id, train_prompt

    from . import templates
    from .check import recipe_from_manifest

    manifest = read_manifest(run)
    recipe = recipe_from_manifest(manifest)
    fmt, layout = _prompt_format(manifest, fmt, layout)
    if fmt not in templates.FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(templates.FORMATS)}")
    tokenizer = engine.tokenizer
    if fmt == "chat" and getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("the model's tokenizer has no chat template: score with --format paper")
    eos = target_eos_id(tokenizer, recipe, fmt, layout)
    info = engine.info.to_dict()
    under = {
        "model": {k: info.get(k) for k in ("model_id", "revision")},
        "format": fmt,
        "layout": templates.resolve_layout(recipe.paper_layout, tokenizer, layout) if fmt == "paper" else None,
        "recipe": {"name": recipe.name, "version": recipe.version},
        "eos_token": tokenizer.convert_ids_to_tokens(eos),
    }
    previous = manifest.get("gap") or {}
    if _shards(run) and previous.get("scored_under") not in (None, under):
        from .rundir import diff_keys

        differs = diff_keys(previous["scored_under"], under)
        raise ValueError(f"{run}/{GAP_DIR} holds scores made otherwise (differs in: {', '.join(differs)}): remove "
                         f"{run}/{GAP_DIR} to score under this model, or score with the same settings")

    texts = _texts(run, recipe)
    done = read_scores(run).select("row_id", "side", "sha256")
    done_keys = set(done.iter_rows())
    pending = []  # (row_id, instruction, side, text, sha)
    for row_id, instruction, original, rewrite in texts.iter_rows():
        for side, text in (("original", original), ("rewrite", rewrite)):
            if text is None:
                continue
            digest = sha256(text)
            if (row_id, side, digest) not in done_keys:
                pending.append((row_id, instruction, side, text, digest))

    entry = {**previous, "scored_under": under, "method": METHOD, "status": "scoring",
             "started_at": previous.get("started_at") or now(), "device": (info.get("extra") or {}).get("device")}
    if record is not None:
        entry["spec"] = record
    manifest["gap"] = entry
    write_manifest(run, manifest)

    context = getattr(engine, "context", None)
    buffer: list[dict] = []
    last = time.monotonic()
    bar = tqdm(total=len(pending), unit="text", desc="gap", disable=not progress or not pending, dynamic_ncols=True)
    t0 = time.monotonic()
    try:
        for w in range(0, len(pending), window):
            part = pending[w:w + window]
            prompts = {}
            sequences, slots = [], []
            for j, (row_id, instruction, side, text, digest) in enumerate(part):
                if len(instruction or "") + len(text) > max_chars:
                    # Past any model's context, and tokenizing it would cost ~300 bytes a character (distill's
                    # bound): counted as too long with 0 tokens (not tokenized), not scored.
                    buffer.append({"row_id": row_id, "side": side, "sha256": digest, "tokens": 0, "logprob": None})
                    continue
                if row_id not in prompts:
                    prompt = train_prompt(recipe, instruction, tokenizer, fmt, layout=layout)
                    prompts[row_id] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
                prompt_ids = prompts[row_id]
                answer = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
                ids = prompt_ids + answer
                if not prompt_ids or (context and len(ids) > context):
                    # Too long for the model (or no prompt token to condition on): counted, not scored.
                    buffer.append({"row_id": row_id, "side": side, "sha256": digest, "tokens": len(answer),
                                   "logprob": None})
                    continue
                sequences.append((ids, len(prompt_ids)))
                slots.append(j)
            scores = engine.score(sequences)
            for j, s in zip(slots, scores):
                row_id, _, side, _, digest = part[j]
                lp = s["logprobs"].double()
                buffer.append({"row_id": row_id, "side": side, "sha256": digest, "tokens": len(lp),
                               "logprob": float(lp.mean())})
            bar.update(len(part))
            if len(buffer) >= flush_rows or time.monotonic() - last >= flush_seconds:
                _flush(run / GAP_DIR, buffer)
                last = time.monotonic()
        _flush(run / GAP_DIR, buffer)
    finally:
        bar.close()
        _flush(run / GAP_DIR, buffer)

    manifest = read_manifest(run)  # re-read: keep what others wrote meanwhile
    entry["status"] = "scored"
    entry["finished_at"] = now()
    entry["seconds"] = round((previous.get("seconds") or 0) + time.monotonic() - t0, 3)
    entry["scored_now"] = len(pending)
    if (run / "distilled.parquet").is_file():
        distilled = pl.read_parquet(run / "distilled.parquet")
        distilled = join_gap(run, distilled.drop([c for c in GAP_COLUMNS if c in distilled.columns]))
        write_distilled(run, distilled)
    else:
        from .check import build_distilled

        distilled, _ = build_distilled(run, recipe=recipe)
    entry["summary"] = summarize(distilled, entry, points=0)
    manifest["gap"] = entry
    write_manifest(run, manifest)
    return entry


def join_gap(run_dir: str | os.PathLike, frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` (a distilled table: row_id, original_response, rewrite, ...) with the gap_* columns from
    RUN_DIR/gap/ where it has scores for those very texts; `frame` unchanged when the run has none."""
    run = Path(run_dir)
    if not _shards(run):
        return frame
    clash = [c for c in GAP_COLUMNS if c in frame.columns]
    if clash:
        raise ValueError(f"column(s) {', '.join(clash)} clash with the gap columns this run's gap/ folder adds")
    scores = read_scores(run)

    def digest(expr: pl.Expr) -> pl.Expr:
        return expr.map_elements(sha256, return_dtype=pl.String, skip_nulls=True)

    keys = frame.select(
        "row_id",
        digest(pl.col("original_response").cast(pl.String).fill_null("").str.strip_chars()).alias("_o_sha"),
        digest(pl.col("rewrite").cast(pl.String).str.strip_chars()).alias("_r_sha"),
    )
    for side, key in (("original", "_o_sha"), ("rewrite", "_r_sha")):
        part = scores.filter(pl.col("side") == side).select(
            "row_id", pl.col("sha256").alias(key), pl.col("logprob").alias(f"gap_{side}_logprob"),
            pl.col("tokens").alias(f"gap_{side}_tokens"))
        keys = keys.join(part, on=["row_id", key], how="left")
    return frame.join(keys.select("row_id", *GAP_COLUMNS), on="row_id", how="left", maintain_order="left")


# --------------------------------------------------------------------------------------------------
# The figures


def summarize(frame: pl.DataFrame, entry: dict | None = None, *, points: int = PLOT_POINTS, seed: int = 0) -> dict | None:
    """What the report and the card show about the gap, from a distilled frame with the gap_* columns
    (None when it has none). Means are over rows (each row's mean per token), in nats per token.

        model, method                  what scored it (the manifest's entry)
        rows                           rows of the frame
        original {rows, mean, median}  log-likelihood per token of the originals that were scored
        rewrite  {rows, mean, median}  of the rewrites that were scored
        paired   {rows, mean, median, rewrite_more_likely}: rewrite minus original, rows with both
        accepted, fallback             the same pairs, split by the verdict
        sdft {rows, mean_gain, accepted}: the SDFT response (the rewrite where accepted, else the original)
                                       minus the original, over every row with a scored original: what the
                                       dataset's responses gain over the originals
        too_long                       texts not scored (past the model's context; 0 tokens: over
                                       a million characters with the prompt, not tokenized)
        points                         up to `points` rows (seeded sample): original, rewrite, accepted
    """
    if "gap_original_logprob" not in frame.columns:
        return None
    if "row_id" not in frame.columns:
        frame = frame.with_row_index("row_id")
    o, r = pl.col("gap_original_logprob"), pl.col("gap_rewrite_logprob")
    accepted = pl.col("accepted").fill_null(False)

    def stats(expr, where=None) -> dict:
        sel = frame.filter(where) if where is not None else frame
        s = sel.select(expr.alias("v")).drop_nulls()["v"]
        if s.len() == 0:
            return {"rows": 0, "mean": None, "median": None}
        return {"rows": s.len(), "mean": round(float(s.mean()), 4), "median": round(float(s.median()), 4)}

    def paired(where=None) -> dict:
        both = o.is_not_null() & r.is_not_null()
        out = stats(r - o, both if where is None else both & where)
        sel = frame.filter(both if where is None else both & where)
        out["rewrite_more_likely"] = int(sel.filter(r > o).height) if out["rows"] else 0
        return out

    sdft = pl.when(accepted).then(r).otherwise(o)
    scored = frame.filter(o.is_not_null() & (~accepted | r.is_not_null()))
    gain = scored.select((sdft - o).alias("g"))["g"]
    too_long = int(frame.filter(o.is_null() & pl.col("gap_original_tokens").is_not_null()).height
                   + frame.filter(r.is_null() & pl.col("gap_rewrite_tokens").is_not_null()).height)
    entry = entry or {}
    out = {
        "model": ((entry.get("scored_under") or {}).get("model") or {}).get("model_id"),
        "revision": ((entry.get("scored_under") or {}).get("model") or {}).get("revision"),
        "format": (entry.get("scored_under") or {}).get("format"),
        "method": entry.get("method", METHOD),
        "rows": frame.height,
        "original": stats(o),
        "rewrite": stats(r),
        "paired": paired(),
        "accepted": paired(accepted),
        "fallback": paired(~accepted),
        "sdft": {"rows": gain.len(), "mean_gain": round(float(gain.mean()), 4) if gain.len() else None,
                 "accepted": int(scored.filter(accepted).height)},
        "too_long": too_long,
        "points": None,
    }
    if points:
        pts = frame.filter(o.is_not_null() & r.is_not_null()).select(
            "row_id", o.alias("original"), r.alias("rewrite"), accepted.alias("accepted"))
        if pts.height > points:
            pts = pts.sample(points, seed=seed).sort("row_id")
        out["points"] = {"sampled": pts.height < frame.filter(o.is_not_null() & r.is_not_null()).height,
                         "original": [round(x, 4) for x in pts["original"].to_list()],
                         "rewrite": [round(x, 4) for x in pts["rewrite"].to_list()],
                         "accepted": pts["accepted"].to_list()}
    return out


def headline(summary: dict | None) -> str | None:
    """The card's line: how much more likely the SDFT responses are than the originals under the seed model."""
    if not summary or not (summary.get("sdft") or {}).get("rows") or summary["sdft"].get("mean_gain") is None:
        return None
    s, acc = summary["sdft"], summary.get("accepted") or {}
    model = f"`{summary['model']}`" if summary.get("model") else "the seed model"
    if not s["accepted"]:
        paired = summary.get("paired") or {}
        rewrites = (f"; the rewrites were {paired['mean']:+.3f} nats/token against their originals"
                    if paired.get("rows") and paired.get("mean") is not None else "")
        return (f"No rewrite was accepted, so the SDFT responses are the originals ({s['rows']:,} rows scored under "
                f"{model}{rewrites}).")
    gain = s["mean_gain"]
    return (f"Under {model} and the training prompt, the SDFT responses are {abs(gain):.3f} nats/token "
            f"{'more' if gain >= 0 else 'less'} likely than the originals, over {s['rows']:,} rows (mean "
            f"log-likelihood per token; the {acc.get('rows', 0):,} accepted rewrites: {acc.get('mean') or 0:+.3f}, "
            f"the rows that fell back: 0).")


# --------------------------------------------------------------------------------------------------
# `sdft-data gap RUN --model M`


def gap_run(run_dir: str | os.PathLike, spec=None, *, engine=None, progress: bool = True, **settings) -> dict:
    """Score a run (a distilled or imported run directory) under the model a GapSpec names; see score_run.

    `spec` is a sdft_data.spec.GapSpec, or its settings as keywords: gap_run("runs/x", model="models/m").
    """
    from .spec import GapSpec

    if spec is None:
        spec = GapSpec.make(**settings)
    elif settings:
        raise TypeError("give a GapSpec or keyword settings, not both")
    run = Path(run_dir)
    manifest = read_manifest(run)  # a run directory, before a model loads
    if not (run / "source.parquet").is_file() or not any((run / "generations").glob("*.parquet")):
        raise ValueError(f"run {run} has no rows to score yet: distill (or import) it first")
    fmt, layout = _prompt_format(manifest, spec.prompt.format, spec.prompt.paper_layout)
    owns = engine is None
    if engine is None:
        from .backends import make_backend

        engine = make_backend("local", model=spec.model, revision=spec.revision, batch_size=spec.batch_size)
    try:
        return score_run(run, engine, fmt=fmt, layout=layout, record=spec.to_dict(), progress=progress)
    finally:
        if owns:
            engine.close()
