"""The dataset card (README.md) of a published SDFT dataset.

The card is rendered from the Jinja template `cards/dataset_card.md` with
huggingface_hub's card classes (`DatasetCardData` for the YAML metadata,
`DatasetCard.from_template` for the text). It says what the dataset is, how
it was made (seed model and revision, backend, the distill template verbatim,
generation parameters, checks), its statistics and plots, how to load a
version and train on it, every version so far, and whom to cite.

Regenerating a card keeps metadata a user added by hand: the keys this module
writes (MANAGED_KEYS) are recomputed from the run, `tags` are merged, and any
other key of the previous card's YAML is kept as it was.

`metadata_errors` is this project's model of the Hub's README metadata check
(the loopback Hub answers `/api/validate-yaml` with it, and `push` runs it
before anything is uploaded, so a bad card never reaches the Hub or a folder).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE_NAME = "dataset_card.md"
BASE_TAGS = ["sdft", "self-distillation", "synthetic"]
# Keys the card recomputes on every push; any other key in the previous card is the user's and is kept.
# Exceptions, so that a hand edit survives: `tags` are merged, a previous `pretty_name` stays, and a
# previous `license` stays where the run knows none (custom sources).
MANAGED_KEYS = ("pretty_name", "license", "language", "task_categories", "size_categories", "source_datasets",
                "tags", "configs", "sdft")
# The tag every card carries: `sdft-data search` lists the Hub's datasets that have it.
SDFT_TAG = "sdft"

SDFT_CITATION = """@inproceedings{yang2024sdft,
  title = {Self-Distillation Bridges Distribution Gap in Language Model Fine-Tuning},
  author = {Yang, Zhaorui and Pang, Tianyu and Feng, Haozhe and Wang, Han and Chen, Wei and Zhu, Minfeng and Liu, Qian},
  booktitle = {Proceedings of the 62nd Annual Meeting of the Association for Computational Linguistics (Volume 1: Long Papers)},
  year = {2024},
  url = {https://arxiv.org/abs/2402.13669}
}"""

SIZE_CATEGORIES = ("n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M", "10M<n<100M", "100M<n<1B",
                   "1B<n<10B", "10B<n<100B", "100B<n<1T", "n>1T", "other")

# License identifiers the Hub accepts (https://huggingface.co/docs/hub/repositories-licenses).
HUB_LICENSES = frozenset("""
apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0 bigcode-openrail-m
afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0 cc-by-2.0 cc-by-2.5
cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0 cc-by-nc-nd-3.0
cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0
cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0
lgpl lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl
openrail++ osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license llama2 llama3 llama3.1
llama3.2 llama3.3 llama4 gemma unknown other
""".split())

# Dataset task categories the Hub accepts.
HUB_TASK_CATEGORIES = frozenset("""
text-classification token-classification table-question-answering question-answering zero-shot-classification
translation summarization feature-extraction text-generation text2text-generation fill-mask sentence-similarity
text-to-speech text-to-audio automatic-speech-recognition audio-to-audio audio-classification audio-text-to-text
voice-activity-detection depth-estimation image-classification object-detection image-segmentation text-to-image
image-to-text image-to-image image-to-video unconditional-image-generation video-classification
reinforcement-learning robotics tabular-classification tabular-regression tabular-to-text table-to-text
multiple-choice text-ranking text-retrieval time-series-forecasting text-to-video image-text-to-text
visual-question-answering document-question-answering zero-shot-image-classification graph-ml mask-generation
zero-shot-object-detection text-to-3d image-to-3d image-feature-extraction video-text-to-text keypoint-detection
visual-document-retrieval any-to-any video-to-video other
""".split())

_LANGUAGE = re.compile(r"^([a-z]{2,3}([-_][A-Za-z0-9]{2,8})*|code|multilingual)$")


def template_path() -> Path:
    """The card template: shipped inside the package (sdft_data/cards/) or, in a checkout, the top-level cards/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "cards" / TEMPLATE_NAME, here.parent / "cards" / TEMPLATE_NAME):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"dataset card template {TEMPLATE_NAME} not found next to the sdft_data package")


def size_category(rows: int) -> str:
    """The Hub's size bucket for a row count ("n<1K", "1K<n<10K", ...)."""
    bounds = [1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000, 10**10, 10**11, 10**12]
    for bound, name in zip(bounds, SIZE_CATEGORIES):
        if rows < bound:
            return name
    return "n>1T"


def split_front_matter(readme: str) -> tuple[str | None, str]:
    """(YAML text or None, body) of a README."""
    m = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", readme, re.S)
    if not m:
        return None, readme
    return m.group(1), readme[m.end():]


def read_metadata(readme: str | None) -> dict:
    """The YAML metadata of a README, {} when it has none or it does not parse (a card we will replace)."""
    if not readme:
        return {}
    import yaml

    text, _ = split_front_matter(readme)
    if text is None:
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def metadata_errors(readme: str, repo_type: str = "dataset") -> list[str]:
    """Why the Hub would reject this README's metadata (empty list: it passes).

    The checks follow the Hub's dataset card spec: a YAML mapping, licenses and
    task categories from the Hub's lists, ISO language codes, a known size
    category, string tags, and `configs` that `datasets` can read. The metadata
    must also load into huggingface_hub's `DatasetCardData`.
    """
    import yaml

    text, _ = split_front_matter(readme)
    if text is None:
        return []  # no metadata: the Hub only warns
    try:
        meta = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return [f"YAML does not parse: {str(e).splitlines()[0]}"]
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["metadata must be a YAML mapping"]
    errors: list[str] = []

    def strings(key: str) -> list:
        value = meta.get(key)
        if value is None:
            return []
        values = value if isinstance(value, list) else [value]
        if not all(isinstance(v, str) for v in values):
            errors.append(f'"{key}" must be a string or a list of strings')
            return []
        return values

    for lic in strings("license"):
        if lic not in HUB_LICENSES:
            errors.append(f'"license" {lic!r} is not a license id the Hub knows (use "other" with license_name)')
    for lang in strings("language"):
        if not _LANGUAGE.match(lang):
            errors.append(f'"language" {lang!r} is not an ISO 639-1/2/3 code')
    for size in strings("size_categories"):
        if size not in SIZE_CATEGORIES:
            errors.append(f'"size_categories" {size!r} must be one of {", ".join(SIZE_CATEGORIES)}')
    if repo_type == "dataset":
        for task in strings("task_categories"):
            if task not in HUB_TASK_CATEGORIES:
                errors.append(f'"task_categories" {task!r} is not a task category the Hub knows')
    strings("tags")
    strings("source_datasets")
    strings("task_ids")
    if "pretty_name" in meta and not isinstance(meta["pretty_name"], str):
        errors.append('"pretty_name" must be a string')
    if repo_type == "dataset":
        errors += _configs_errors(meta.get("configs"))
        try:
            from huggingface_hub import DatasetCardData

            DatasetCardData(**meta)
        except Exception as e:  # the card class raises on metadata it cannot hold
            errors.append(f"DatasetCardData rejects the metadata: {e}")
    return errors


def _configs_errors(configs) -> list[str]:
    if configs is None:
        return []
    if not isinstance(configs, list) or not all(isinstance(c, dict) for c in configs):
        return ['"configs" must be a list of mappings']
    errors = []
    for c in configs:
        if not isinstance(c.get("config_name"), str):
            errors.append('every entry of "configs" needs a string "config_name"')
    if errors:
        return errors
    try:  # datasets is the reader of `configs`: if it cannot parse them, neither can load_dataset
        from datasets.utils.metadata import MetadataConfigs
        from huggingface_hub import DatasetCardData

        MetadataConfigs.from_dataset_card_data(DatasetCardData(configs=configs))
    except ImportError:  # pragma: no cover
        pass
    except Exception as e:
        errors.append(f'"configs" is invalid: {str(e).splitlines()[0]}')
    return errors


def latest_card(readme: str, prefix: str) -> str:
    """The card with every `configs` data file path moved under `prefix` (e.g. "versions/v2/").

    A local publishing folder keeps each version in versions/vN/; its top-level
    README.md is the latest version's card pointed there, so the folder loads
    like the Hub's `main`.
    """
    from huggingface_hub import DatasetCard

    card = DatasetCard(readme)
    configs = []
    for config in card.data.configs or []:
        config = dict(config)
        files = config.get("data_files")
        if isinstance(files, list):
            config["data_files"] = [{**f, "path": prefix + f["path"]} if isinstance(f, dict) else prefix + f
                                    for f in files]
        elif isinstance(files, str):
            config["data_files"] = prefix + files
        configs.append(config)
    card.data.configs = configs
    return str(card)


def validate_card(readme: str) -> None:
    """Raise ValueError with the first problem when the card's metadata would not pass the Hub's check."""
    text, _ = split_front_matter(readme)
    if text is None:
        raise ValueError("dataset card has no YAML metadata")
    errors = metadata_errors(readme, "dataset")
    if errors:
        raise ValueError(f"dataset card metadata is invalid: {errors[0]}")


@dataclass
class VersionRow:
    """One line of the card's versions table."""

    version: str
    date: str
    model: str
    fingerprint: str
    rows: int
    rewrite_rate: float | None


@dataclass
class CardInput:
    """Everything the card shows, gathered by sdft_data.publish from the run and the repo."""

    repo: str
    version: str
    manifest: dict  # the run's manifest.json
    rows: int
    accepted: int
    by_reason: dict[str, int]
    columns: list[str]
    shards: list[str]
    stats: dict = field(default_factory=dict)  # report/stats.json from sdft_data.diff, {} when absent
    plots: list[str] = field(default_factory=list)  # report/*.png paths in the repo
    has_report_md: bool = False
    versions: list[VersionRow] = field(default_factory=list)
    license: str | None = None  # overrides the recipe's license


def public_model_id(model: dict) -> str:
    """The model id, with a local path reduced to its folder name (a card must not leak local paths)."""
    model_id = str(model.get("model_id") or "?")
    if os.path.isabs(model_id) or model_id.startswith(("./", "../", "~")):
        model_id = Path(model_id).name + " (local)"
    return model_id


def model_label(model: dict) -> str:
    """`model_id@revision` (revision shortened) for tables."""
    model_id = public_model_id(model)
    rev = model.get("revision")
    return f"{model_id}@{str(rev)[:12]}" if rev else model_id


def _recipe_facts(manifest: dict):
    from .recipes import get_recipe

    name = ((manifest.get("fingerprint_inputs") or {}).get("recipe") or {}).get("name")
    try:
        return get_recipe(name) if name else None
    except ValueError:  # custom recipes are not in the registry: no license or citation to inherit
        return None


def build_metadata(card: CardInput, previous: dict | None = None) -> dict:
    """The card's YAML metadata, merged into the previous card's (the user's keys and tags are kept)."""
    inputs = card.manifest.get("fingerprint_inputs") or {}
    source = inputs.get("source") or {}
    recipe = _recipe_facts(card.manifest)
    # A custom source's license is not known to us: say so rather than guess (override with --license).
    previous = dict(previous or {})
    license_ = card.license or (recipe.license if recipe and recipe.license else None)
    license_ = license_ or previous.get("license") or "unknown"  # a license set by hand beats "unknown"
    source_id = source.get("id")
    ours = {
        "pretty_name": f"{_source_title(source)} distilled with SDFT",
        "license": license_,
        "language": list(recipe.language) if recipe else ["en"],
        "task_categories": list(recipe.task_categories) if recipe else ["text-generation"],
        "size_categories": [size_category(card.rows)],
        "source_datasets": [source_id] if source_id and source.get("kind") != "file" else None,
        "tags": list(BASE_TAGS),
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
        # What `sdft-data search` shows, machine-readable on the card (the Hub returns it as cardData).
        "sdft": sdft_summary(card),
    }
    if isinstance(previous.get("pretty_name"), str):
        ours["pretty_name"] = previous["pretty_name"]  # a name chosen by hand stays
    merged = dict(previous)
    merged.update({k: v for k, v in ours.items() if v is not None})
    extra_tags = [t for t in previous.get("tags") or [] if isinstance(t, str) and t not in ours["tags"]]
    merged["tags"] = ours["tags"] + extra_tags
    return merged


def sdft_summary(card: CardInput) -> dict:
    """The card's `sdft` metadata: this version, its recipe, seed model, rows and rewrite rate."""
    inputs = card.manifest.get("fingerprint_inputs") or {}
    model = inputs.get("model") or {}
    return {
        "version": card.version,
        "recipe": (inputs.get("recipe") or {}).get("name"),
        "seed_model": public_model_id(model) if model.get("model_id") else None,
        "rows": card.rows,
        "rewrite_rate": round(card.accepted / card.rows, 4) if card.rows else None,
        "imported": "imported" in card.manifest,
        "fingerprint": card.manifest.get("fingerprint"),
    }


def _source_title(source: dict) -> str:
    sid = source.get("id") or "dataset"
    return sid.split("/")[-1] if source.get("kind") != "file" else Path(sid).stem


def _num(x) -> str:
    if isinstance(x, bool) or x is None:
        return "n/a" if x is None else str(x).lower()
    if isinstance(x, float):
        return f"{x:.4g}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def stats_tables(stats: dict) -> dict:
    """The parts of sdft_data.diff's stats.json (schema 1) the card shows, read defensively.

    Any part the report lacks is simply left out: a run diffed by an older or
    newer sdft still gets a card.
    """
    out: dict = {"lengths": [], "similarity": [], "agreement": [], "identical_rewrites": None}
    length = stats.get("length")
    for unit, series in (length.items() if isinstance(length, dict) else []):
        for which in ("original", "rewrite", "final"):
            summary = series.get(which) if isinstance(series, dict) else None
            if isinstance(summary, dict) and "mean" in summary:
                out["lengths"].append((unit, which, _num(summary.get("mean")), _num(summary.get("median")),
                                       _num(summary.get("p90"))))
    similarity = stats.get("similarity")
    for metric, summary in (similarity.items() if isinstance(similarity, dict) else []):
        if isinstance(summary, dict) and "mean" in summary and metric != "by_reason":
            out["similarity"].append((metric, _num(summary.get("mean")), _num(summary.get("median")),
                                      _num(summary.get("rows"))))
    agreement = stats.get("answer_agreement")
    if isinstance(agreement, dict):
        for which in ("rewrite", "final"):
            part = agreement.get(which)
            if isinstance(part, dict) and part.get("rows"):
                out["agreement"].append((which, agreement.get("kind", "?"), _num(part.get("agree")),
                                         _num(part.get("rows")), _pct(part.get("rate"))))
    if isinstance(stats.get("identical_rewrites"), int):
        out["identical_rewrites"] = stats["identical_rewrites"]
    return out


def _reason_meanings() -> dict[str, str]:
    try:
        from .check import REASON_MEANINGS
    except ImportError:  # pragma: no cover - check is part of the package
        return {}
    return dict(REASON_MEANINGS)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def render_card(card: CardInput, previous_readme: str | None = None, template: str | os.PathLike | None = None) -> str:
    """README.md text for this version: YAML metadata + the template's body. Validated before it is returned."""
    from huggingface_hub import DatasetCard, DatasetCardData

    metadata = build_metadata(card, read_metadata(previous_readme))
    order = list(read_metadata(previous_readme)) or None
    card_data = DatasetCardData(**metadata)
    inputs = card.manifest.get("fingerprint_inputs") or {}
    recipe_desc = inputs.get("recipe") or {}
    recipe = _recipe_facts(card.manifest)
    check = card.manifest.get("check") or {}
    stats = dict(card.stats or {})
    by_reason = card.by_reason or stats.get("by_reason") or check.get("by_reason") or {}
    rewrite_rate = card.accepted / card.rows if card.rows else None
    meanings = _reason_meanings()
    template_desc = dict(inputs.get("template") or {})
    source = dict(inputs.get("source") or {})
    source.pop("path", None)  # never publish a local path
    body_kwargs = dict(
        repo=card.repo,
        version=card.version,
        pretty_name=metadata["pretty_name"],
        license=metadata.get("license"),
        source=source,
        source_is_hub=source.get("kind") != "file",
        recipe=recipe_desc,
        recipe_name=recipe_desc.get("name", "custom"),
        recipe_version=recipe_desc.get("version", "?"),
        response_column=recipe_desc.get("response_column") or (recipe.response_column if recipe else "response"),
        prompt_column=recipe_desc.get("prompt_column") or (recipe.prompt_column if recipe else "instruction"),
        model=inputs.get("model") or {},
        model_label=model_label(inputs.get("model") or {}),
        model_id=public_model_id(inputs.get("model") or {}),
        fmt=template_desc.get("format") or card.manifest.get("format") or "?",
        template=template_desc,
        template_system=template_desc.get("system", recipe_desc.get("distill_system", "")),
        template_user=template_desc.get("user", recipe_desc.get("distill_user", "")),
        template_prefill=template_desc.get("prefill", recipe_desc.get("prefill", "")),
        template_example=template_desc.get("example"),
        generation=inputs.get("generation") or {},
        seed=inputs.get("seed"),
        check=check,
        check_kind=recipe_desc.get("check", "none"),
        # Which settings were the paper's (sdft_data.paper): the manifest's `paper` entry and the rule set.
        paper=card.manifest.get("paper") or {},
        rules=check.get("rules") or ("strict" if check.get("strict") else "default"),
        fingerprint=card.manifest.get("fingerprint", "?"),
        sdft_version=card.manifest.get("sdft_version", "?"),
        library_versions=card.manifest.get("library_versions") or {},
        rows=card.rows,
        accepted=card.accepted,
        fallbacks=card.rows - card.accepted,
        rewrite_rate=_pct(rewrite_rate),
        by_reason=[(r, n, _pct(n / card.rows if card.rows else None), meanings.get(r, ""))
                   for r, n in sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))],
        tables=stats_tables(stats),
        plots=card.plots,
        has_report_md=card.has_report_md,
        columns=card.columns,
        shards=card.shards,
        versions=[(v.version, v.date, v.model, v.fingerprint[:12], v.rows, _pct(v.rewrite_rate))
                  for v in card.versions],
        sdft_citation=SDFT_CITATION,
        source_citation=(recipe.citation if recipe else "").strip(),
    )
    path = Path(template) if template else template_path()
    text = str(DatasetCard.from_template(card_data, template_path=str(path), **body_kwargs))
    if order:  # keep the previous card's key order on regeneration: smaller diffs on the Hub
        text = f"---\n{card_data.to_yaml(original_order=order)}\n---\n{split_front_matter(text)[1]}"
    validate_card(text)
    return text
