"""The loopback Hub answers the real huggingface_hub and datasets clients as the Hub does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, HfApi, HfFileSystem
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from helpers.hub_server import LoopbackHub, hub_env

WRITE, READ = "hf_test_write", "hf_test_read"


@pytest.fixture
def hub(tmp_path):
    with LoopbackHub(tokens={WRITE: "write", READ: "read"}, page_size=3) as server, \
            hub_env(server.url, cache_dir=tmp_path / "cache"):
        yield server


@pytest.fixture
def api(hub):
    return HfApi(endpoint=hub.url, token=WRITE)


def _commit(api, repo, files: dict[str, bytes], **kw):
    ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=data) for p, data in files.items()]
    return api.create_commit(repo, operations=ops, repo_type="dataset", commit_message="add", **kw)


def test_commit_tag_and_download_by_tag(api, hub, tmp_path):
    api.create_repo("org/ds", repo_type="dataset")
    big = bytes(range(256)) * 100  # binary: goes through the LFS batch API and a PUT
    c1 = _commit(api, "org/ds", {"README.md": b"# one\n", "data/a.parquet": big})
    api.create_tag("org/ds", tag="v1", revision=c1.oid, repo_type="dataset")
    c2 = _commit(api, "org/ds", {"README.md": b"# two\n"})

    assert len(c1.oid) == 40 and c1.oid != c2.oid
    refs = api.list_repo_refs("org/ds", repo_type="dataset")
    assert {t.name: t.target_commit for t in refs.tags} == {"v1": c1.oid}
    assert [b.target_commit for b in refs.branches if b.name == "main"] == [c2.oid]
    # The client resolves the tag to its sha and downloads at that sha.
    assert api.dataset_info("org/ds", revision="v1").sha == c1.oid
    v1 = api.hf_hub_download("org/ds", "README.md", repo_type="dataset", revision="v1", cache_dir=tmp_path / "c")
    main = api.hf_hub_download("org/ds", "README.md", repo_type="dataset", cache_dir=tmp_path / "c")
    lfs = api.hf_hub_download("org/ds", "data/a.parquet", repo_type="dataset", revision="v1", cache_dir=tmp_path / "c")
    assert open(v1, "rb").read() == b"# one\n" and open(main, "rb").read() == b"# two\n"
    assert open(lfs, "rb").read() == big
    assert ("POST", "lfs-batch", 200) in hub.requests and ("PUT", "lfs-upload", 200) in hub.requests
    info = api.get_paths_info("org/ds", ["data/a.parquet", "data", "missing"], repo_type="dataset", revision="v1")
    by_path = {i.path: i for i in info}
    assert set(by_path) == {"data/a.parquet", "data"}
    assert by_path["data/a.parquet"].lfs.sha256 and by_path["data/a.parquet"].size == len(big)


def test_tree_paginates_and_deletes_apply(api, hub):
    api.create_repo("org/ds", repo_type="dataset")
    _commit(api, "org/ds", {f"data/f{i}.txt": f"{i}".encode() for i in range(7)})
    # page_size=3 forces the client to follow the Link header.
    files = api.list_repo_files("org/ds", repo_type="dataset")
    assert sorted(files) == sorted([".gitattributes"] + [f"data/f{i}.txt" for i in range(7)])
    assert sum(1 for m, route, _ in hub.requests if route == "tree") >= 3
    api.create_commit("org/ds", repo_type="dataset", commit_message="rm",
                      operations=[CommitOperationDelete("data/f0.txt"), CommitOperationDelete("data/", is_folder=True)])
    assert api.list_repo_files("org/ds", repo_type="dataset") == [".gitattributes"]


def test_not_found_errors_carry_the_hub_error_codes(api, tmp_path):
    api.create_repo("org/ds", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("org/missing")
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info("org/ds", revision="v9")
    with pytest.raises(EntryNotFoundError):
        api.hf_hub_download("org/ds", "nope.txt", repo_type="dataset", cache_dir=tmp_path / "c")


def test_auth_by_bearer_token(hub, tmp_path):
    writer = HfApi(endpoint=hub.url, token=WRITE)
    writer.create_repo("org/secret", repo_type="dataset", private=True)
    with pytest.raises(HfHubHTTPError) as bad:
        HfApi(endpoint=hub.url, token="hf_wrong").create_repo("org/x", repo_type="dataset")
    assert bad.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as anon:
        HfApi(endpoint=hub.url, token=False).create_repo("org/y", repo_type="dataset")
    assert anon.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as read_only:
        _commit(HfApi(endpoint=hub.url, token=READ), "org/secret", {"a.txt": b"a"})
    assert read_only.value.response.status_code == 403
    # A private repo is invisible without a token, readable with any valid one.
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=False).dataset_info("org/secret")
    assert HfApi(endpoint=hub.url, token=READ).dataset_info("org/secret").private is True


def test_tags_are_never_moved_and_stale_parents_refused(api, hub):
    api.create_repo("org/ds", repo_type="dataset")
    c1 = _commit(api, "org/ds", {"a.txt": b"1"})
    api.create_tag("org/ds", tag="v1", revision=c1.oid, repo_type="dataset")
    c2 = _commit(api, "org/ds", {"a.txt": b"2"})
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_tag("org/ds", tag="v1", revision=c2.oid, repo_type="dataset")
    assert conflict.value.response.status_code == 409
    assert hub.repo("org/ds").tags["v1"] == c1.oid
    with pytest.raises(HfHubHTTPError) as stale:
        _commit(api, "org/ds", {"a.txt": b"3"}, parent_commit=c1.oid)
    assert stale.value.response.status_code == 412
    assert hub.repo("org/ds").branches["main"] == c2.oid


def test_injected_fault_leaves_the_repo_unchanged(api, hub):
    api.create_repo("org/ds", repo_type="dataset")
    head = hub.repo("org/ds").branches["main"]
    hub.fail("commit", status=500)
    with pytest.raises(HfHubHTTPError):
        _commit(api, "org/ds", {"a.txt": b"1"})
    assert hub.repo("org/ds").branches["main"] == head
    assert _commit(api, "org/ds", {"a.txt": b"1"}).oid != head  # the next one goes through


def test_validate_yaml_runs_the_metadata_check(hub):
    good = DatasetCard("---\nlicense: mit\nsize_categories:\n- n<1K\n---\n# ok\n")
    good.validate(repo_type="dataset")
    bad = DatasetCard("---\nlicense: not-a-license\nsize_categories:\n- lots\n---\n# bad\n")
    with pytest.raises(ValueError, match="license"):
        bad.validate(repo_type="dataset")


def test_validate_yaml_checks_a_model_cards_model_index(hub):
    import urllib.error
    import urllib.request

    from huggingface_hub import ModelCard

    good = ("---\nmodel-index:\n- name: m\n  results:\n  - task:\n      type: text-generation\n    dataset:\n"
            "      name: GSM8K\n      type: openai/gsm8k\n    metrics:\n    - type: accuracy\n      value: 34.4\n---\n")
    ModelCard(good).validate(repo_type="model")

    def errors(readme: str) -> list[str]:
        # Raw, as a client with no card class of its own would send it (ModelCard refuses to load these).
        request = urllib.request.Request(f"{hub.url}/api/validate-yaml", method="POST", headers={
            "Content-Type": "application/json"}, data=json.dumps({"content": readme, "repoType": "model"}).encode())
        try:
            urllib.request.urlopen(request)
            return []
        except urllib.error.HTTPError as e:
            return [m["message"] for m in json.loads(e.read())["errors"]]

    assert errors(good) == []
    assert errors(good.replace("      type: openai/gsm8k\n", "")) == [
        '"model-index[0].results[0].dataset.type" is required and must be a string']
    assert errors(good.replace("      value: 34.4\n", "")) == ['"model-index[0].results[0].metrics[0].value" is required']
    assert errors(good.replace("    metrics:\n    - type: accuracy\n      value: 34.4\n", "")) == [
        '"model-index[0].results[0].metrics" must be a non-empty list']


def test_datasets_push_to_hub_and_load_dataset_by_revision(api, tmp_path):
    import datasets

    api.create_repo("org/plain", repo_type="dataset")
    datasets.Dataset.from_dict({"x": [1, 2, 3]}).push_to_hub("org/plain", token=WRITE)
    api.create_tag("org/plain", tag="v1", repo_type="dataset")
    datasets.Dataset.from_dict({"x": [4, 5]}).push_to_hub("org/plain", token=WRITE)

    v1 = datasets.load_dataset("org/plain", revision="v1", split="train", cache_dir=str(tmp_path / "d1"))
    latest = datasets.load_dataset("org/plain", split="train", cache_dir=str(tmp_path / "d2"))
    assert v1["x"] == [1, 2, 3] and latest["x"] == [4, 5]


def test_range_reads_through_hffilesystem(api, hub):
    api.create_repo("org/ds", repo_type="dataset")
    _commit(api, "org/ds", {"data/blob.bin": bytes(range(256)) * 40})
    fs = HfFileSystem(endpoint=hub.url, token=WRITE)
    with fs.open("datasets/org/ds/data/blob.bin", "rb", block_size=1000) as f:
        f.seek(5000)
        assert f.read(10) == (bytes(range(256)) * 40)[5000:5010]
    assert any(route == "resolve" and status == 206 for _, route, status in hub.requests)


def test_standalone_server_prints_its_url(tmp_path):
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "helpers" / "hub_server.py"), "--root", str(tmp_path),
                             "--token", "t"], stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(proc.stdout.readline())["url"]
        assert HfApi(endpoint=url, token="t").whoami()["name"] == "tester"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
