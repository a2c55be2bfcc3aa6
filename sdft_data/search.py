"""Find SDFT datasets: the Hub's dataset repos carrying the `sdft` tag, or the repos of a local publishing folder.

    from sdft_data.search import search
    for found in search("gsm8k"):
        print(found.repo, found.version, found.recipe, found.seed_model, found.rows, found.rewrite_rate)

Every card `sdft-data push` writes carries the tag and, in its metadata, an
`sdft` block (version, recipe, seed model, rows, rewrite rate); the Hub returns
that metadata with the listing (`HfApi.list_datasets(..., expand=["cardData"])`),
so one request a page finds everything, without downloading any card. A
dataset that carries the tag but not the block (made by other tools) is listed
with what its metadata says and "?" for the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .card import SDFT_TAG


@dataclass
class Found:
    """One dataset found: where it is and what its card says of its latest version."""

    repo: str
    version: str | None
    recipe: str | None
    seed_model: str | None
    rows: int | None
    rewrite_rate: float | None
    last_modified: str | None = None
    imported: bool | None = None


def _from_card(repo: str, card: dict | None, last_modified=None) -> Found:
    card = card or {}
    block = card.get("sdft") if isinstance(card.get("sdft"), dict) else {}
    rows = block.get("rows")
    if rows is None:  # a card without our block may still have datasets' own dataset_info
        info = card.get("dataset_info") if isinstance(card.get("dataset_info"), dict) else {}
        rows = sum(s.get("num_examples") or 0 for s in info.get("splits") or [] if isinstance(s, dict)) or None
    return Found(repo=repo, version=block.get("version"), recipe=block.get("recipe"),
                 seed_model=block.get("seed_model"), rows=rows, rewrite_rate=block.get("rewrite_rate"),
                 last_modified=str(last_modified)[:10] if last_modified else None, imported=block.get("imported"))


def search(query: str | None = None, *, local: str | os.PathLike | None = None, endpoint: str | None = None,
           token: str | None = None, limit: int = 100) -> list[Found]:
    """SDFT datasets whose id contains `query` (all when None), most recently changed first.

    From the Hub (`endpoint` defaults to HF_ENDPOINT), or, with `local`, the
    ORG/NAME folders of a local publishing folder (their top-level cards).
    """
    if limit < 1:
        raise ValueError("--limit must be at least 1")
    if local is not None:
        return _search_local(Path(local), query, limit)
    from huggingface_hub import HfApi

    from .publish import hub_errors

    api = HfApi(endpoint=endpoint, token=token)
    with hub_errors("the dataset listing", endpoint):
        listed = api.list_datasets(search=query or None, filter=SDFT_TAG, expand=["cardData", "lastModified"],
                                   sort="lastModified", limit=limit)
        found = []
        for info in listed:
            card = info.card_data.to_dict() if info.card_data is not None else None
            found.append(_from_card(info.id, card, info.last_modified))
    return found


def _search_local(root: Path, query: str | None, limit: int) -> list[Found]:
    from .card import read_metadata

    if not root.is_dir():
        raise ValueError(f"--hub-dir {root} is not a folder")
    found = []
    for readme in sorted(root.glob("*/*/README.md")):
        repo = f"{readme.parent.parent.name}/{readme.parent.name}"
        if query and query.lower() not in repo.lower():
            continue
        card = read_metadata(readme.read_text(encoding="utf-8"))
        if SDFT_TAG not in (card.get("tags") or []):
            continue
        found.append(_from_card(repo, card))
    return found[:limit]


def render(found: list[Found]) -> str:
    """A plain-text table for the terminal."""
    if not found:
        return "no SDFT datasets found"
    head = f"{'dataset':<36} {'version':<8} {'recipe':<14} {'rows':>9} {'rewrite':>8}  seed model"
    lines = [head]
    for f in found:
        rate = "?" if f.rewrite_rate is None else f"{100 * f.rewrite_rate:.1f}%"
        rows = "?" if f.rows is None else f"{f.rows:,}"
        model = (f.seed_model or "?") + (" (imported)" if f.imported else "")
        lines.append(f"{f.repo:<36} {f.version or '?':<8} {f.recipe or '?':<14} {rows:>9} {rate:>8}  {model}")
    return "\n".join(lines)
