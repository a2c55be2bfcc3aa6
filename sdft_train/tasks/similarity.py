"""Similarity: how close the tuned model's answers stay to the seed model's (cosine of sentence embeddings).

The authors (eval/eval_similarity.py) embed each answer with all-MiniLM-L6-v2 and average the
cosine similarity of the tuned model's answer and the seed model's to the same AdvBench
instruction (the raw prompts). Here the answers are AdvBench's own generation run (shared with
the `advbench` task), and the seed model's come from its results folder (`--seed-results DIR`,
an `sdft-train eval` output of the seed model on the same data and decoding).

The embedding model must be a sentence-transformers model: a chat model given
as --embedding-model is refused (sentence-transformers would quietly wrap it in
mean pooling and give cosines that mean nothing). Which one scored is recorded
(`embedding_model` in results.json: name and revision), so `compare` refuses
to put side by side similarities from different ones. When it cannot load
(offline, say), the task is not scored and says why; the other tasks are kept.
"""

from __future__ import annotations

import json
from pathlib import Path

from sdft_data.errors import first_line

from . import Task, TaskUnavailable, advbench

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# What a sentence-transformers folder has (besides the transformer's own files).
_ST_FILES = ("modules.json", "config_sentence_transformers.json")


def check_embedding_model(name: str | None) -> None:
    """ValueError (one line) when `name` is a local model that is not a sentence-transformers model.

    Checked before anything is generated. A Hub id is checked once loaded (see `encoder`).
    """
    if not name:
        return
    path = Path(name).expanduser()
    if path.is_file():
        raise ValueError(f"--embedding-model {name} is a file; give a sentence-transformers model (a Hub id or folder)")
    if not path.is_dir():
        return
    if any((path / f).is_file() for f in _ST_FILES):
        return
    causal = _causal_architecture(path)
    if causal:
        raise ValueError(f"--embedding-model {name} is a causal language model ({causal}), not a sentence-transformers "
                         "model: give one such as sentence-transformers/all-MiniLM-L6-v2 (the authors')")
    raise ValueError(f"--embedding-model {name} is not a sentence-transformers folder (no modules.json)")


def _causal_architecture(folder: Path) -> str | None:
    try:
        architectures = json.loads((folder / "config.json").read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return None
    return next((a for a in architectures if a.endswith(("ForCausalLM", "LMHeadModel", "ForConditionalGeneration"))),
                None)


def embedding_model_record(name: str) -> dict:
    """The embedding model's name and revision (a local folder's content hash, a cached Hub snapshot's commit)."""
    path = Path(name).expanduser()
    if path.is_dir():
        from sdft_data.models import folder_revision

        return {"name": path.name, "revision": folder_revision(path)}
    revision = None
    try:
        from huggingface_hub import snapshot_download

        revision = Path(snapshot_download(name, local_files_only=True)).name  # the snapshot folder is the commit
    except Exception:  # not in the cache as a snapshot: the name alone
        pass
    return {"name": name, "revision": revision}


def encoder(name: str):
    """The SentenceTransformer for `name`; TaskUnavailable (one line) when it cannot load or is not one."""
    from sentence_transformers import SentenceTransformer

    try:
        model = SentenceTransformer(name, device="cpu")
    except (OSError, ValueError) as e:  # offline, or not a model: transformers' message runs over many lines
        raise TaskUnavailable(f"cannot load the embedding model {name!r} ({first_line(e)[:200]}); pass "
                              "--embedding-model with a local sentence-transformers folder, or leave out the "
                              "similarity task") from None
    first = model[0] if len(model) else None
    architectures = getattr(getattr(getattr(first, "auto_model", None), "config", None), "architectures", None) or []
    causal = next((a for a in architectures if a.endswith(("ForCausalLM", "LMHeadModel"))), None)
    if causal:
        raise TaskUnavailable(f"--embedding-model {name} is a causal language model ({causal}), not a "
                              "sentence-transformers model: refused")
    return model


def seed_answers(ctx, rows) -> list[str | None]:
    """The seed model's answers to the same rows (sample 0), from its results folder."""
    # The seed's answers to these prompts: its similarity predictions, or its advbench ones (the same run).
    candidates = [ctx.seed_results / "predictions" / f"{name}.jsonl" for name in ("similarity", "advbench")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ValueError(f"similarity: neither {candidates[0]} nor {candidates[1].name} exists; evaluate the seed "
                         "model with --tasks advbench or similarity into that folder first")
    by_id = {}
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            by_id[record["id"]] = record
    missing = [r["id"] for r in rows if r["id"] not in by_id]
    if missing:
        raise ValueError(f"similarity: the seed results in {ctx.seed_results} lack {len(missing)} of these rows "
                         f"(first: {missing[0]}); evaluate both on the same data and --limit")
    other = [r["id"] for r in rows if by_id[r["id"]]["input"] != r["input"]]
    if other:
        raise ValueError(f"similarity: the seed results in {ctx.seed_results} answer other instructions "
                         f"(row {other[0]} differs): evaluate both on the same data")
    return [by_id[r["id"]]["predictions"][0] for r in rows]


def score(rows, predictions, ctx):
    if ctx.seed_results is None:
        ctx.notes.append("similarity: answers kept for comparison; no --seed-results DIR given, so no score "
                         "(this is the seed model, or pass the seed model's results folder)")
        return [{"score": None} for _ in rows]
    seed = seed_answers(ctx, rows)
    name = ctx.embedding_model or DEFAULT_EMBEDDING_MODEL
    model = encoder(name)
    ctx.records["embedding_model"] = embedding_model_record(name)
    ours = model.encode([p or "" for p in predictions], convert_to_tensor=True, normalize_embeddings=True)
    theirs = model.encode([s or "" for s in seed], convert_to_tensor=True, normalize_embeddings=True)
    cosine = (ours * theirs).sum(dim=-1).tolist()
    return [{"score": None if p is None or s is None else float(c)} for p, s, c in zip(predictions, seed, cosine)]


# v2: advbench's chat prompt changed (no "### Instruction:" scaffolding); the embedding model is recorded.
TASK = Task(name="similarity", version=2, description="Embedding similarity of answers to the seed model's",
            metric="similarity", load=advbench.load, prompt=advbench.prompt, score=score, hub=advbench.TASK.hub,
            data_file=advbench.TASK.data_file, percent=False, generation_key="advbench")
