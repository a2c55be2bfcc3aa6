"""Publish a checked run as an immutable, versioned dataset, to the Hub or to a local folder; load it back.

    from sdft_data.publish import push, versions, load, read_version_manifest
    push("runs/gsm8k", "my-org/gsm8k-sdft")               # -> v1, then v2, ... one per distinct run
    ds = load("my-org/gsm8k-sdft@v1")                     # a datasets.Dataset, checked against its manifest
    how = read_version_manifest("my-org/gsm8k-sdft@v1")   # the run's manifest plus the `publish` entry

A version is one commit holding everything about it, then a tag `vN` on that
commit; `main` moves to the latest commit. The layout of a version:

    README.md                       the dataset card (sdft_data.card)
    manifest.json                   the run's manifest plus a `publish` entry (version, content hash,
                                    every data file with its rows and sha256)
    data/train-00000-of-0000N.parquet   distilled.parquet, re-sharded by size
    report/...                      the diff report: stats.json, report.md, plots

The same layout goes to `--hub-dir DIR` as `DIR/ORG/NAME/versions/vN/`, written
into a staging folder and renamed into place, so a version appears whole or
not at all; `DIR/ORG/NAME/README.md` is the latest card (edit its metadata
there, as you would on the Hub). Tags and version folders are never moved or
rewritten.

Idempotence: the run's fingerprint and the sha256 of its distilled.parquet are
in every published manifest. Pushing a run that is already a version is a
no-op that says so; a push whose commit landed but whose tag did not (a network
failure between the two) is finished by tagging that commit.

Memory stays bounded by one row group: shards are streamed from
distilled.parquet with pyarrow, and the Hub client uploads files from disk.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .errors import first_line
from .card import (CardInput, VersionRow, check_license, dataset_info, latest_card, model_label, public_spec,
                   read_metadata, render_card, validate_on_hub)
from .rundir import now, read_manifest
from .source import file_sha256

# The Hub's rule for a repo id: namespace/name, letters, digits, "-", "_", "." (no "--" or "..", at most 96 chars).
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
REPO_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")
VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
DEFAULT_MAX_SHARD_BYTES = 500 * 1024 * 1024
# Row groups of about this many uncompressed bytes: big enough for fast scans, small enough to bound memory.
ROW_GROUP_BYTES = 16 * 1024 * 1024
REQUIRED_COLUMNS = ("row_id", "original_response", "rewrite", "accepted", "reason")
LOGIN_HINT = "set HF_TOKEN or run `hf auth login`"


class PublishError(ValueError):
    """A push, pull or load that cannot go on; the message is one line for the user."""


@dataclass
class PushResult:
    """What `push` did. status: "published", "already-published" or "resumed" (an interrupted push tagged)."""

    repo: str
    version: str
    status: str
    rows: int
    location: str  # the commit sha on the Hub, the version folder for --hub-dir
    files: list[str] = field(default_factory=list)

    def message(self) -> str:
        if self.status == "already-published":
            return f"already published as {self.repo}@{self.version}: nothing to do"
        verb = "finished an interrupted push:" if self.status == "resumed" else "published"
        where = self.location if os.sep in self.location else f"commit {self.location[:12]}"
        return f"{verb} {self.repo}@{self.version}, {self.rows:,} rows ({where})"


@dataclass
class VersionInfo(VersionRow):
    """One published version, as listed by `versions`: a versions-table row plus where it lives."""

    revision: str  # commit sha, or the version folder


# -- names --------------------------------------------------------------------------------------


def parse_repo(repo: str) -> str:
    """`repo` itself when it is a valid `org/name`; else ValueError saying what a name looks like.

    The Hub's rule, the same for a --hub-dir folder (a folder's repo must be one the Hub would take):
    letters, digits, '-', '_' and '.', neither '-' nor '.' first or last, no '--' or '..', no '.git'
    at the end, at most 96 characters for the organisation and for the name.
    """
    if not isinstance(repo, str) or repo.count("/") != 1:
        raise ValueError(f"invalid repo name {repo!r}: expected ORG/NAME (letters, digits, '-', '_', '.')")
    for what, part in zip(("organisation", "name"), repo.split("/")):
        if len(part) > 96:
            raise ValueError(f"invalid repo name {repo!r}: its {what} is {len(part)} characters long; the Hub allows "
                             "at most 96")
    if not REPO_RE.match(repo) or "--" in repo or ".." in repo:
        raise ValueError(f"invalid repo name {repo!r}: expected ORG/NAME (letters, digits, '-', '_', '.'; neither "
                         "'-' nor '.' first or last; no '--' or '..')")
    if repo.lower().endswith(".git"):
        raise ValueError(f"invalid repo name {repo!r}: the Hub refuses a name that ends in .git")
    return repo


def parse_spec(spec: str) -> tuple[str, str | None]:
    """'org/name@v2' -> ('org/name', 'v2'); 'org/name' -> ('org/name', None): the latest version."""
    repo, _, version = spec.partition("@")
    parse_repo(repo)
    if version and not VERSION_RE.match(version):
        raise ValueError(f"invalid version {version!r} in {spec!r}: expected ORG/NAME@vN, e.g. {repo}@v1")
    return repo, version or None


def _version_key(name: str) -> int:
    return int(VERSION_RE.match(name).group(1))


# -- the run ------------------------------------------------------------------------------------


@dataclass
class _Run:
    dir: Path
    manifest: dict
    fingerprint: str
    distilled: Path
    content_sha256: str


def open_run(run_dir: str | os.PathLike) -> _Run:
    """The checked run in `run_dir`; ValueError when it is not a run or was never checked."""
    run = Path(run_dir)
    manifest = read_manifest(run)
    distilled = run / "distilled.parquet"
    if "check" not in manifest or not distilled.is_file():
        counts = manifest.get("counts") or {}
        if manifest.get("status") in ("generating", "interrupted") or counts.get("pending"):
            # Not generated yet: `check` would only fail on it too.
            raise ValueError(f"run {run} is not generated yet ({counts.get('pending', 'all')} of "
                             f"{counts.get('rows', '?')} rows pending): run the same `sdft-data distill` command "
                             "again to finish it")
        raise ValueError(f"run {run} was never checked: run `sdft-data check {run}`")
    if not manifest.get("fingerprint"):
        raise ValueError(f"{run}/manifest.json has no fingerprint: not a run made by sdft-data distill")
    pending = int((manifest.get("check") or {}).get("pending") or 0)
    if pending:
        raise ValueError(f"run {run} has {pending} rows not generated yet: finish `sdft-data distill` and check again")
    from .check import verify_distilled

    # The table is what is published and trained on: it must be the one its manifest describes.
    verify_distilled(run, manifest)
    sha = manifest["check"].get("distilled_sha256") or file_sha256(distilled)  # verified equal when recorded
    return _Run(run, manifest, manifest["fingerprint"], distilled, sha)


def _ensure_report(run: _Run, scratch: Path) -> Path | None:
    """RUN_DIR/report, made by sdft_data.diff when the run has none yet (None when diff is unavailable).

    A run the user may not write to (read-only media, another user's folder) gets its report made
    in `scratch` instead: publishing reads a run, it need not change it.
    """
    report = run.dir / "report"
    if not (report / "stats.json").is_file():
        try:
            from .diff import diff_run
        except ImportError:  # diff not installed in this build: publish without the report
            return report if report.is_dir() else None
        if not os.access(run.dir, os.W_OK):
            report = scratch / "report"
        diff_run(run.dir, out=report)
    return report if report.is_dir() else None


# -- staging one version ------------------------------------------------------------------------


@dataclass
class _Shards:
    files: list[dict]  # {"path", "rows", "bytes", "sha256"}
    rows: int
    accepted: int
    by_reason: dict[str, int]
    columns: list[str]
    schema: object = None  # the pyarrow schema of the data files
    raw_bytes: int = 0  # their uncompressed size


SAMPLE_CHARS = 400


def sample_row(distilled: str | os.PathLike) -> dict | None:
    """One row for the card: the first whose rewrite was accepted (else the first), texts cut at SAMPLE_CHARS."""
    import polars as pl

    frame = pl.scan_parquet(distilled)
    row = frame.filter(pl.col("accepted")).head(1).collect()
    if row.height == 0:
        row = frame.head(1).collect()
    if row.height == 0:
        return None
    cut = lambda v: v if not isinstance(v, str) or len(v) <= SAMPLE_CHARS else v[:SAMPLE_CHARS] + " …"  # noqa: E731
    return {k: cut(v) for k, v in row.row(0, named=True).items()}


def write_shards(distilled: str | os.PathLike, data_dir: str | os.PathLike,
                 max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> _Shards:
    """Re-shard distilled.parquet into data_dir/train-0000i-of-0000n.parquet, each at most about max_shard_bytes.

    Streams record batches of about ROW_GROUP_BYTES (uncompressed), one row
    group each, so memory holds one batch whatever the dataset's size; a shard
    closes before the next batch would take it past max_shard_bytes.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    pf = pq.ParquetFile(distilled, pre_buffer=False, buffer_size=1 << 20)
    meta = pf.metadata
    total = meta.num_rows
    raw = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    raw_per_row = max(1, raw // max(total, 1))
    packed_per_row = max(1, os.path.getsize(distilled) // max(total, 1))
    batch_rows = max(1, min(ROW_GROUP_BYTES // raw_per_row, max_shard_bytes // 4 // packed_per_row, max(total, 1)))

    parts: list[tuple[Path, int]] = []
    rows = accepted = 0
    reasons: Counter = Counter()
    writer = sink = None
    shard_rows = 0

    def close():
        nonlocal writer, sink, shard_rows
        if writer is not None:
            writer.close()
            sink.close()
            parts.append((part, shard_rows))
        writer = sink = None
        shard_rows = 0

    try:
        for batch in pf.iter_batches(batch_size=batch_rows):
            if writer is None:
                part = data_dir / f".part-{len(parts):05d}.parquet"
                sink = pa.OSFile(str(part), "wb")
                writer = pq.ParquetWriter(sink, pf.schema_arrow, compression="zstd")
            writer.write_batch(batch, row_group_size=batch.num_rows)
            shard_rows += batch.num_rows
            rows += batch.num_rows
            accepted += int(pc.sum(batch.column("accepted")).as_py() or 0)
            for item in pc.value_counts(batch.column("reason")).to_pylist():
                reasons[item["values"]] += item["counts"]
            written = sink.tell()
            if written + batch_rows * written / shard_rows > max_shard_bytes:
                close()
        if writer is None and not parts:  # an empty dataset still gets one (empty) shard
            part = data_dir / ".part-00000.parquet"
            sink = pa.OSFile(str(part), "wb")
            writer = pq.ParquetWriter(sink, pf.schema_arrow, compression="zstd")
        close()
    finally:
        if writer is not None:
            writer.close()
            sink.close()

    files = []
    for i, (part, n) in enumerate(parts):
        final = data_dir / f"train-{i:05d}-of-{len(parts):05d}.parquet"
        os.replace(part, final)
        files.append({"path": f"data/{final.name}", "rows": n, "bytes": final.stat().st_size,
                      "sha256": file_sha256(final)})
    return _Shards(files, rows, accepted, dict(reasons), pf.schema_arrow.names, pf.schema_arrow, raw)


def _version_info(manifest: dict, revision: str) -> VersionInfo:
    pub = manifest.get("publish") or {}
    model = (manifest.get("fingerprint_inputs") or {}).get("model") or {}
    return VersionInfo(version=pub.get("version", "?"), date=str(pub.get("published_at", ""))[:10],
                       model=model_label(model), fingerprint=manifest.get("fingerprint", "?"),
                       rows=int(pub.get("rows") or 0), rewrite_rate=pub.get("rewrite_rate"), revision=revision)


def _stage(run: _Run, repo: str, version: str, folder: Path, *, previous_readme: str | None,
           previous: list[VersionInfo], license: str | None, max_shard_bytes: int,
           template: str | os.PathLike | None, hub_dir: str | None = None) -> list[str]:
    """Write one version's files into `folder`; return their repo paths."""
    shards = write_shards(run.distilled, folder / "data", max_shard_bytes)
    scratch = Path(tempfile.mkdtemp(prefix="sdft-report-"))
    try:
        return _stage_files(run, repo, version, folder, shards, _ensure_report(run, scratch),
                            previous_readme=previous_readme, previous=previous, license=license, template=template,
                            hub_dir=hub_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _stage_files(run: _Run, repo: str, version: str, folder: Path, shards: _Shards, report: Path | None, *,
                 previous_readme: str | None, previous: list[VersionInfo], license: str | None,
                 template: str | os.PathLike | None, hub_dir: str | None) -> list[str]:
    stats, plots, has_md = {}, [], False
    if report is not None:
        for src in sorted(p for p in report.rglob("*") if p.is_file()):
            dest = folder / "report" / src.relative_to(report)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        if (report / "stats.json").is_file():
            stats = json.loads((report / "stats.json").read_text())
        plots = [f"report/{p.relative_to(report).as_posix()}" for p in sorted(report.rglob("*.png"))]
        has_md = (report / "report.md").is_file()

    manifest = dict(run.manifest)
    if isinstance(manifest.get("spec"), dict):  # a published record names no local absolute path
        manifest["spec"] = public_spec(manifest, repo)
    manifest["publish"] = {
        "repo": repo,
        "version": version,
        "published_at": now(),
        "distilled_sha256": run.content_sha256,
        "rows": shards.rows,
        "accepted": shards.accepted,
        "rewrite_rate": shards.accepted / shards.rows if shards.rows else None,
        "by_reason": shards.by_reason,
        "columns": shards.columns,
        "files": shards.files,
    }
    this = _version_info(manifest, "")
    card = CardInput(
        repo=repo, version=version, manifest=manifest, rows=shards.rows, accepted=shards.accepted,
        by_reason=shards.by_reason, columns=shards.columns, shards=[f["path"] for f in shards.files],
        stats=stats, plots=plots, has_report_md=has_md,
        versions=[*previous, this], license=license,
        dataset_info=dataset_info(shards.schema, shards.rows, shards.raw_bytes, sum(f["bytes"] for f in shards.files)),
        sample=sample_row(run.distilled), hub_dir=hub_dir,
    )
    readme = render_card(card, previous_readme, template)
    (folder / "README.md").write_text(readme, encoding="utf-8")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _dataset_of(manifest: dict) -> str:
    """What a version's rows are, for telling two datasets apart: its recipe (a custom one with its columns)."""
    recipe = (manifest.get("fingerprint_inputs") or {}).get("recipe") or {}
    name = str(recipe.get("name") or "?")
    if name == "custom":
        name += f" ({recipe.get('prompt_column')} -> {recipe.get('response_column')})"
    return name


def _refuse_other_dataset(latest: dict | None, version: str | None, run: _Run, repo: str) -> None:
    """ValueError when the repo's latest version is another recipe's dataset: a new version would switch `main` to it."""
    if not latest or not latest.get("publish"):
        return
    theirs, ours = _dataset_of(latest), _dataset_of(run.manifest)
    if theirs != ours:
        raise PublishError(f"{repo} holds the {theirs} dataset (latest {version or 'version'}) and this run is "
                           f"{ours}: its version would switch `main` to another dataset; publish it to a repo of "
                           "its own")


def _same_run(manifest: dict, run: _Run) -> bool:
    pub = manifest.get("publish") or {}
    return manifest.get("fingerprint") == run.fingerprint and pub.get("distilled_sha256") == run.content_sha256


# -- targets ------------------------------------------------------------------------------------


class _LocalTarget:
    """DIR/ORG/NAME/versions/vN/ folders, each renamed into place whole, never rewritten."""

    def __init__(self, root: str | os.PathLike, repo: str):
        self.repo = repo
        self.dir = Path(root) / repo
        self.versions_dir = self.dir / "versions"

    def versions(self) -> list[tuple[str, dict]]:
        if not self.versions_dir.is_dir():
            return []
        out = []
        for d in self.versions_dir.iterdir():
            if VERSION_RE.match(d.name) and (d / "manifest.json").is_file():
                out.append((d.name, json.loads((d / "manifest.json").read_text())))
        return sorted(out, key=lambda t: _version_key(t[0]))

    def version_dir(self, version: str | None) -> tuple[str, Path]:
        names = [v for v, _ in self.versions()]
        if not names:
            raise PublishError(f"{self.repo} has no versions in {self.dir.parent.parent}")
        version = version or names[-1]
        if version not in names:
            raise PublishError(f"{self.repo} has no version {version}; versions: {', '.join(names)}")
        return version, self.versions_dir / version

    def previous_readme(self) -> str | None:
        path = self.dir / "README.md"
        return path.read_text(encoding="utf-8") if path.is_file() else None

    @contextlib.contextmanager
    def locked(self):
        """Hold DIR/ORG/NAME/.push.lock: a second push into the same repo folder waits for the first."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".push.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
            yield

    @contextlib.contextmanager
    def staging(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self._clean_stale_staging()
        folder = Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=self.dir))
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _clean_stale_staging(self) -> None:
        # A push killed half way leaves its staging folder; it never became a version. Drop it,
        # unless its process is still running (another push in progress).
        for d in self.dir.glob(".staging-*"):
            try:
                pid = int(d.name.split("-")[1])
                os.kill(pid, 0)
                if pid != os.getpid():
                    continue
            except (ValueError, IndexError, ProcessLookupError):
                pass
            except PermissionError:
                continue
            shutil.rmtree(d, ignore_errors=True)

    def publish(self, folder: Path, version: str) -> str:
        for p in folder.rglob("*"):
            if p.is_file():  # immutable once published: read-only files
                p.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        target = self.versions_dir / version
        if target.exists():  # made meanwhile by a writer that does not take the lock (not sdft-data push)
            raise PublishError(f"version {version} of {self.repo} appeared in {self.dir} while this push ran: versions are"
                               " never overwritten; run the same push again to publish as the next version")
        os.rename(folder, target)  # the commit point: the version appears whole
        # The top-level card is the latest version's, with its data files pointed into versions/vN/,
        # so that `load_dataset("DIR/org/name")` reads the latest version, as `main` does on the Hub,
        # and `load_dataset("DIR/org/name/versions/vN")` a pinned one. One rename: never half a card.
        readme = latest_card((target / "README.md").read_text(encoding="utf-8"), f"versions/{version}/")
        tmp = self.dir / ".README.md.tmp"
        tmp.write_text(readme, encoding="utf-8")
        tmp.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
        os.replace(tmp, self.dir / "README.md")
        return str(target)


def _http_status(e: Exception) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


@contextlib.contextmanager
def hub_errors(repo: str, endpoint: str | None = None, *, writing: bool = False):
    """Turn the Hub client's errors into one line for the user (never echoing a token)."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        yield
    except PublishError:
        raise
    except RevisionNotFoundError as e:
        raise PublishError(f"{repo}: revision not found ({first_line(e)})") from None
    except RepositoryNotFoundError:
        # The Hub answers the same for a missing repo and a private one the token may not see.
        raise PublishError(f"dataset repo {repo} not found, or private and your token may not read it ({LOGIN_HINT})") from None
    except HfHubHTTPError as e:
        status = _http_status(e)
        if status == 401:
            raise PermissionError(f"authentication failed for {repo}: {LOGIN_HINT} with a valid token") from None
        if status == 403:
            raise PermissionError(f"your token may not write to {repo}: use a token with write access ({LOGIN_HINT})") from None
        what = "push" if writing else "request"
        tail = "; no new version was created, re-run to finish" if writing else ""
        raise PublishError(f"{what} to {repo} failed: HTTP {status} {first_line(e)}{tail}") from None
    except (ConnectionError, TimeoutError) as e:  # offline mode, sockets; a full disk is not "cannot reach"
        raise PublishError(f"cannot reach the Hub at {endpoint or _default_endpoint()} for {repo}: {first_line(e)}") from None
    except Exception as e:
        if type(e).__module__.startswith(("httpx", "httpcore", "httpx2")):
            raise PublishError(f"cannot reach the Hub at {endpoint or _default_endpoint()} for {repo}: {first_line(e)}") from None
        raise


def _default_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


class _HubTarget:
    """A dataset repo on the Hub (or anything speaking its API): one commit and one tag per version."""

    def __init__(self, repo: str, *, endpoint: str | None, token: str | None, write: bool):
        from huggingface_hub import HfApi, get_token

        self.repo = repo
        self.endpoint = endpoint
        token = token or get_token()
        if write and not token:
            raise PermissionError(f"no Hugging Face token to push {repo}: {LOGIN_HINT}")
        self.api = HfApi(endpoint=endpoint, token=token)
        self._tmp = tempfile.TemporaryDirectory(prefix="sdft-hub-")

    def close(self) -> None:
        self._tmp.cleanup()

    def refs(self) -> tuple[dict[str, str], str | None]:
        refs = self.api.list_repo_refs(self.repo, repo_type="dataset")
        tags = {t.name: t.target_commit for t in refs.tags}
        main = next((b.target_commit for b in refs.branches if b.name == "main"), None)
        return tags, main

    def read(self, revision: str, path: str) -> bytes | None:
        from huggingface_hub.errors import EntryNotFoundError

        try:
            local = self.api.hf_hub_download(self.repo, path, repo_type="dataset", revision=revision,
                                             cache_dir=self._tmp.name)
        except EntryNotFoundError:
            return None
        return Path(local).read_bytes()

    def versions(self, tags: dict[str, str]) -> list[tuple[str, dict, str]]:
        out = []
        for name in sorted((t for t in tags if VERSION_RE.match(t)), key=_version_key):
            raw = self.read(tags[name], "manifest.json")
            out.append((name, json.loads(raw) if raw else {}, tags[name]))
        return out


# -- push / versions / pull / load --------------------------------------------------------------


def push(run_dir: str | os.PathLike, repo: str, *, local: str | os.PathLike | None = None, private: bool = False,
         license: str | None = None, tag: str | None = None, endpoint: str | None = None, token: str | None = None,
         max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, template: str | os.PathLike | None = None,
         allow_no_rewrites: bool = False) -> PushResult:
    """Publish the checked run in `run_dir` as the next version of `repo` (`org/name`).

    To the Hub (huggingface_hub; `endpoint` defaults to HF_ENDPOINT, `token` to
    HF_TOKEN or the token saved by `hf auth login`), or, with `local`, into the
    folder `local/org/name/`. `tag` asks for a given version name (vN) instead of
    the next one; an existing tag is refused, never moved. `license` overrides
    the license inherited from the recipe's source. A run with no accepted
    rewrite is the original dataset under a new name: refused unless
    `allow_no_rewrites`. Returns a PushResult; raises ValueError/PermissionError
    with one line on bad input or a failed push.
    """
    parse_repo(repo)
    if tag is not None and not VERSION_RE.match(tag):
        raise ValueError(f"invalid version tag {tag!r}: expected v1, v2, ...")
    if max_shard_bytes < 1024:
        raise ValueError("max_shard_bytes must be at least 1024")
    run = open_run(run_dir)
    check = run.manifest.get("check") or {}
    if check.get("accepted") == 0 and not allow_no_rewrites:
        reasons = ", ".join(f"{k} {v}" for k, v in list((check.get("by_reason") or {}).items())[:3])
        hint = "raise --max-new-tokens in a new run, or " if "truncated" in (check.get("by_reason") or {}) else ""
        raise ValueError(f"no rewrite of run {run.dir} was accepted ({reasons}): the data would be the original "
                         f"dataset; {hint}pass --allow-no-rewrites to publish it anyway")
    if local is not None:
        if license is not None:  # the Hub checks its own cards; a folder gets the same refusal here
            check_license(license)
        return _push_local(run, repo, Path(local), license=license, tag=tag, max_shard_bytes=max_shard_bytes,
                           template=template)
    target = _HubTarget(repo, endpoint=endpoint, token=token, write=True)
    try:
        with hub_errors(repo, endpoint, writing=True):
            return _push_hub(run, repo, target, private=private, license=license, tag=tag,
                             max_shard_bytes=max_shard_bytes, template=template)
    finally:
        target.close()


def _next_version(names: list[str]) -> str:
    numbers = [_version_key(n) for n in names if VERSION_RE.match(n)]
    return f"v{max(numbers, default=0) + 1}"


def _push_local(run: _Run, repo: str, root: Path, *, license, tag, max_shard_bytes, template) -> PushResult:
    target = _LocalTarget(root, repo)
    with target.locked():  # one push at a time into a repo folder: each sees the versions the others made
        return _push_local_locked(run, repo, root, target, license=license, tag=tag, max_shard_bytes=max_shard_bytes,
                                  template=template)


def _push_local_locked(run: _Run, repo: str, root: Path, target: _LocalTarget, *, license, tag, max_shard_bytes,
                       template) -> PushResult:
    existing = target.versions()
    for name, manifest in existing:
        if _same_run(manifest, run):
            return PushResult(repo, name, "already-published", int(manifest["publish"]["rows"]),
                              str(target.versions_dir / name))
    if existing:
        _refuse_other_dataset(existing[-1][1], existing[-1][0], run, repo)
    names = [n for n, _ in existing]
    if tag is not None and (target.versions_dir / tag).exists():
        raise PublishError(f"version {tag} of {repo} already exists in {root}: versions are never overwritten;"
                           f" leave out --tag to publish as {_next_version(names)}")
    version = tag or _next_version(names)
    previous = [_version_info(m, str(target.versions_dir / n)) for n, m in existing]
    with target.staging() as folder:
        # The card names the folder as it was given (an absolute one by its name, like every local path).
        shown = root.name if root.is_absolute() else str(root)
        files = _stage(run, repo, version, folder, previous_readme=target.previous_readme(), previous=previous,
                       license=license, max_shard_bytes=max_shard_bytes, template=template, hub_dir=shown)
        card_license = read_metadata((folder / "README.md").read_text(encoding="utf-8")).get("license")
        for lic in card_license if isinstance(card_license, list) else [card_license] if card_license else []:
            # Not given with --license: kept from the folder's README.md, where it may have been edited by hand.
            check_license(str(lic), str(target.dir / "README.md"))
        rows = json.loads((folder / "manifest.json").read_text())["publish"]["rows"]
        location = target.publish(folder, version)
    return PushResult(repo, version, "published", rows, location, files)


def _push_hub(run: _Run, repo: str, target: _HubTarget, *, private, license, tag, max_shard_bytes,
              template) -> PushResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import HfHubHTTPError

    from huggingface_hub.errors import RepositoryNotFoundError

    api = target.api
    try:
        tags, main = target.refs()
        exists = True
    except RepositoryNotFoundError:  # created below, once the card has passed the Hub's check
        tags, main, exists = {}, None, False
    existing = target.versions(tags)
    for name, manifest, sha in existing:
        if _same_run(manifest, run):
            return PushResult(repo, name, "already-published", int(manifest["publish"]["rows"]), sha)

    # A previous push of this run whose commit landed but whose tag did not: tag that commit now.
    head_manifest = json.loads(target.read(main, "manifest.json") or b"{}") if main else {}
    pending = (head_manifest.get("publish") or {}).get("version")
    if _same_run(head_manifest, run) and pending and pending not in tags and tag in (None, pending):
        api.create_tag(repo, tag=pending, revision=main, repo_type="dataset",
                       tag_message=f"sdft: run {run.fingerprint[:12]}")
        return PushResult(repo, pending, "resumed", int(head_manifest["publish"]["rows"]), main)
    _refuse_other_dataset(head_manifest, pending, run, repo)

    current = api.list_repo_files(repo, repo_type="dataset", revision=main) if main else []
    foreign = [p for p in current if p not in (".gitattributes", "README.md")]
    if foreign and not head_manifest.get("publish"):
        # Publishing replaces data/ and report/: never do that to a dataset sdft-data did not publish.
        raise PublishError(f"{repo} already holds files not published by sdft-data ({foreign[0]}, ...):"
                           " choose another repo")
    if tag is not None and tag in tags:
        raise PublishError(f"tag {tag} already exists on {repo} and is never moved; leave out --tag to publish"
                           f" as {_next_version(list(tags))}")
    version = tag or _next_version(list(tags))
    previous = [_version_info(m, sha) for _, m, sha in existing]
    readme = target.read(main, "README.md") if main else None
    with tempfile.TemporaryDirectory(prefix="sdft-push-") as tmp:
        folder = Path(tmp)
        files = _stage(run, repo, version, folder, previous_readme=readme.decode("utf-8") if readme else None,
                       previous=previous, license=license, max_shard_bytes=max_shard_bytes, template=template)
        # The Hub's own check of the card, before anything is created or uploaded.
        validate_on_hub((folder / "README.md").read_text(encoding="utf-8"), target.endpoint)
        if not exists:
            api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        ops: list = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f)) for f in files]
        # Files of the previous version that this one does not have (fewer shards, a plot gone) must go,
        # or `data/train-*` would mix versions. Other files (a user's LICENSE, .gitattributes) stay.
        ops += [CommitOperationDelete(path_in_repo=p) for p in current
                if p.startswith(("data/", "report/")) and p not in files]
        rows = json.loads((folder / "manifest.json").read_text())["publish"]["rows"]
        try:
            commit = api.create_commit(
                repo, operations=ops, repo_type="dataset", parent_commit=main,
                commit_message=f"Publish {version}: {rows:,} rows from run {run.fingerprint[:12]}",
                commit_description=f"sdft-data push of run fingerprint {run.fingerprint}",
            )
        except HfHubHTTPError as e:
            if _http_status(e) == 412:
                raise PublishError(f"{repo} changed while pushing (main moved): re-run to publish on top of it") from None
            raise
    try:
        api.create_tag(repo, tag=version, revision=commit.oid, repo_type="dataset",
                       tag_message=f"sdft: run {run.fingerprint[:12]}")
    except HfHubHTTPError as e:
        if _http_status(e) == 409:
            raise PublishError(f"tag {version} already exists on {repo} and is never moved; re-run to publish"
                               " this run as the next version") from None
        raise
    return PushResult(repo, version, "published", rows, commit.oid, files)


def versions(repo: str, *, local: str | os.PathLike | None = None, endpoint: str | None = None,
             token: str | None = None) -> list[VersionInfo]:
    """Every published version of `repo`, oldest first."""
    parse_repo(repo)
    if local is not None:
        target = _LocalTarget(local, repo)
        return [_version_info(m, str(target.versions_dir / n)) for n, m in target.versions()]
    target = _HubTarget(repo, endpoint=endpoint, token=token, write=False)
    try:
        with hub_errors(repo, endpoint):
            tags, _ = target.refs()
            return [_version_info(m, sha) for _, m, sha in target.versions(tags)]
    finally:
        target.close()


def verify_version(folder: str | os.PathLike, *, data_only: bool = False) -> dict:
    """Check a downloaded version against its manifest.json (every data file's sha256 and rows); return the manifest."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise PublishError(f"{folder} has no manifest.json: not a version published by sdft-data push")
    manifest = json.loads((folder / "manifest.json").read_text())
    pub = manifest.get("publish") or {}
    files = pub.get("files")
    if not files:
        raise PublishError(f"{folder}/manifest.json lists no data files: not a version published by sdft-data push")
    total = 0
    for f in files:
        path = folder / f["path"]
        if not path.is_file():
            raise PublishError(f"{f['path']} is missing from {folder}")
        if path.stat().st_size != f["bytes"] or file_sha256(path) != f["sha256"]:
            raise PublishError(f"{f['path']} does not match its manifest (sha256 differs): corrupt or changed")
        rows = pq.ParquetFile(path).metadata.num_rows
        if rows != f["rows"]:
            raise PublishError(f"{f['path']} has {rows} rows, its manifest says {f['rows']}")
        total += rows
    if total != pub.get("rows"):
        raise PublishError(f"{folder} holds {total} rows, its manifest says {pub.get('rows')}")
    return manifest


def _resolve_version(target: _HubTarget, version: str | None) -> tuple[str, str]:
    tags, _ = target.refs()
    names = sorted((t for t in tags if VERSION_RE.match(t)), key=_version_key)
    if not names:
        raise PublishError(f"{target.repo} has no versions (no v1, v2, ... tags)")
    version = version or names[-1]
    if version not in tags:
        raise PublishError(f"{target.repo} has no version {version}; versions: {', '.join(names)}")
    return version, tags[version]


def read_version_manifest(spec: str, *, local: str | os.PathLike | None = None, endpoint: str | None = None,
                          token: str | None = None) -> dict:
    """The published manifest.json of `org/name@vN` (or the latest version): how that version was made."""
    repo, version = parse_spec(spec)
    if local is not None:
        _, folder = _LocalTarget(local, repo).version_dir(version)
        return json.loads((folder / "manifest.json").read_text())
    target = _HubTarget(repo, endpoint=endpoint, token=token, write=False)
    try:
        with hub_errors(repo, endpoint):
            version, sha = _resolve_version(target, version)
            raw = target.read(sha, "manifest.json")
    finally:
        target.close()
    if raw is None:
        raise PublishError(f"{repo}@{version} has no manifest.json: not a version published by sdft-data push")
    return json.loads(raw)


def pull(spec: str, out: str | os.PathLike, *, local: str | os.PathLike | None = None, endpoint: str | None = None,
         token: str | None = None) -> tuple[str, Path]:
    """Download one version (`org/name@v2`, or the latest) into `out`, checked against its manifest.

    Returns (version, out). `out` must be empty or not exist.
    """
    repo, version = parse_spec(spec)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} exists and is not empty: choose another folder")
    if local is not None:
        version, src = _LocalTarget(local, repo).version_dir(version)
        # copyfile, not copy2: the copy is the user's to edit, not read-only like the published folder
        shutil.copytree(src, out, copy_function=shutil.copyfile, dirs_exist_ok=True)
    else:
        target = _HubTarget(repo, endpoint=endpoint, token=token, write=False)
        try:
            with hub_errors(repo, endpoint):
                version, sha = _resolve_version(target, version)
                target.api.snapshot_download(repo, repo_type="dataset", revision=sha, local_dir=out)
        finally:
            target.close()
        shutil.rmtree(out / ".cache", ignore_errors=True)  # the client's download bookkeeping
    verify_version(out)
    return version, out


def load(spec: str, *, local: str | os.PathLike | None = None, endpoint: str | None = None,
         token: str | None = None, cache_dir: str | os.PathLike | None = None):
    """`org/name@v2` (or `org/name` for the latest) as a `datasets.Dataset`, from the Hub or `local`.

    Downloads only manifest.json and data/, checks every data file against the
    manifest (sha256, rows), and raises PublishError when anything differs.
    """
    import datasets

    repo, version = parse_spec(spec)
    if local is not None:
        version, folder = _LocalTarget(local, repo).version_dir(version)
    else:
        target = _HubTarget(repo, endpoint=endpoint, token=token, write=False)
        try:
            with hub_errors(repo, endpoint):
                version, sha = _resolve_version(target, version)
                folder = Path(target.api.snapshot_download(
                    repo, repo_type="dataset", revision=sha, allow_patterns=["manifest.json", "data/*"],
                    cache_dir=str(Path(cache_dir) / "hub") if cache_dir else None))
        finally:
            target.close()
    manifest = verify_version(folder)
    pub = manifest["publish"]
    ds = datasets.load_dataset("parquet", data_files=[str(folder / f["path"]) for f in pub["files"]],
                               split="train", cache_dir=str(Path(cache_dir) / "datasets") if cache_dir else None)
    if ds.num_rows != pub["rows"]:
        raise PublishError(f"{repo}@{version} loaded {ds.num_rows} rows, its manifest says {pub['rows']}")
    return ds
