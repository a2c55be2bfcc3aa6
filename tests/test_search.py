"""sdft-data search: the loopback Hub's dataset listing, read by huggingface_hub's own list_datasets."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from huggingface_hub import CommitOperationAdd, HfApi
from test_publish import TOKEN, make_run

from sdft_data.cli import main as cli
from sdft_data.publish import push
from sdft_data.search import search
from helpers.hub_server import LoopbackHub, hub_env


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with LoopbackHub(tokens={TOKEN: "write"}, page_size=2) as server, hub_env(server.url, cache_dir=tmp_path / "c"):
        yield server


def test_search_lists_tagged_datasets_with_their_latest_version(hub, tmp_path):
    push(make_run(tmp_path / "a", rows=6, tag="a"), "org/gsm8k-sdft", endpoint=hub.url, token=TOKEN)
    push(make_run(tmp_path / "b", rows=9, tag="b"), "org/gsm8k-sdft", endpoint=hub.url, token=TOKEN)
    push(make_run(tmp_path / "c", rows=3, tag="c"), "other/math-sdft", endpoint=hub.url, token=TOKEN)
    api = HfApi(endpoint=hub.url, token=TOKEN)
    for repo, card in (("org/plain", "---\ntags:\n- math\n---\n# not ours\n"),
                       ("org/tagged-by-hand", "---\ntags:\n- sdft\n---\n# tagged, no sdft block\n")):
        api.create_repo(repo, repo_type="dataset")
        api.create_commit(repo, repo_type="dataset", commit_message="card",
                          operations=[CommitOperationAdd("README.md", card.encode())])

    found = {f.repo: f for f in search(endpoint=hub.url)}  # page size 2: the client follows the Link header
    assert set(found) == {"org/gsm8k-sdft", "other/math-sdft", "org/tagged-by-hand"}
    g = found["org/gsm8k-sdft"]
    # run b: 9 rows, i % 3 != 0 accepted -> 6/9
    assert (g.version, g.recipe, g.seed_model, g.rows, g.rewrite_rate) == ("v2", "gsm8k", "sdft-tests/tiny-llama", 9, 0.6667)
    assert found["org/tagged-by-hand"].version is None and found["org/tagged-by-hand"].rows is None
    assert [f.repo for f in search("GSM8K", endpoint=hub.url)] == ["org/gsm8k-sdft"]
    assert search("nothing-like-this", endpoint=hub.url) == []
    assert ("GET", "list", 200) in hub.requests

    out = CliRunner().invoke(cli, ["search", "sdft"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert lines[0].split()[:4] == ["dataset", "version", "recipe", "rows"]
    row = next(line for line in lines if line.startswith("org/gsm8k-sdft"))
    assert row.split()[:5] == ["org/gsm8k-sdft", "v2", "gsm8k", "9", "66.7%"] and "sdft-tests/tiny-llama" in row


def test_search_a_local_folder(tmp_path):
    push(make_run(tmp_path / "a", rows=6, tag="a"), "org/gsm8k-sdft", local=tmp_path / "hub")
    found = search("gsm8k", local=tmp_path / "hub")
    assert [(f.repo, f.version, f.rows) for f in found] == [("org/gsm8k-sdft", "v1", 6)]
    assert search("alpaca", local=tmp_path / "hub") == []
