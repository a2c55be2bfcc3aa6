"""A run's settings as objects: what `distill`, `import`, `train` and `eval` are asked to do.

Each command's settings are one frozen dataclass (DistillSpec, ImportSpec, GapSpec, TrainSpec, EvalSpec) made of
smaller ones that the commands share (RecipeSpec, Source, Prompt, Decoding, Backend, Training). Everything
else is made from their fields, so that the command line, the manifest and the card cannot drift apart:

    the CLI options        @cli_options(DistillSpec) on a click command: one option per field, with the
                           field's help, range and choices (read from the registries when help is shown)
    the spec from the CLI  from_flat(DistillSpec, ctx.params): options not given take the field's default
    the manifest           spec.to_dict(), and from_dict(DistillSpec, d) reads it back
    the card's command     to_argv(spec): the options that differ from the defaults, so that
                           parse(to_argv(spec)) == spec (tests/test_spec.py holds every recipe, format,
                           rule set and backend to it)
    the paper's settings   instances of these classes (sdft_data.paper); `differences(ours, paper)` says
                           field by field where a run departs from them

Adding an option is adding one field, with its help, to one of these classes (and a test).

A field's metadata (made by `setting`): help, flag (default: --field-name), choices (a function returning
the names, so registries are read only when needed), minimum/maximum, multiple (repeatable option) or sep
(one comma-separated value), label (how a difference from the paper names it), paper (False: not a setting
the paper fixes), argv and record (False: never printed in a reproduce command, never in a manifest: a
file holding a secret), path (a local path: a public record shows an absolute one by its name).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Callable

REQUIRED = MISSING


def setting(default=MISSING, help: str | Callable[[], str] = "", *, flag: str | None = None,
            choices: Callable[[], typing.Iterable[str]] | None = None, minimum=None, maximum=None,
            exclusive_minimum: bool = False, multiple: bool = False, sep: str | None = None,
            label: str | None = None, paper: bool = True, argv: bool = True, metavar: str | None = None,
            default_text: str | None = None, hidden: bool = False, path: bool = False, record: bool = True):
    """A spec field: its default and everything the CLI, the card and the paper comparison need to know."""
    meta = dict(help=help, flag=flag, choices=choices, minimum=minimum, maximum=maximum,
                exclusive_minimum=exclusive_minimum, multiple=multiple, sep=sep, label=label, paper=paper,
                argv=argv, metavar=metavar, default_text=default_text, hidden=hidden, path=path, record=record)
    return field(default=default, metadata=meta)


def group(cls, *, required: bool = False, **defaults):
    """A nested spec field (its fields become options of the command). `defaults` override the group's own.

    A group with a required setting (a recipe name, say) is itself required.
    """
    if required:
        return field(metadata={"group": cls})
    return field(default_factory=lambda: cls(**defaults), metadata={"group": cls})


# --------------------------------------------------------------------------------------------------
# The fields of a spec, flattened


@dataclass(frozen=True)
class Leaf:
    """One setting of a spec class, wherever it sits in the nesting; `name` is unique in the tree."""

    path: tuple[str, ...]
    name: str
    type: object  # the annotation with Optional removed
    default: object  # MISSING when required
    meta: dict

    @property
    def flag(self) -> str:
        return self.meta.get("flag") or "--" + self.name.replace("_", "-")

    @property
    def label(self) -> str:
        return self.meta.get("label") or self.name.replace("_", " ")

    @property
    def is_bool(self) -> bool:
        return self.type is bool

    @property
    def is_tuple(self) -> bool:
        return typing.get_origin(self.type) is tuple


@functools.cache
def leaves(cls) -> tuple[Leaf, ...]:
    """Every setting of `cls`, nested groups flattened, in declaration order."""
    out: list[Leaf] = []
    _collect(cls, (), None, out)
    names = [leaf.name for leaf in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:  # a programming error: every option of a command needs its own name
        raise TypeError(f"{cls.__name__} has settings with the same name in two groups: {sorted(dupes)}")
    return tuple(out)


def _collect(cls, prefix: tuple[str, ...], defaults, out: list[Leaf]) -> None:
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.metadata.get("group"):
            sub = f.default_factory() if f.default_factory is not MISSING else None
            if defaults is not None and sub is not None:
                sub = getattr(defaults, f.name)
            _collect(f.metadata["group"], prefix + (f.name,), sub, out)
            continue
        if defaults is not None:
            default = getattr(defaults, f.name)
        elif f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        out.append(Leaf(prefix + (f.name,), f.name, _unwrap(hints[f.name])[0], default, dict(f.metadata)))


def _unwrap(annotation):
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else annotation), True
    return annotation, False


def get(spec, path: tuple[str, ...]):
    for name in path:
        spec = getattr(spec, name)
    return spec


# --------------------------------------------------------------------------------------------------
# Building specs: from flat options, from the manifest's dict; and back


def from_flat(cls, flat: dict, *, base=None):
    """`cls` from flat option values (click's params, or keywords): None or () means "not given".

    Names `flat` has that are no setting of `cls` are ignored (the CLI's actions, e.g. --resume).
    `base` gives the values of settings not given (default: the fields' defaults).
    """
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.metadata.get("group"):
            sub_cls = f.metadata["group"]
            if isinstance(flat.get(f.name), sub_cls):  # a whole group given as an object: decoding=Decoding(...)
                sub_base = flat[f.name]
            elif base is not None:
                sub_base = getattr(base, f.name)
            else:
                sub_base = f.default_factory() if f.default_factory is not MISSING else None
            kwargs[f.name] = from_flat(sub_cls, flat, base=sub_base)
            continue
        value = flat.get(f.name)
        if is_dataclass(value):  # a group object of the same name (source=Source(...)): not this setting
            value = None
        if value is None or value == ():
            if base is not None:
                kwargs[f.name] = getattr(base, f.name)
            continue  # the field's own default
        kwargs[f.name] = _convert(value, hints[f.name], f.metadata)
    return cls(**kwargs)


def _convert(value, annotation, meta):
    import os

    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    base, _ = _unwrap(annotation)
    if typing.get_origin(base) is tuple:
        if isinstance(value, str):
            sep = meta.get("sep") or ","
            value = [v.strip() for v in value.split(sep) if v.strip()]
        return tuple(value)
    return value


def to_dict(spec) -> dict:
    """The spec as JSON-able nested dicts (tuples as lists): what manifests record."""
    out = {}
    for f in fields(spec):
        if f.metadata.get("record") is False:
            continue
        value = getattr(spec, f.name)
        if is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def from_dict(cls, data: dict):
    """The spec a manifest recorded (to_dict's output). Keys this version does not know are ignored."""
    if not isinstance(data, dict):
        raise ValueError(f"not a recorded {cls.__name__}: {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        if f.metadata.get("group"):
            kwargs[f.name] = from_dict(f.metadata["group"], data[f.name])
        else:
            kwargs[f.name] = _convert(data[f.name], hints[f.name], f.metadata) if isinstance(data[f.name], list) \
                else data[f.name]
    return cls(**kwargs)


def to_argv(spec, *, public: Callable[[Leaf, object], object] | None = None) -> list[str]:
    """The command-line options that make `spec` again: every setting that is not its default.

    `public(leaf, value)` may rewrite a value for printing (a card shows a local path by its name); it
    returns the value to print, or None to leave the option out.
    """
    cls = type(spec)
    presets = PRESETS.get(cls, {})
    paper_mode = getattr(spec, "paper", False)
    argv: list[str] = []
    for leaf in leaves(cls):
        if not leaf.meta.get("argv", True):
            continue
        value = get(spec, leaf.path)
        if paper_mode and leaf.name in presets and value == presets[leaf.name]:
            continue  # --paper sets it
        if value == leaf.default and leaf.default is not MISSING:
            continue
        if public is not None:
            value = public(leaf, value)
            if value is None:
                continue
        argv += _option_text(leaf, value)
    return argv


def _option_text(leaf: Leaf, value) -> list[str]:
    if leaf.is_bool:
        if value is None:
            return []
        if value:
            return [leaf.flag]
        return ["--no-" + leaf.flag.removeprefix("--")]
    if value is None:
        raise ValueError(f"{leaf.flag} cannot be written as an option when it is unset (its default is "
                         f"{leaf.default!r})")
    if leaf.is_tuple:
        if leaf.meta.get("multiple"):
            return [part for v in value for part in (leaf.flag, str(v))]
        return [leaf.flag, (leaf.meta.get("sep") or ",").join(map(str, value))]
    if isinstance(value, float):
        return [leaf.flag, repr(value)]
    return [leaf.flag, str(value)]


# --------------------------------------------------------------------------------------------------
# Comparing with the paper


def show(value) -> str:
    """A setting's value as a card or a message shows it: floats rounded, None as "not set"."""
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    return str(value)


def differences(ours, theirs, *, names: typing.Iterable[str] | None = None) -> list[str]:
    """Where `ours` departs from `theirs` (the paper's instance of the same class), one phrase each.

    Compares every setting the paper fixes (metadata paper=True), or only `names`.
    """
    wanted = set(names) if names is not None else None
    out = []
    for leaf in leaves(type(ours)):
        if not leaf.meta.get("paper", True) or (wanted is not None and leaf.name not in wanted):
            continue
        a, b = get(ours, leaf.path), get(theirs, leaf.path)
        if a != b and not (isinstance(a, float) and isinstance(b, float) and math.isclose(a, b)):
            sep = ":" if leaf.is_bool else ""
            out.append(f"{leaf.label}{sep} {show(a)} (paper: {show(b)})")
    return out


# --------------------------------------------------------------------------------------------------
# Checks every spec runs in __post_init__: the same bounds the CLI shows


def check_bounds(spec) -> None:
    """ValueError (one line, naming the option) for a value outside its field's range or choices."""
    hints = typing.get_type_hints(type(spec))
    for f in fields(spec):
        value = getattr(spec, f.name)
        if f.metadata.get("group") or value is None:
            continue
        meta = f.metadata
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        base, _ = _unwrap(hints[f.name])
        lo, hi = meta.get("minimum"), meta.get("maximum")
        if lo is not None or hi is not None:
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or (isinstance(value, float) and math.isnan(value)):
                raise ValueError(f"{flag} must be a number, not {value!r}")
            if base is int and not isinstance(value, int):
                raise ValueError(f"{flag} must be an integer, not {value!r}")
            if lo is not None and (value < lo or (meta.get("exclusive_minimum") and value == lo)):
                above = "above" if meta.get("exclusive_minimum") else "at least"
                raise ValueError(f"{flag} must be {above} {lo} (got {value})")
            if hi is not None and value > hi:
                raise ValueError(f"{flag} must be at most {hi} (got {value})")
        choices = meta.get("choices")
        if choices is not None and value != f.default:  # a default is valid: no registry read to make one
            known = list(choices())
            for item in (value if isinstance(value, tuple) else (value,)):
                if item not in known:
                    raise ValueError(f"unknown {flag} {item!r}; choose one of: {', '.join(known)}")


def _check(self) -> None:
    # An int where a float is meant (temperature=0) is recorded as the CLI would record it (0.0): one
    # fingerprint for the same run, whichever way it was asked for.
    hints = typing.get_type_hints(type(self))
    for f in fields(self):
        value = getattr(self, f.name)
        if _unwrap(hints[f.name])[0] is float and isinstance(value, int) and not isinstance(value, bool):
            object.__setattr__(self, f.name, float(value))
    check_bounds(self)


# --------------------------------------------------------------------------------------------------
# Registries, read only when a choice is checked or shown


def _formats():
    from .templates import FORMATS

    return FORMATS


def _layouts():
    from .templates import PAPER_LAYOUTS

    return PAPER_LAYOUTS


def _rules():
    from .recipes import RULE_SETS

    return RULE_SETS


def _recipes():
    from .recipes import recipe_names

    return [*recipe_names(), "custom"]


def _checks():
    from .recipes import CHECKS

    return CHECKS


def _templates():
    from .recipes import TEMPLATES

    return tuple(TEMPLATES)


def _backends():
    from .backends import BACKENDS

    return BACKENDS


def _responses():
    return ("sdft", "original")


def _methods():
    return ("sft", "on-policy")


def _teachers():
    return ("base", "live", "ema")


# TRL's SDFTTrainer default teacher prompt (SDFTConfig.teacher_prompt_template).
TEACHER_TEMPLATE = "{prompt}\n\n{privileged_context}"


def _tasks():
    from sdft_train.tasks import task_names

    return task_names()


def _suites():
    return tuple(_suite_lists())


def _suite_lists():
    from sdft_train.tasks import SUITES

    return SUITES


def choices_help(name: str) -> str:
    """One line per choice with its meaning, for a command's help (rules, checks)."""
    if name == "rules":
        from .check import RULE_MEANINGS

        return "; ".join(f"{k}: {v}" for k, v in RULE_MEANINGS.items())
    if name == "check":
        from .recipes import builtin_checks

        return "; ".join(f"{k}: {c.description}" for k, c in builtin_checks().items())
    raise KeyError(name)


# --------------------------------------------------------------------------------------------------
# The settings


class SpecBase:
    """What every spec class can do (the module's functions, as methods)."""

    @classmethod
    def make(cls, **flat):
        """The spec from flat keywords with the command line's names (see `make`)."""
        return make(cls, **flat)

    def to_dict(self) -> dict:
        return to_dict(self)

    def to_argv(self, **kw) -> list[str]:
        return to_argv(self, **kw)




@dataclass(frozen=True)
class RecipeSpec(SpecBase):
    """Which recipe treats the dataset; a custom recipe names its columns, template and check."""

    recipe: str = setting(REQUIRED, "Recipe name (see `sdft-data recipes`), or custom.", choices=_recipes,
                          paper=False)
    lang: str | None = setting(None, "magicoder: keep rows of this `lang` (`all` keeps every language).",
                               default_text="python", paper=False)
    prompt_column: str | None = setting(None, "custom recipe: the instruction column.", paper=False)
    input_column: str | None = setting(None, "custom recipe: an optional input column, joined to the "
                                       "instruction by a newline.", paper=False)
    response_column: str | None = setting(None, "custom recipe: the response column.", paper=False)
    template: str = setting("using", "custom recipe: the distill template, alpaca_distill_using or "
                            "alpaca_distill_refer.", choices=_templates, paper=False)
    check: str = setting("none", lambda: "custom recipe: the task check; " + choices_help("check") + ".",
                         choices=_checks, paper=False)

    def __post_init__(self):
        _check(self)
        custom = self.recipe == "custom"
        if custom and not (self.prompt_column and self.response_column):
            raise ValueError("--recipe custom needs --prompt-column and --response-column")
        if not custom:
            given = [f"--{n.replace('_', '-')}" for n in ("prompt_column", "input_column", "response_column")
                     if getattr(self, n)]
            given += [f"--{n}" for n in ("template", "check") if getattr(self, n) != RecipeSpec.__dataclass_fields__[n].default]
            if given:
                raise ValueError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for --recipe custom, "
                                 f"not {self.recipe} (a built-in recipe brings its own columns, template and check)")

    def resolve(self):
        """The Recipe object (sdft_data.recipes) these settings name."""
        from .recipes import custom_recipe, get_recipe, replace as replace_recipe

        if self.recipe == "custom":
            recipe = custom_recipe(prompt_column=self.prompt_column, input_column=self.input_column,
                                   response_column=self.response_column, template=self.template, check=self.check)
        else:
            recipe = get_recipe(self.recipe)
        if self.lang is not None:
            if recipe.row_filter is None:
                raise ValueError(f"--lang is for recipes that select rows by language (magicoder), not {recipe.name}")
            recipe = replace_recipe(recipe, row_filter=None if self.lang == "all" else (recipe.row_filter[0], self.lang))
        return recipe


@dataclass(frozen=True)
class Source(SpecBase):
    """Where the rows come from: a Hub dataset or a local file, and how many of them."""

    source: str | None = setting(None, "Hub dataset id, or a local .json/.jsonl/.parquet/.csv file.",
                                 default_text="the recipe's Hub source", paper=False, path=True)
    config: str | None = setting(None, "Hub dataset config.", default_text="the recipe's, for its own source",
                                 paper=False)
    split: str | None = setting(None, "Split to read.", default_text="train", paper=False)
    revision: str | None = setting(None, "Hub dataset revision (branch, tag or commit).", paper=False)
    limit: int | None = setting(None, "Only the first N rows.", minimum=1, paper=False)

    def __post_init__(self):
        _check(self)


@dataclass(frozen=True)
class Prompt(SpecBase):
    """How prompts are laid out (sdft_data.templates)."""

    format: str | None = setting("chat", "chat: the model's chat template; paper: the authors' raw-text "
                                 "templates, byte for byte.", choices=_formats)
    paper_layout: str | None = setting(None, "Paper format of a Llama-family recipe (GSM8K): the Llama-2 or "
                                       "Llama-3 layout.", choices=_layouts, paper=False,
                                       default_text="Llama-3 when the tokenizer has its header tokens, else Llama-2")

    def __post_init__(self):
        _check(self)


@dataclass(frozen=True, kw_only=True)  # keywords only: Decoding(512, 0.0, ...) would be easy to misread
class Decoding(SpecBase):
    """Decoding parameters. temperature 0 means greedy. The defaults are the paper's (sdft_data.paper)."""

    max_new_tokens: int = setting(512, "Most tokens to generate per row.", minimum=1)
    temperature: float = setting(0.95, "Sampling temperature; 0 for greedy decoding.", minimum=0.0)
    top_p: float = setting(0.7, "Nucleus sampling: keep the most likely tokens up to this mass.", minimum=0.0,
                           exclusive_minimum=True, maximum=1.0)
    top_k: int = setting(50, "Sample from the k most likely tokens (before top-p); 0 turns it off.", minimum=0)
    # Set by evaluation tasks (a task's own stop strings), never on the command line.
    stop: tuple[str, ...] = field(default=(), metadata={"cli": False, "argv": False})

    def __post_init__(self):
        # Checked here too, not only in the CLI, so no caller writes a manifest with
        # parameters no engine accepts.
        for name in ("max_new_tokens", "top_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"--{name.replace('_', '-')} must be an integer, not {value!r}")
        _check(self)
        object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def do_sample(self) -> bool:
        return self.temperature > 0

    def shown(self) -> dict:
        """The parameters that applied, for cards and tables: greedy decoding has no top-p or top-k."""
        d = {"max_new_tokens": self.max_new_tokens}
        if self.do_sample:
            d |= {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        else:
            d["decoding"] = "greedy"
        if self.stop:
            d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True)
class Backend(SpecBase):
    """What generates: a model in this process, or serving engines (sdft_data.backends)."""

    backend: str = setting("local", "local: a transformers model here (GPU when present); tgi: Text Generation "
                           "Inference's API; openai: any OpenAI-compatible /v1/completions server.",
                           choices=_backends, paper=False)
    model: str | None = setting(None, "Model: a Hub id, a local folder or a .gguf file (the model name on an "
                                "openai server; optional for tgi).", paper=False, path=True)
    model_id: str | None = setting(None, "The Hub id a local --model (folder or .gguf file) stands for, recorded "
                                   "as its id.", metavar="ORG/NAME", paper=False,
                                   default_text="the folder's provenance.json or config, else its name")
    endpoints: tuple[str, ...] = setting((), "Serving endpoint URL (repeat for several) for tgi/openai.",
                                         flag="--endpoint", multiple=True, paper=False, metavar="URL")
    tokenizer: str | None = setting(None, "Tokenizer to render prompts with, when the served model's id "
                                    "cannot be loaded here.", default_text="the model's", paper=False, path=True)
    concurrency: int | None = setting(None, "In-flight requests per endpoint.", minimum=1, paper=False,
                                      default_text="TGI's /info max_concurrent_requests, else 128 (tgi) or 64 (openai)")
    token_file: str | None = setting(None, "File holding the endpoint's bearer token.", paper=False, argv=False,
                                     record=False,
                                     default_text="OPENAI_API_KEY for openai, HF_TOKEN for tgi")
    batch_size: int = setting(16, "Local backend: rows generated together.", minimum=1, paper=False)
    max_prompt_tokens: int | None = setting(None, "Rows whose rendered prompt is longer fail (recorded with the "
                                            "reason), unsent.", minimum=1, paper=False,
                                            default_text="local: the model's context less --max-new-tokens; "
                                                         "tgi/openai: the server's limit")
    # Tokenizing costs memory by the character (about 300 bytes each): a bound on the text, checked before
    # any tokenizer sees it, is what bounds the memory one row can take.
    max_prompt_chars: int = setting(1_000_000, "Rows whose rendered prompt has more characters fail (recorded "
                                    "with the reason) before they are tokenized: this bounds the memory one row "
                                    "takes (about 300 bytes a character).", minimum=1, paper=False)
    request_timeout: float | None = setting(None, "tgi/openai: seconds one request may take, connection to "
                                            "last byte.", minimum=0.0, exclusive_minimum=True, paper=False,
                                            default_text="600")
    retry_budget: float | None = setting(None, "tgi/openai: seconds the endpoints may fail without one success "
                                         "before the run stops (finished rows kept; re-run to resume).",
                                         minimum=0.0, exclusive_minimum=True, paper=False, default_text="900")

    def __post_init__(self):
        _check(self)
        object.__setattr__(self, "endpoints", tuple(self.endpoints))

    def token(self) -> str | None:
        """The endpoint's bearer token: --token-file, else OPENAI_API_KEY (openai) or HF_TOKEN (tgi). Never recorded."""
        import os

        if self.backend == "local":
            return None
        if self.token_file:
            try:
                return Path(self.token_file).expanduser().read_text().strip() or None
            except OSError as e:
                raise ValueError(f"--token-file {self.token_file}: cannot read it ({e.strerror or e})") from None
        name = "OPENAI_API_KEY" if self.backend == "openai" else "HF_TOKEN"
        return os.environ.get(name) or None

    def open(self):
        """The backend these settings name (sdft_data.backends.make_backend)."""
        from .backends import make_backend

        return make_backend(self.backend, model=self.model, model_id=self.model_id, endpoints=self.endpoints,
                            tokenizer=self.tokenizer,
                            concurrency=self.concurrency, token=self.token(), batch_size=self.batch_size,
                            max_prompt_tokens=self.max_prompt_tokens, request_timeout=self.request_timeout,
                            retry_budget=self.retry_budget)


@dataclass(frozen=True, kw_only=True)
class DistillSpec(SpecBase):
    """`sdft-data distill`: rewrite a dataset's responses with its seed model, check them, fall back."""

    recipe: RecipeSpec = group(RecipeSpec, required=True)
    source: Source = group(Source)
    prompt: Prompt = group(Prompt)
    decoding: Decoding = group(Decoding)
    rules: str = setting("default", lambda: "Which rewrites pass: " + choices_help("rules") + ".", choices=_rules)
    backend: Backend = group(Backend)
    seed: int = setting(0, "Run seed; each row samples with its own seed made from it and the row id.",
                        minimum=0, paper=False)
    paper: bool = setting(False, "Reproduce the paper: the authors' prompts (--format paper), decoding "
                          "(temperature 0.95, top-p 0.7, top-k 50, 512 new tokens) and acceptance rules "
                          "(--rules paper); an option that departs from them is refused.", paper=False)
    # Not part of the fingerprint: scoring reads the generations and changes none of them.
    gap: bool = setting(True, "After generating, score each row's original response and rewrite under the seed "
                        "model and the training prompt (mean log-likelihood per token: gap_* columns in "
                        "distilled.parquet). Local backend only; for a served model, `sdft-data gap RUN --model M`.",
                        paper=False)
    out: str = setting(REQUIRED, "Run directory (created, or resumed).", paper=False, path=True)

    def __post_init__(self):
        _check(self)

    def paper_differences(self) -> list[str]:
        from . import paper

        diffs = differences(self.prompt, paper.PROMPT) + differences(self.decoding, paper.DECODING)
        if self.rules != paper.RULES:
            diffs.insert(1, f"rules {self.rules} (paper: {paper.RULES})")
        return diffs


@dataclass(frozen=True, kw_only=True)
class ImportSpec(SpecBase):
    """`sdft-data import`: a run directory from a distilled dataset made elsewhere."""

    original: str = setting(REQUIRED, "The original dataset: a .json/.jsonl/.parquet/.csv file or a Hub id "
                            "(org/name[@revision]).", paper=False, path=True)
    distilled: str = setting(REQUIRED, "Its distilled counterpart, row for row: a file or a Hub id.", paper=False, path=True)
    recipe: RecipeSpec = group(RecipeSpec, required=True)
    split: str | None = setting(None, "Split, for Hub ids.", default_text="train", paper=False)
    model: str | None = setting(None, "The seed model that made the distilled dataset, as you know it "
                                "(recorded as stated).", paper=False)
    note: str | None = setting(None, "A line on where the pair comes from, kept in the manifest and shown on "
                               "the card.", paper=False)
    out: str = setting(REQUIRED, "Run directory to create (new or empty).", paper=False, path=True)


@dataclass(frozen=True, kw_only=True)
class GapSpec(SpecBase):
    """`sdft-data gap RUN`: each row's original response and rewrite scored under a model (sdft_data.gap)."""

    model: str = setting(REQUIRED, "The model to score under, the run's seed model: a Hub id or a local folder.",
                         paper=False, path=True)
    revision: str | None = setting(None, "Hub revision of --model.", paper=False)
    prompt: Prompt = group(Prompt, format=None)
    batch_size: int = setting(16, "Rows scored together (at most 2048 padded positions each).", minimum=1,
                              paper=False)

    def __post_init__(self):
        _check(self)


@dataclass(frozen=True)
class Training(SpecBase):
    """Every knob of a training run. The defaults are the paper's preset (sdft_data.paper.training)."""

    responses: str = setting("sdft", "Which arm: the SDFT responses, or the original ones of the same rows "
                             "(vanilla fine-tuning). --method on-policy shows its teacher the original ones.",
                             choices=_responses, paper=False)
    method: str = setting("sft", "sft: fine-tune on the --responses (TRL's SFTTrainer; SDFT's two arms); "
                          "on-policy: the model samples answers to the same prompts and learns the token "
                          "distribution it gives them when also shown the original response (TRL's experimental "
                          "SDFTTrainer, Shenfeld et al. 2026; not an arm of the SDFT paper).", choices=_methods,
                          label="method")
    # The on-policy method's knobs (TRL's SDFTConfig; the defaults are TRL's).
    generations: int = setting(8, "on-policy: answers sampled per prompt (TRL's num_generations); --batch-size x "
                               "--grad-accum must be a multiple of it.", minimum=1, paper=False)
    max_completion_length: int = setting(256, "on-policy: most tokens per sampled answer.", minimum=1, paper=False)
    rollout_temperature: float = setting(1.0, "on-policy: sampling temperature of the answers (TRL also divides both "
                                         "models' logits by it in the loss).", minimum=0.0, exclusive_minimum=True,
                                         paper=False)
    teacher: str = setting("base", "on-policy: the teacher's weights: base (the model before training), live (the "
                           "student as it trains), ema (a moving average of the student).", choices=_teachers,
                           paper=False)
    teacher_template: str = setting(TEACHER_TEMPLATE, "on-policy: what the teacher's prompt holds in place of the "
                                    "instruction: {prompt} (the row's instruction) and {privileged_context} (the "
                                    "original response).",
                                    default_text="{prompt}\\n\\n{privileged_context}, TRL's", paper=False)
    vllm: bool | None = setting(None, "on-policy: sample the answers with vLLM (TRL's colocated engine) instead of "
                                "transformers' generate.", default_text="when vLLM is installed and a GPU is present",
                                paper=False)
    full: bool = setting(False, "Full fine-tuning instead of LoRA.", label="full fine-tuning")
    lora_rank: int = setting(8, "LoRA rank (the adapter's inner size).", minimum=1)
    lora_alpha: int = setting(16, "LoRA alpha (LLaMA-Factory: twice the rank).", minimum=1)
    lora_dropout: float = setting(0.0, "Dropout on LoRA's input.", minimum=0.0, maximum=1.0)
    lora_targets: tuple[str, ...] = setting(("q_proj", "v_proj"), "Modules LoRA adapts, comma-separated.",
                                            sep=",", metavar="NAMES")
    learning_rate: float = setting(1e-4, "Peak learning rate.", flag="--lr", minimum=0.0, exclusive_minimum=True,
                                   label="lr")
    lr_scheduler: str = setting("cosine", "Learning-rate schedule (transformers' names).")
    warmup_ratio: float = setting(0.0, "Share of the steps spent warming up.", minimum=0.0, maximum=1.0)
    weight_decay: float = setting(0.0, "AdamW's weight decay.", minimum=0.0)
    max_grad_norm: float = setting(1.0, "Gradient clipping norm.", minimum=0.0)
    batch_size: int = setting(2, "Rows per device and micro-batch.", minimum=1)
    grad_accum: int = setting(4, "Micro-batches per optimizer step.", minimum=1)
    epochs: float | None = setting(None, "Passes over the rows.", minimum=0.0, exclusive_minimum=True,
                                   default_text="the paper's: 5 for gsm8k and openfunctions, else 2")
    max_steps: int | None = setting(None, "Stop after this many optimizer steps (overrides --epochs).", minimum=1)
    max_length: int = setting(1024, "Cutoff in tokens, prompt and response together (--method on-policy: of the "
                              "prompt; its answers stop at --max-completion-length).", minimum=2)
    seed: int = setting(42, "Training seed (the LoRA initialisation and the row order).", minimum=0, paper=False)
    group_by_length: bool = setting(False, "Micro-batches of rows of similar length: less padding, but not the "
                                    "paper's random row order.", label="row order grouped by length")
    save_steps: int = setting(500, "Checkpoint every N optimizer steps.", minimum=1, paper=False)
    save_total_limit: int = setting(2, "Checkpoints kept.", minimum=1, paper=False)
    bf16: bool | None = setting(None, "bf16 weights and compute.", default_text="on a GPU that has it", paper=False)
    gradient_checkpointing: bool | None = setting(None, "Recompute activations in the backward pass.",
                                                  default_text="on GPU", paper=False)
    # One flat sequence per micro-batch: the same rows and loss as padding, no pad tokens.
    padding_free: bool = setting(True, "Flatten each micro-batch into one sequence without padding (same rows, "
                                 "loss and gradients).", paper=False)
    # Padding-free, with attention that keeps to each row (sdpa_rows, flash attention): each optimizer step's
    # rows cut into micro-batches of up to batch_size x max_length tokens, not batch_size rows
    # (sdft_train.trainer): the same rows per step, loss and gradients; fewer, fuller forward passes. Off: on CPU
    # it was no faster and took a third more memory (benchmarks/bench_train.py, side "packed"); untried on GPU.
    pack_steps: bool = setting(False, "Padding-free: cut each optimizer step's rows into micro-batches of up to "
                               "batch size x max length tokens instead of batch-size rows (same rows, loss and "
                               "gradients).", paper=False)
    # None: transformers' default (sdpa), and with padding-free micro-batches sdft_train.attention's sdpa_rows for
    # training (attention within each row, no dense mask); "sdpa" keeps the dense mask; flash_attention_2 on GPU.
    attn_implementation: str | None = setting(None, "Attention kernel, e.g. flash_attention_2 (needs flash-attn) "
                                              "on GPU; sdpa for its dense mask over padding-free micro-batches.",
                                              default_text="transformers' sdpa, within each row when padding-free",
                                              paper=False)
    merge: bool = setting(False, "Also save the LoRA-merged model under OUT/merged.", paper=False)

    def __post_init__(self):
        _check(self)
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        if self.full and self.merge:
            raise ValueError("--merge merges a LoRA adapter; with --full the saved model is already whole")
        if self.method == "on-policy":
            # The teacher's privileged context is the original response (the demonstration), whatever the
            # default --responses says: recorded as such.
            object.__setattr__(self, "responses", "original")
            if self.group_by_length:
                raise ValueError("--group-by-length orders the rows of --method sft; --method on-policy draws its "
                                 "prompts with TRL's sampler")
            rows = self.batch_size * self.grad_accum
            if rows % self.generations:
                raise ValueError(f"--method on-policy samples --generations {self.generations} answers per prompt: "
                                 f"--batch-size x --grad-accum ({rows}) must be a multiple of it")
            missing = [p for p in ("{prompt}", "{privileged_context}") if p not in self.teacher_template]
            if missing:
                raise ValueError(f"--teacher-template must hold {' and '.join(missing)}")
            try:
                self.teacher_template.format(prompt="", privileged_context="")
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError(f"--teacher-template may hold only {{prompt}} and {{privileged_context}} (write a "
                                 f"brace as {{{{ or }}}}): {e!r} in {self.teacher_template!r}") from None
        else:
            given = [f"--{name.replace('_', '-')}" for name in ON_POLICY_SETTINGS
                     if getattr(self, name) != Training.__dataclass_fields__[name].default]
            if given:
                raise ValueError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for --method on-policy")


# The settings only --method on-policy reads.
ON_POLICY_SETTINGS = ("generations", "max_completion_length", "rollout_temperature", "teacher", "teacher_template",
                      "vllm")


@dataclass(frozen=True, kw_only=True)
class TrainSpec(SpecBase):
    """`sdft-train train`: fine-tune the seed model on one arm of a distilled dataset."""

    data: str = setting(REQUIRED, "org/name@vN (published), a finished run directory, or a parquet/json file.",
                        paper=False, path=True)
    hub_dir: str | None = setting(None, "Local publishing folder holding org/name@vN (instead of the Hub).",
                                  paper=False, metavar="DIR", path=True)
    model: str = setting(REQUIRED, "Base model: Hub id, local folder or .gguf file (the dataset's seed model).",
                        paper=False, path=True)
    model_id: str | None = setting(None, "The Hub id a local --model (folder or .gguf file) stands for, recorded "
                                   "as its id.", metavar="ORG/NAME", paper=False,
                                   default_text="the folder's provenance.json or config, else its name")
    revision: str | None = setting(None, "Hub revision of --model.", paper=False)
    recipe: str | None = setting(None, "Recipe whose train template to use.", choices=_recipes,
                                 default_text="the dataset's", paper=False)
    prompt: Prompt = group(Prompt, format=None)
    training: Training = group(Training)
    paper: bool = setting(False, "Reproduce the paper: its prompt format (--format paper) and training preset; "
                          "any option that departs from them is refused.", paper=False)
    allow_other_model: bool = setting(False, "Train a model that is not the dataset's seed model.", paper=False)
    push_to_hub: str | None = setting(None, "Upload the result to this model repo.", metavar="ORG/NAME",
                                      paper=False)
    private: bool = setting(False, "With --push-to-hub: create the repo private.", paper=False)
    out: str = setting(REQUIRED, "Where to save the adapter or model.", paper=False, path=True)

    def __post_init__(self):
        _check(self)


@dataclass(frozen=True, kw_only=True)
class EvalSpec(SpecBase):
    """`sdft-train eval`: score one model on the paper's tasks."""

    backend: Backend = group(Backend)
    adapter: str | None = setting(None, "LoRA adapter folder to apply to --model (local backend; merged in "
                                  "memory).", paper=False, path=True)
    tasks: tuple[str, ...] = setting((), lambda: "Tasks, comma-separated: " + ", ".join(_tasks()) + ".", sep=",",
                                     choices=_tasks, metavar="A,B,...", paper=False)
    suite: str | None = setting(None, lambda: "A named list of tasks: " + "; ".join(
        f"{name}: {', '.join(names)}" for name, names in _suite_lists().items()) + ".", choices=_suites, paper=False)
    data_dir: str | None = setting(None, "Local test files laid out like the paper's data folder.",
                                   default_text="the Hub datasets", paper=False, path=True)
    prompt: Prompt = group(Prompt)
    decoding: Decoding = group(Decoding)
    samples: int = setting(1, "Generations per row when sampling: mean and spread.", minimum=1, paper=False)
    seed: int = setting(0, "Sampling seed; each row samples with its own seed made from it and the row id.",
                        minimum=0, paper=False)
    limit: int | None = setting(None, "First N rows of each task.", minimum=1, paper=False)
    judge_endpoint: str | None = setting(None, "OpenAI-compatible server judging AlpacaEval.", paper=False)
    judge_model: str | None = setting(None, "The judge's model name.", paper=False)
    seed_results: str | None = setting(None, "The seed model's eval folder (for similarity).", paper=False, path=True)
    seed_model: str | None = setting(None, "The seed model the drift tasks measure against (Hub id or folder; "
                                     "loaded here).", default_text="the base model in the model's training "
                                     "record; the model itself when it has none", paper=False, path=True)
    embedding_model: str | None = setting(None, "Sentence-transformers model for similarity.",
                                          default_text="all-MiniLM-L6-v2, as the authors", paper=False, path=True)
    paper: bool = setting(False, "Evaluate as the paper: its prompt format (--format paper) and decoding; an "
                          "option that departs from them is refused.", paper=False)
    out: str = setting(REQUIRED, "Results folder for this model.", paper=False, path=True)

    def __post_init__(self):
        _check(self)
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if bool(self.tasks) == bool(self.suite):
            raise ValueError("pass either --tasks a,b,c or --suite NAME")
        if bool(self.judge_endpoint) != bool(self.judge_model):
            raise ValueError("--judge-endpoint and --judge-model go together")
        if self.samples > 1 and not self.decoding.do_sample:
            raise ValueError("--samples > 1 needs sampling (--temperature above 0): greedy decoding gives the "
                             "same answer every time")

    def paper_differences(self) -> list[str]:
        from . import paper

        return differences(self.prompt, paper.PROMPT) + differences(self.decoding, paper.DECODING)


# Keys of a run's fingerprint inputs that record one option each, beyond the groups named after
# their spec class (`generation` is Decoding, `config` Training, `source` Source).
_RECORDED_AS = {"source.id": "--source", "model.model_id": "--model", "data.limit": "--limit",
                "data.spec": "--data", "prompts.format": "--format"}
_TOP_LEVEL = ("seed", "rules", "format", "paper_layout", "responses")


def option_for(key: str) -> str | None:
    """The command-line option a fingerprint input's dotted key records ("generation.temperature" ->
    "--temperature"), or None when it records no single option (a hash, a row count, the model's revision).

    How a refused resume names what changed in the words the user typed.
    """
    if key in _RECORDED_AS:
        return _RECORDED_AS[key]
    head, _, name = key.rpartition(".")
    groups = {"generation": Decoding, "config": Training, "source": Source}
    if head in groups:
        return {leaf.name: leaf.flag for leaf in leaves(groups[head])}.get(name)
    if not head and name in _TOP_LEVEL:
        every = {leaf.name: leaf.flag for cls in (DistillSpec, EvalSpec, TrainSpec) for leaf in leaves(cls)}
        return every.get(name)
    return None


# What --paper sets on each command when the option is not given (a different value given is refused).
PRESETS: dict[type, dict[str, object]] = {
    DistillSpec: {"format": "paper", "rules": "paper"},
    TrainSpec: {"format": "paper"},
    EvalSpec: {"format": "paper"},
}


def with_preset(cls, flat: dict) -> dict:
    """`flat` with what --paper sets filled in; ValueError when an option given contradicts it."""
    if not flat.get("paper"):
        return flat
    from . import paper

    flat = dict(flat)
    by_name = {leaf.name: leaf for leaf in leaves(cls)}
    pinned = dict(PRESETS.get(cls, {}))
    if cls in (DistillSpec, EvalSpec):  # decoding: the defaults are the paper's; another value is refused
        pinned |= {leaf.name: get(paper.DECODING, leaf.path[1:]) for leaf in leaves(cls)
                   if leaf.path[0] == "decoding" and leaf.meta.get("cli", True) is not False}
    for name, value in pinned.items():
        given = flat.get(name)
        if given is not None and given != value:
            flag = by_name[name].flag
            raise ValueError(f"--paper sets {flag} {show(value) if not isinstance(value, str) else value}: drop "
                             f"{flag} {given}, or drop --paper to choose your own")
        flat[name] = value
    return flat


# --------------------------------------------------------------------------------------------------
# The command line


def cli_options(cls, *, required: typing.Iterable[str] = (), optional: typing.Iterable[str] = (),
                exclude: typing.Iterable[str] = ()):
    """A decorator adding one click option per setting of `cls` (see the module docstring).

    Every option's click default is None ("not given"): the field's default applies in `from_flat`, and
    is what the help shows. `required` makes optional settings required on this command, `optional`
    the other way round (the command checks them itself).
    """
    import click

    required, optional, exclude = set(required), set(optional), set(exclude)

    option_class = _option_class()

    def decorate(fn):
        for leaf in reversed(leaves(cls)):
            if leaf.name in exclude or leaf.meta.get("cli", True) is False:
                continue
            kwargs = _option_kwargs(leaf, leaf.name in required)
            if leaf.name in optional:
                kwargs.pop("required", None)
            fn = click.option(*_decls(leaf), cls=option_class, **kwargs)(fn)
        return fn

    return decorate


def from_cli(cls, params: dict):
    """The spec a command decorated with cli_options(cls) was given: --paper applied, defaults filled."""
    return from_flat(cls, with_preset(cls, params))


@functools.cache
def _option_class():
    import click

    class Option(click.Option):
        """A click option whose help may be a function (a registry's meanings), called only to show help."""

        def __init__(self, *args, help=None, default_text=None, **kwargs):
            self._help, self._default_text = help, default_text
            super().__init__(*args, help=None if callable(help) else help, **kwargs)

        def get_help_record(self, ctx):
            if callable(self._help):
                self.help = self._help()
            return super().get_help_record(ctx)

        def get_help_extra(self, ctx):
            extra = super().get_help_extra(ctx)
            if self._default_text is not None:  # the field's default (click's own is None: "not given")
                extra["default"] = self._default_text
            return extra

    return Option


def _decls(leaf: Leaf) -> list[str]:
    if leaf.is_bool and (leaf.default is None or leaf.default is True):
        return [f"{leaf.flag}/--no-{leaf.flag.removeprefix('--')}", leaf.name]
    return [leaf.flag, leaf.name]


def _option_kwargs(leaf: Leaf, required: bool) -> dict:
    import click

    meta = leaf.meta
    kw: dict = {"help": meta.get("help") or "", "default": None, "hidden": meta.get("hidden", False)}
    if meta.get("metavar"):
        kw["metavar"] = meta["metavar"]
    if leaf.is_bool:
        if not (leaf.default is None or leaf.default is True):
            kw["is_flag"] = True
    elif leaf.is_tuple:
        kw["multiple"] = bool(meta.get("multiple"))
        if meta.get("choices") and kw["multiple"]:
            kw["type"] = _LazyChoice(meta["choices"])
    else:
        kw["type"] = _param_type(leaf)
    if leaf.default is MISSING or required:
        kw["required"] = True
    else:
        shown = meta.get("default_text")
        if shown is None and leaf.default is not None and leaf.default != () and not leaf.is_bool:
            shown = show(leaf.default) if not isinstance(leaf.default, str) else leaf.default
        if leaf.is_bool and leaf.default is True:
            shown = shown or "on"
        if shown is not None:
            kw["default_text"] = shown
    if meta.get("choices") and not leaf.is_tuple and kw.get("type") is None:
        kw["type"] = _LazyChoice(meta["choices"])
    return kw


def _param_type(leaf: Leaf):
    import click

    meta = leaf.meta
    if meta.get("choices"):
        return _LazyChoice(meta["choices"])
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if leaf.type is int:
        return click.IntRange(lo, hi) if lo is not None or hi is not None else int
    if leaf.type is float:
        if lo is None and hi is None:
            return float
        return click.FloatRange(lo, hi, min_open=bool(meta.get("exclusive_minimum")))
    return str


def _lazy_choice_class():
    import click

    class LazyChoice(click.Choice):
        """click.Choice whose names come from a registry, read when a value is checked or help is shown."""

        def __init__(self, names):
            self._names = names
            super().__init__((), case_sensitive=True)

        @property
        def choices(self):
            return tuple(self._names())

        @choices.setter
        def choices(self, value):  # click's own __init__ assigns it
            pass

    return LazyChoice


def _LazyChoice(names):
    return _lazy_choice_class()(names)


def registry_choice(name: str):
    """A click choice of a registry's names (rules, recipes, formats, backends, tasks, suites), read lazily."""
    return _LazyChoice({"rules": _rules, "recipes": _recipes, "formats": _formats, "backends": _backends,
                        "tasks": _tasks, "suites": _suites}[name])


def parse(command, cls, argv: list[str]):
    """The spec a click command (decorated with cli_options(cls)) would build from `argv`. For round trips."""
    ctx = command.make_context(command.name or "command", list(argv))
    return from_cli(cls, ctx.params)


def make(cls, **flat):
    """`cls` from flat keywords, as the command line gives them: make(DistillSpec, recipe="gsm8k", model=..., out=...).

    The Python twin of the CLI: the same names, defaults and --paper preset.
    """
    leaf_names = {leaf.name for leaf in leaves(cls)}
    unknown = set(flat) - leaf_names - _group_names(cls)
    if unknown:
        raise TypeError(f"{cls.__name__} has no setting(s) {', '.join(sorted(unknown))}")
    groups = _group_classes(cls)
    for name, value in flat.items():  # a group's name takes that group's object (decoding=Decoding(...))
        if name in groups and name not in leaf_names and value is not None and not isinstance(value, groups[name]):
            raise TypeError(f"{name}= takes a {groups[name].__name__}, not {value!r}")
    return from_flat(cls, with_preset(cls, flat))


def _group_classes(cls) -> dict[str, type]:
    out = {}
    for f in fields(cls):
        if f.metadata.get("group"):
            out[f.name] = f.metadata["group"]
            out |= _group_classes(f.metadata["group"])
    return out


def _group_names(cls) -> set[str]:
    return set(_group_classes(cls))


def public(spec, **values):
    """`spec` as a published record shows it: absolute local paths by their name, `values` replacing fields
    (out="runs/name", say). What the card's reproduce command and the published manifest hold."""
    def rewrite(obj):
        changes = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("group"):
                changes[f.name] = rewrite(value)
            elif f.name in values:
                changes[f.name] = values[f.name]
            elif f.metadata.get("record") is False:
                changes[f.name] = f.default
            elif f.metadata.get("path") and isinstance(value, str) and (value.startswith(("/", "~"))):
                changes[f.name] = Path(value).name
        return replace(obj, **changes)

    return rewrite(spec)


__all__ = [
    "Backend", "Decoding", "DistillSpec", "EvalSpec", "GapSpec", "ImportSpec", "Prompt", "RecipeSpec", "Source", "TrainSpec",
    "Training", "differences", "from_dict", "from_flat", "leaves", "make", "replace", "show", "to_argv",
    "to_dict", "with_preset",
]
