"""A loopback Hugging Face Hub: the subset of the Hub's HTTP API that the real clients need.

The tests, benchmarks and `make demo` run the real `huggingface_hub` (HfApi,
hf_hub_download, snapshot_download, HfFileSystem) and `datasets`
(`load_dataset(repo, revision=...)`, `Dataset.push_to_hub`) against this
server, unchanged. Nothing here is mocked at the client level: repos hold real
commits (40-hex shas) with parents, branches and tags are real refs, file
contents live on disk under `root/objects/<sha256>`, and writes need a bearer
token.

Endpoints (see DESIGN.md section 3): repo create, validate-yaml, whoami,
preupload, NDJSON commit (regular, LFS and delete lines), tag, refs, commits,
repo info (per revision), tree (paginated by `Link` header), paths-info,
resolve (HEAD/GET with Range), and the LFS batch API with its upload and verify
URLs. 404s carry `X-Error-Code` (RepoNotFound, RevisionNotFound,
EntryNotFound), as the clients expect.

    with LoopbackHub(tokens={"hf_write": "write", "hf_read": "read"}) as hub, hub_env(hub.url, cache_dir=tmp):
        ...

Faults for tests: `hub.fail("tag", status=500)` makes the next request to that
route fail, so a push that breaks half way can be exercised for real.

Run standalone (benchmarks use this, so that the server's memory is not counted
against the client): `python tests/helpers/hub_server.py --root DIR --token T`
prints `{"url": ..., "env": {...}}` on its first line and serves until killed; a
client process needs that env (HF_ENDPOINT, and HF_HUB_DISABLE_XET=1: this Hub
speaks plain LFS, not Xet).
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

# Files the Hub stores with LFS by default (a dataset repo's initial .gitattributes).
LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.gz", "*.h5", "*.lz4", "*.npy", "*.npz", "*.onnx",
    "*.parquet", "*.pickle", "*.pkl", "*.pt", "*.pth", "*.safetensors", "*.tar", "*.tgz", "*.zip", "*.zst",
    "*.jpg", "*.jpeg", "*.png", "*.webp", "*.mp3", "*.wav", "*.ogg",
)
# The Hub sends any file of 10 MB or more to LFS, whatever its name.
LFS_MIN_SIZE = 10 * 1024 * 1024
REPO_TYPES = ("model", "dataset", "space")
CHUNK = 1 << 20


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def git_blob_oid(data: bytes) -> str:
    """What `git hash-object` gives for these bytes (the Hub's oid of a regular file)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Entry:
    """One file in a commit's tree."""

    path: str
    size: int
    sha256: str  # where the content lives: root/objects/<sha256>
    oid: str  # git blob oid (of the pointer for LFS files), as the Hub reports it
    lfs: bool
    commit: str  # the commit that last changed this path
    commit_title: str
    commit_date: str


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, Entry]
    title: str
    message: str
    date: str
    author: str


@dataclass
class Repo:
    type: str
    id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class HubError(Exception):
    """An HTTP error answer: status, one-line message, and the Hub's X-Error-Code when it has one."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class LoopbackHub:
    """The Hub on 127.0.0.1, in a thread. A context manager; `url` is the endpoint to use.

    tokens maps a bearer token to its role, "write" or "read". Writes need a
    write token; reads of a private repo need any valid token; a token that is
    not in the map gets 401 "Invalid credentials", as on the Hub.
    """

    def __init__(self, tokens: dict[str, str] | None = None, root: str | os.PathLike | None = None,
                 user: str = "tester", page_size: int = 1000, port: int = 0):
        self.tokens = dict(tokens if tokens is not None else {"hf_loopback_write": "write"})
        self.user = user
        self.page_size = page_size
        self._own_root = root is None
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="loopback-hub-"))
        (self.root / "objects").mkdir(parents=True, exist_ok=True)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, route, status), for assertions
        self._faults: dict[str, list[int]] = {}
        self._tickets: dict[str, tuple[str, int]] = {}
        self._lock = threading.RLock()
        self._port = port
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> "LoopbackHub":
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="loopback-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test helpers ----------------------------------------------------------------------------

    def fail(self, route: str, status: int = 500, times: int = 1) -> None:
        """Answer the next `times` requests to `route` (e.g. "commit", "tag", "lfs-upload") with `status`."""
        with self._lock:
            self._faults.setdefault(route, []).extend([status] * times)

    def repo(self, repo_id: str, repo_type: str = "dataset") -> Repo:
        return self.repos[(repo_type, repo_id)]

    def create_repo(self, repo_id: str, repo_type: str = "dataset", private: bool = False) -> Repo:
        """Create a repo with the Hub's initial commit (a .gitattributes), as `POST /api/repos/create` does."""
        with self._lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, "You already created this repo")
            repo = Repo(type=repo_type, id=repo_id, private=private, created_at=_now())
            gitattributes = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
            commit = self._new_commit(repo, None, "initial commit", "", "system")
            self._put_regular(commit, ".gitattributes", gitattributes)
            repo.commits[commit.oid] = commit
            repo.branches["main"] = commit.oid
            self.repos[(repo_type, repo_id)] = repo
            return repo

    # -- storage ---------------------------------------------------------------------------------

    def object_path(self, sha256: str) -> Path:
        return self.root / "objects" / sha256

    def _new_commit(self, repo: Repo, parent: str | None, title: str, message: str, author: str) -> Commit:
        date = _now()
        files = dict(repo.commits[parent].files) if parent else {}
        seed = f"{repo.id}\n{parent}\n{title}\n{date}\n{secrets.token_hex(8)}".encode()
        return Commit(oid=hashlib.sha1(seed).hexdigest(), parent=parent, files=files, title=title,
                      message=message, date=date, author=author)

    def _put_regular(self, commit: Commit, path: str, data: bytes) -> None:
        sha = hashlib.sha256(data).hexdigest()
        target = self.object_path(sha)
        if not target.exists():
            tmp = target.with_name(f".{sha}.{secrets.token_hex(4)}")
            tmp.write_bytes(data)
            os.replace(tmp, target)
        commit.files[path] = Entry(path=path, size=len(data), sha256=sha, oid=git_blob_oid(data), lfs=False,
                                   commit=commit.oid, commit_title=commit.title, commit_date=commit.date)

    def _put_lfs(self, commit: Commit, path: str, sha: str, size: int) -> None:
        target = self.object_path(sha)
        if not target.exists() or target.stat().st_size != size:
            raise HubError(422, f"LFS object {sha} for {path} was never uploaded")
        commit.files[path] = Entry(path=path, size=size, sha256=sha, oid=git_blob_oid(lfs_pointer(sha, size)),
                                   lfs=True, commit=commit.oid, commit_title=commit.title, commit_date=commit.date)

    # -- lookups ---------------------------------------------------------------------------------

    def _get_repo(self, repo_type: str, repo_id: str, role: str | None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        # The Hub answers the same for a missing repo and a private one you may not see.
        if repo is None or (repo.private and role is None):
            raise HubError(401 if role is None else 404, "Repository not found", "RepoNotFound")
        return repo

    def _resolve(self, repo: Repo, revision: str) -> Commit:
        for ref in (revision, revision.removeprefix("refs/heads/"), revision.removeprefix("refs/tags/")):
            if ref in repo.branches:
                return repo.commits[repo.branches[ref]]
            if ref in repo.tags:
                return repo.commits[repo.tags[ref]]
        if revision in repo.commits:
            return repo.commits[revision]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


def _dirs_of(files: dict[str, Entry]) -> set[str]:
    dirs = set()
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return dirs


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to a method of this class; every answer carries a Content-Length."""

    hub: LoopbackHub
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackHub/1.0"

    def log_message(self, format, *args):  # noqa: A002 - the tests read hub.requests, not stderr
        pass

    # -- plumbing --------------------------------------------------------------------------------

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        self.query = parse_qs(parts.query)
        self.segments = parts.path.split("/")[1:]
        self._body_read = False
        route, handler, args = self._route(method)
        status = 500
        try:
            with self.hub._lock:
                faults = self.hub._faults.get(route)
                fault = faults.pop(0) if faults else None
            if fault is not None:
                raise HubError(fault, f"injected fault on {route}")
            if handler is None:
                raise HubError(404, f"no route for {method} {parts.path}")
            status = handler(*args) or 200
        except HubError as e:
            status = e.status
            headers = {"X-Error-Message": e.message}
            if e.code:
                headers["X-Error-Code"] = e.code
            self._json({"error": e.message}, status, headers)
        except Exception as e:  # a bug here must show up as a 500 in the client, not a hung socket
            status = 500
            self._json({"error": f"{type(e).__name__}: {e}"}, 500)
        finally:
            if not self._body_read and self.headers.get("Content-Length", "0") != "0":
                self.close_connection = True
            with self.hub._lock:
                self.hub.requests.append((method, route, status))

    def _route(self, method: str):
        s = self.segments
        if s[:1] == ["api"]:
            if s[1:3] == ["repos", "create"] and method == "POST":
                return "create", self._create_repo, ()
            if s[1:2] == ["validate-yaml"] and method == "POST":
                return "validate-yaml", self._validate_yaml, ()
            if s[1:2] == ["whoami-v2"] and method == "GET":
                return "whoami", self._whoami, ()
            if len(s) == 2 and s[1].endswith("s") and s[1][:-1] in REPO_TYPES and method == "GET":
                return "list", self._list, (s[1][:-1],)
            if len(s) >= 4 and s[1].endswith("s") and s[1][:-1] in REPO_TYPES:
                repo_type, repo_id, rest = s[1][:-1], f"{unquote(s[2])}/{unquote(s[3])}", s[4:]
                if not rest and method == "GET":
                    return "info", self._info, (repo_type, repo_id, "main")
                if rest[:1] == ["revision"] and len(rest) >= 2 and method == "GET":
                    return "info", self._info, (repo_type, repo_id, unquote("/".join(rest[1:])))
                if rest == ["refs"] and method == "GET":
                    return "refs", self._refs, (repo_type, repo_id)
                if len(rest) >= 2:
                    action, rev = rest[0], unquote(rest[1])
                    sub = unquote("/".join(rest[2:]))
                    table = {
                        ("POST", "preupload"): self._preupload, ("POST", "commit"): self._commit,
                        ("POST", "tag"): self._tag, ("GET", "tree"): self._tree,
                        ("POST", "paths-info"): self._paths_info, ("GET", "commits"): self._commits,
                    }
                    if (method, action) in table:
                        return action, table[(method, action)], (repo_type, repo_id, rev, sub)
            return "api", None, ()
        if s[:2] == ["_lfs", "upload"] and len(s) == 4 and method == "PUT":
            return "lfs-upload", self._lfs_upload, (s[2], s[3])
        if s[:2] == ["_lfs", "verify"] and method == "POST":
            return "lfs-verify", self._lfs_verify, ()
        # Typed repos have a prefix (datasets/, spaces/); models have none.
        repo_type, rest = ("model", s)
        if s and s[0] in ("datasets", "spaces") and len(s) >= 3:
            repo_type, rest = s[0][:-1], s[1:]
        if len(rest) >= 6 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
            return "lfs-batch", self._lfs_batch, (repo_type, f"{rest[0]}/{rest[1][:-4]}")
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            path = unquote("/".join(rest[4:]))
            return "resolve", self._resolve_file, (repo_type, f"{unquote(rest[0])}/{unquote(rest[1])}",
                                                  unquote(rest[3]), path, method == "HEAD")
        return "other", None, ()

    def _read_body(self) -> bytes:
        self._body_read = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return b"".join(self._iter_chunked())
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def _iter_body(self):
        """The request body in pieces of at most CHUNK bytes, plain or chunked (uploads stream through here)."""
        self._body_read = True
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            yield from self._iter_chunked()
            return
        left = int(self.headers.get("Content-Length", "0"))
        while left > 0:
            piece = self.rfile.read(min(CHUNK, left))
            if not piece:
                raise HubError(400, "body shorter than Content-Length")
            left -= len(piece)
            yield piece

    def _iter_chunked(self):
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            left = size
            while left > 0:
                piece = self.rfile.read(min(CHUNK, left))
                left -= len(piece)
                yield piece
            self.rfile.readline()

    def _json_body(self) -> dict:
        try:
            return json.loads(self._read_body() or b"{}")
        except json.JSONDecodeError as e:
            raise HubError(400, f"invalid JSON body: {e}") from None

    def _json(self, payload, status: int = 200, headers: dict | None = None) -> int:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection or (not self._body_read and self.headers.get("Content-Length", "0") != "0"):
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return status

    # -- auth ------------------------------------------------------------------------------------

    def _role(self) -> str | None:
        header = self.headers.get("Authorization")
        if not header:
            return None
        token = header.split(" ", 1)[1].strip() if " " in header else header.strip()
        role = self.hub.tokens.get(token)
        if role is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        return role

    def _require_write(self) -> str:
        role = self._role()
        if role is None:
            raise HubError(401, "You must be authenticated to write to the Hub")
        if role != "write":
            raise HubError(403, "You don't have the rights to write with this token (read-only)")
        return role

    # -- base url for links ----------------------------------------------------------------------

    @property
    def base(self) -> str:
        return self.hub.url

    # -- api: repos, yaml, whoami -----------------------------------------------------------------

    def _create_repo(self):
        self._require_write()
        body = self._json_body()
        repo_type = body.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise HubError(400, f"invalid repo type {repo_type!r}")
        name, org = body.get("name"), body.get("organization") or self.hub.user
        if not name or not re.fullmatch(r"[\w.-]+", name) or not re.fullmatch(r"[\w.-]+", org):
            raise HubError(400, f"invalid repo name {org}/{name}")
        private = body.get("private") or body.get("visibility") == "private"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.base}/{prefix}{org}/{name}"
        try:
            self.hub.create_repo(f"{org}/{name}", repo_type, bool(private))
        except HubError as e:  # the Hub's 409 still says where the repo is (the client reads it)
            return self._json({"error": e.message, "url": url}, e.status, {"X-Error-Message": e.message})
        return self._json({"url": url, "name": f"{org}/{name}"})

    def _validate_yaml(self):
        self._role()
        body = self._json_body()
        errors = metadata_errors(body.get("content", ""), body.get("repoType") or "model")
        if errors:
            return self._json({"errors": [{"message": m} for m in errors], "warnings": []}, 400)
        return self._json({"errors": [], "warnings": []})

    def _whoami(self):
        role = self._role()
        if role is None:
            raise HubError(401, "Invalid user token.")
        return self._json({"type": "user", "name": self.hub.user, "orgs": [],
                           "auth": {"type": "access_token", "accessToken": {"displayName": "loopback", "role": role}}})

    # -- api: reading --------------------------------------------------------------------------

    def _info(self, repo_type, repo_id, revision):
        role = self._role()
        with self.hub._lock:
            repo = self.hub._get_repo(repo_type, repo_id, role)
            commit = self.hub._resolve(repo, revision)
        blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for e in sorted(commit.files.values(), key=lambda e: e.path):
            sib = {"rfilename": e.path}
            if blobs:
                sib.update(size=e.size, blobId=e.oid)
                if e.lfs:
                    sib["lfs"] = {"size": e.size, "sha256": e.sha256, "pointerSize": len(lfs_pointer(e.sha256, e.size))}
            siblings.append(sib)
        card = _front_matter(self.hub, commit.files.get("README.md"))
        return self._json({
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "author": repo_id.split("/")[0],
            "sha": commit.oid, "lastModified": commit.date, "createdAt": repo.created_at, "private": repo.private,
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": _repo_tags(card),
            "cardData": card, "siblings": siblings, "usedStorage": sum(e.size for e in commit.files.values()),
        })

    def _list(self, repo_type):
        """GET /api/datasets (models, spaces): HfApi.list_datasets' query, paginated by `Link` header.

        search: every value a case-insensitive substring of the repo id; filter:
        every value one of the repo's tags (the card's `tags` plus `license:`,
        `language:`, `task_categories:`, `size_categories:` ones, as the Hub
        derives them); author: the namespace; sort (lastModified, createdAt,
        id) with direction -1 (default) or 1; full or expand=cardData add the
        card's metadata. Private repos are listed only for a valid token.
        """
        role = self._role()
        q = self.query
        searches = [v.lower() for v in q.get("search", [])]
        filters = q.get("filter", [])
        author = q.get("author", [None])[0]
        full = q.get("full", ["false"])[0].lower() in ("1", "true")
        expand = set(q.get("expand", []) + q.get("expand[]", []))
        with self.hub._lock:
            repos = [r for (t, _), r in self.hub.repos.items() if t == repo_type and (role or not r.private)]
            found = []
            for repo in repos:
                head = repo.commits.get(repo.branches.get("main", ""))
                card = _front_matter(self.hub, head.files.get("README.md")) if head else None
                tags = _repo_tags(card)
                if searches and not all(v in repo.id.lower() for v in searches):
                    continue
                if not all(f in tags for f in filters) or (author and repo.id.split("/")[0] != author):
                    continue
                item = {"_id": hashlib.sha1(repo.id.encode()).hexdigest()[:24], "id": repo.id}
                basic = {"author": repo.id.split("/")[0], "sha": head.oid if head else None,
                         "lastModified": head.date if head else repo.created_at, "createdAt": repo.created_at,
                         "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                         "tags": tags}
                item.update({k: v for k, v in basic.items() if not expand or k in expand})
                if full or "cardData" in expand:
                    item["cardData"] = card
                found.append(item)
        sort = q.get("sort", [None])[0]
        if sort in ("lastModified", "createdAt", "id"):
            reverse = q.get("direction", ["-1"])[0] != "1"
            found.sort(key=lambda i: str(i.get(sort) or ""), reverse=reverse)
        else:
            found.sort(key=lambda i: i["id"])
        limit = int(q.get("limit", ["0"])[0] or 0)
        if limit:
            found = found[:limit]
        start = int(q.get("cursor", ["0"])[0] or 0)
        page = found[start:start + self.hub.page_size]
        headers = {}
        if start + self.hub.page_size < len(found):
            params = [(k, v) for k, vs in q.items() if k != "cursor" for v in vs]
            params.append(("cursor", str(start + self.hub.page_size)))
            query = "&".join(f"{quote(k)}={quote(v, safe='')}" for k, v in params)
            headers["Link"] = f'<{self.base}/api/{repo_type}s?{query}>; rel="next"'
        return self._json(page, headers=headers)

    def _refs(self, repo_type, repo_id):
        role = self._role()
        with self.hub._lock:
            repo = self.hub._get_repo(repo_type, repo_id, role)
            branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": c} for n, c in repo.branches.items()]
            tags = [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": c} for n, c in repo.tags.items()]
        return self._json({"branches": branches, "converts": [], "tags": tags, "pullRequests": []})

    def _commits(self, repo_type, repo_id, revision, _sub):
        role = self._role()
        out = []
        with self.hub._lock:
            repo = self.hub._get_repo(repo_type, repo_id, role)
            commit = self.hub._resolve(repo, revision)
            while commit is not None:
                out.append({"id": commit.oid, "title": commit.title, "message": commit.message,
                            "date": commit.date, "authors": [{"user": commit.author}]})
                commit = repo.commits.get(commit.parent) if commit.parent else None
        return self._json(out)

    def _entry_json(self, e: Entry, expand: bool) -> dict:
        d = {"type": "file", "oid": e.oid, "size": e.size, "path": e.path}
        if e.lfs:
            d["lfs"] = {"oid": e.sha256, "size": e.size, "pointerSize": len(lfs_pointer(e.sha256, e.size))}
        if expand:
            d["lastCommit"] = {"id": e.commit, "title": e.commit_title, "date": e.commit_date}
            d["securityFileStatus"] = {"status": "safe", "avScan": {"virusFound": False, "virusNames": None},
                                       "pickleImportScan": None}
        return d

    def _dir_json(self, files: dict[str, Entry], path: str, expand: bool) -> dict:
        inside = [e for p, e in files.items() if p.startswith(path + "/")]
        tree_id = hashlib.sha1("\n".join(f"{e.path} {e.oid}" for e in sorted(inside, key=lambda e: e.path)).encode())
        d = {"type": "directory", "oid": tree_id.hexdigest(), "size": 0, "path": path}
        if expand:
            last = max(inside, key=lambda e: e.commit_date)
            d["lastCommit"] = {"id": last.commit, "title": last.commit_title, "date": last.commit_date}
        return d

    def _tree(self, repo_type, repo_id, revision, sub):
        role = self._role()
        with self.hub._lock:
            repo = self.hub._get_repo(repo_type, repo_id, role)
            files = self.hub._resolve(repo, revision).files
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = self.query.get("expand", ["false"])[0].lower() in ("1", "true")
        sub = sub.strip("/")
        dirs = _dirs_of(files)
        if sub and sub not in dirs:
            raise HubError(404, f"Entry not found: {sub}", "EntryNotFound")
        prefix = sub + "/" if sub else ""

        def wanted(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])

        listing = [self._dir_json(files, d, expand) for d in sorted(dirs) if wanted(d)]
        listing += [self._entry_json(e, expand) for p, e in sorted(files.items()) if wanted(p)]
        page = self.hub.page_size if not expand else min(self.hub.page_size, 50)
        start = int(self.query.get("cursor", ["0"])[0])
        headers = {}
        if start + page < len(listing):
            tail = f"/{quote(sub, safe='')}" if sub else ""
            nxt = (f"{self.base}/api/{repo_type}s/{repo_id}/tree/{quote(revision, safe='')}{tail}"
                   f"?recursive={str(recursive).lower()}&expand={str(expand).lower()}&cursor={start + page}")
            headers["Link"] = f'<{nxt}>; rel="next"'
        return self._json(listing[start:start + page], 200, headers)

    def _paths_info(self, repo_type, repo_id, revision, _sub):
        role = self._role()
        form = parse_qs(self._read_body().decode())
        with self.hub._lock:
            repo = self.hub._get_repo(repo_type, repo_id, role)
            files = self.hub._resolve(repo, revision).files
        expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
        dirs = _dirs_of(files)
        out = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in files:
                out.append(self._entry_json(files[path], expand))
            elif path in dirs:
                out.append(self._dir_json(files, path, expand))
        return self._json(out)

    def _resolve_file(self, repo_type, repo_id, revision, path, head):
        role = self._role()
        with self.hub._lock:
            repo = self.hub._get_repo(repo_type, repo_id, role)
            commit = self.hub._resolve(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound")
        start, end = 0, entry.size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng and not head:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m:
                raise HubError(416, f"bad range {rng}")
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), entry.size - 1) if m.group(2) else entry.size - 1
            else:  # suffix range: the last N bytes
                start = max(entry.size - int(m.group(2)), 0)
            if start >= entry.size and entry.size > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{entry.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return 416
            status = 206
        etag = entry.sha256 if entry.lfs else entry.oid
        length = max(end - start + 1, 0)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{etag}"')
        self.send_header("X-Repo-Commit", commit.oid)
        if entry.lfs:
            self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
            self.send_header("X-Linked-Size", str(entry.size))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{entry.size}")
        self.end_headers()
        if not head and length:
            with open(self.hub.object_path(entry.sha256), "rb") as f:
                f.seek(start)
                left = length
                while left > 0:
                    piece = f.read(min(CHUNK, left))
                    if not piece:
                        break
                    self.wfile.write(piece)
                    left -= len(piece)
        return status

    # -- api: writing --------------------------------------------------------------------------

    def _preupload(self, repo_type, repo_id, revision, _sub):
        self._require_write()
        body = self._json_body()
        with self.hub._lock:
            repo = self.hub._get_repo(repo_type, repo_id, "write")
            self.hub._resolve(repo, revision)
        out = []
        for f in body.get("files", []):
            sample = base64.b64decode(f.get("sample", ""))
            name = f["path"].rsplit("/", 1)[-1]
            lfs = (any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS) or f.get("size", 0) >= LFS_MIN_SIZE
                   or b"\0" in sample)
            # oid null: the client then never drops a file as "unchanged" (DESIGN.md section 3).
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": None})
        return self._json({"files": out, "commitOid": None})

    def _commit(self, repo_type, repo_id, revision, _sub):
        self._require_write()
        lines = [json.loads(line) for line in self._read_body().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "commit payload must start with a header line")
        header = lines[0]["value"]
        hub = self.hub
        with hub._lock:
            repo = hub._get_repo(repo_type, repo_id, "write")
            if revision not in repo.branches:
                raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
            head = repo.branches[revision]
            parent = header.get("parentCommit")
            if parent and parent != head:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            commit = hub._new_commit(repo, head, header.get("summary") or "commit", header.get("description", ""),
                                     hub.user)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                path = value.get("path", "").strip("/")
                if key == "file":
                    hub._put_regular(commit, path, base64.b64decode(value.get("content", "")))
                elif key == "lfsFile":
                    hub._put_lfs(commit, path, value["oid"], int(value.get("size") or hub.object_path(value["oid"]).stat().st_size))
                elif key == "deletedFile":
                    if commit.files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    for p in [p for p in commit.files if p.startswith(path + "/")]:
                        del commit.files[p]
                else:
                    raise HubError(400, f"unknown commit operation {key!r}")
            repo.commits[commit.oid] = commit
            repo.branches[revision] = commit.oid
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return self._json({"success": True, "commitOid": commit.oid, "commitUrl": f"{self.base}/{prefix}{repo_id}/commit/{commit.oid}",
                           "hookOutput": "", "pullRequestUrl": None})

    def _tag(self, repo_type, repo_id, revision, _sub):
        self._require_write()
        body = self._json_body()
        tag = body.get("tag", "")
        if not re.fullmatch(r"[\w.-]+", tag or ""):
            raise HubError(400, f"invalid tag name {tag!r}")
        with self.hub._lock:
            repo = self.hub._get_repo(repo_type, repo_id, "write")
            commit = self.hub._resolve(repo, revision)
            if tag in repo.tags or tag in repo.branches:
                raise HubError(409, f"Tag {tag} already exists")
            repo.tags[tag] = commit.oid
        return self._json({"success": True})

    # -- LFS -------------------------------------------------------------------------------------

    def _lfs_batch(self, repo_type, repo_id):
        self._require_write()
        body = self._json_body()
        with self.hub._lock:
            self.hub._get_repo(repo_type, repo_id, "write")
        if body.get("operation") != "upload":
            raise HubError(400, "only the upload operation is served here")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            target = self.hub.object_path(oid)
            if target.exists() and target.stat().st_size == size:
                objects.append({"oid": oid, "size": size})  # already stored: no actions, the client skips it
                continue
            ticket = secrets.token_hex(16)
            with self.hub._lock:
                self.hub._tickets[ticket] = (oid, size)
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": {
                "upload": {"href": f"{self.base}/_lfs/upload/{oid}/{ticket}"},
                "verify": {"href": f"{self.base}/_lfs/verify"},
            }})
        return self._json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"})

    def _lfs_upload(self, oid, ticket):
        # Like a pre-signed storage URL: the ticket is the authorisation, no bearer token is sent.
        with self.hub._lock:
            expected = self.hub._tickets.get(ticket)
        if expected is None or expected[0] != oid:
            raise HubError(403, "unknown or expired upload ticket")
        target = self.hub.object_path(oid)
        tmp = target.with_name(f".{oid}.{secrets.token_hex(4)}")
        digest, size = hashlib.sha256(), 0
        try:
            with open(tmp, "wb") as f:
                for piece in self._iter_body():
                    digest.update(piece)
                    size += len(piece)
                    f.write(piece)
            if digest.hexdigest() != oid or size != expected[1]:
                raise HubError(400, f"uploaded content does not match oid {oid} / size {expected[1]}")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        with self.hub._lock:
            self.hub._tickets.pop(ticket, None)
        return self._json({})

    def _lfs_verify(self):
        body = self._json_body()
        target = self.hub.object_path(body.get("oid", "-"))
        if not target.exists() or target.stat().st_size != body.get("size"):
            raise HubError(404, "object not found after upload")
        return self._json({"success": True})


def _front_matter(hub: LoopbackHub, entry: Entry | None) -> dict | None:
    if entry is None:
        return None
    import yaml

    text = _yaml_block(hub.object_path(entry.sha256).read_text(encoding="utf-8", errors="replace"))
    if text is None:
        return None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def _repo_tags(card: dict | None) -> list[str]:
    """A repo's tags as the Hub lists them: the card's own, then ones derived from its metadata."""
    card = card or {}
    tags = [t for t in _strings(card.get("tags"))]
    for key in ("license", "language", "task_categories", "size_categories"):
        tags += [f"{key}:{v}" for v in _strings(card.get(key))]
    return list(dict.fromkeys(tags))


def _strings(value) -> list[str]:
    values = value if isinstance(value, list) else [value] if value is not None else []
    return [v for v in values if isinstance(v, str)]


# -- the Hub's README metadata check (POST /api/validate-yaml) -------------------------------------

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


def _yaml_block(readme: str) -> str | None:
    m = re.match(r"^---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|$)", readme, re.S)
    return m.group(1) if m else None


def metadata_errors(readme: str, repo_type: str = "dataset") -> list[str]:
    """Why the Hub would reject this README's metadata (empty list: it passes).

    A model of the Hub's check, written from the Hub's dataset card spec and
    kept apart from the project's code (which asks the Hub through
    huggingface_hub's DatasetCard.validate): a YAML mapping, licenses and
    task categories from the Hub's lists, ISO language codes, a known size
    category, string tags, and `configs` that `datasets` can read; the
    metadata must also load into huggingface_hub's `DatasetCardData`.
    """
    import yaml

    text = _yaml_block(readme)
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
    if repo_type == "model":
        errors += _model_index_errors(meta.get("model-index"))
    return errors


def _model_index_errors(index) -> list[str]:
    """The Hub's model-index schema (hub-docs modelcard.md): a list of models, each with a name and results;
    a result has a task with a type, a dataset with a name and a type, and metrics with a type and a value;
    a source, if any, has a url. Optional fields (task name, dataset config/split/revision, metric name and
    config) are strings, `verified` is a boolean."""
    if index is None:
        return []
    if not isinstance(index, list) or not all(isinstance(m, dict) for m in index):
        return ['"model-index" must be a list of mappings']
    errors: list[str] = []

    def check(obj, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()):
        if not isinstance(obj, dict):
            errors.append(f'"{where}" must be a mapping')
            return
        for key in required:
            if not isinstance(obj.get(key), str) or not obj[key]:
                errors.append(f'"{where}.{key}" is required and must be a string')
        for key in optional:
            if obj.get(key) is not None and not isinstance(obj[key], str):
                errors.append(f'"{where}.{key}" must be a string')

    for i, model in enumerate(index):
        check(model, f"model-index[{i}]", ("name",))
        results = model.get("results")
        if not isinstance(results, list):
            errors.append(f'"model-index[{i}].results" must be a list')
            continue
        for j, result in enumerate(results):
            where = f"model-index[{i}].results[{j}]"
            if not isinstance(result, dict):
                errors.append(f'"{where}" must be a mapping')
                continue
            check(result.get("task"), f"{where}.task", ("type",), ("name",))
            if result.get("dataset") is not None:
                check(result["dataset"], f"{where}.dataset", ("name", "type"), ("config", "split", "revision"))
            if result.get("source") is not None:
                check(result["source"], f"{where}.source", ("url",), ("name",))
            metrics = result.get("metrics")
            if not isinstance(metrics, list) or not metrics:
                errors.append(f'"{where}.metrics" must be a non-empty list')
                continue
            for k, metric in enumerate(metrics):
                check(metric, f"{where}.metrics[{k}]", ("type",), ("name", "config"))
                if isinstance(metric, dict):
                    if metric.get("value") is None:
                        errors.append(f'"{where}.metrics[{k}].value" is required')
                    if metric.get("verified") is not None and not isinstance(metric["verified"], bool):
                        errors.append(f'"{where}.metrics[{k}].verified" must be a boolean')
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


@contextlib.contextmanager
def hub_env(url: str, cache_dir: str | os.PathLike | None = None):
    """Point the already-imported huggingface_hub and datasets at `url` (and a fresh cache), then restore.

    Both libraries read HF_ENDPOINT when they are imported, so setting the
    environment variable alone is not enough inside one test process. The Xet
    upload path is switched off: the loopback Hub speaks the plain LFS protocol.
    With `cache_dir`, the Hub and datasets caches live there, so no test ever
    gets an answer from another test's warm cache.
    """
    import huggingface_hub.constants as hc

    env = {"HF_ENDPOINT": url, "HF_HUB_DISABLE_XET": "1"}
    patches: list[tuple[object, str, object]] = [
        (hc, "ENDPOINT", url),
        (hc, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"),
        (hc, "HF_HUB_DISABLE_XET", True),
    ]
    try:
        import datasets.config as dc

        patches += [(dc, "HF_ENDPOINT", url), (dc, "HUB_DATASETS_URL", url + "/datasets/{repo_id}/resolve/{revision}/{path}")]
    except ImportError:  # pragma: no cover - datasets is a dependency, but the Hub part works without it
        dc = None
    if cache_dir is not None:
        cache = Path(cache_dir)
        env.update(HF_HUB_CACHE=str(cache / "hub"), HF_DATASETS_CACHE=str(cache / "datasets"))
        patches += [(hc, "HF_HUB_CACHE", str(cache / "hub")), (hc, "HUGGINGFACE_HUB_CACHE", str(cache / "hub"))]
        if dc is not None:
            patches += [(dc, "HF_DATASETS_CACHE", cache / "datasets"),
                        (dc, "DOWNLOADED_DATASETS_PATH", cache / "datasets" / "downloads"),
                        (dc, "EXTRACTED_DATASETS_PATH", cache / "datasets" / "downloads" / "extracted"),
                        (dc, "HF_MODULES_CACHE", cache / "modules")]
    saved_env = {k: os.environ.get(k) for k in env}
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches if hasattr(obj, name)]
    os.environ.update(env)
    for obj, name, value in patches:
        if hasattr(obj, name):
            setattr(obj, name, value)
    _clear_fs_cache()
    try:
        yield url
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        _clear_fs_cache()


def _clear_fs_cache() -> None:
    # HfFileSystem instances (and their directory listings) are cached by fsspec across calls:
    # a listing from one server or one test must not answer for the next.
    try:
        from huggingface_hub import HfFileSystem

        HfFileSystem.clear_instance_cache()
    except Exception:  # pragma: no cover - older clients have no instance cache to clear
        pass


def main(argv: list[str] | None = None) -> int:
    """Serve until killed; print `{"url": ..., "env": ...}` first, so a parent process can connect."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help="where objects are stored (default: a temp dir)")
    parser.add_argument("--token", action="append", default=[], help="a write token (repeatable)")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    hub = LoopbackHub(tokens={t: "write" for t in args.token} or None, root=args.root, port=args.port).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `kill` cleans up the temp root like Ctrl-C does
    # The environment a client process needs: the endpoint, and no Xet (this Hub speaks plain LFS).
    print(json.dumps({"url": hub.url, "env": {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1"}}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
