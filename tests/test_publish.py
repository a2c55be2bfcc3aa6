"""sdft-data push / versions / pull / load, against the loopback Hub with the real clients, and a local folder."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from huggingface_hub import CommitOperationAdd, DatasetCard, DatasetCardData, HfApi
from polars.testing import assert_frame_equal

from sdft_data.spec import DistillSpec, ImportSpec
from sdft_data.card import read_metadata, reproduce_commands, size_category
from sdft_data.cli import main as cli
from sdft_data.publish import PublishError, load, parse_spec, push, read_version_manifest, verify_version, versions
from helpers.hub_server import LoopbackHub, hub_env

TOKEN = "hf_test_write_token_0123456789"
REPO = "sdft-org/gsm8k-sdft"


def make_run(run: Path, *, rows: int = 6, tag: str = "a", checked: bool = True) -> Path:
    """A checked run directory as sdft-data distill + check + diff leave it (docs/run-directory.md)."""
    run.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(rows):
        ok = i % 3 != 0
        rewrite = f"Great! {tag} says {i} + 1 = {i + 1}. The answer is {i + 1}."
        reference = f"{i} + 1 = {i + 1}\nThe answer is {i + 1}."
        records.append({
            "question": f"What is {i} + 1? ({tag})", "answer": rewrite if ok else reference, "row_id": i,
            "original_response": reference, "rewrite": rewrite if ok else f"The answer is {i + 7}.",
            "accepted": ok, "reason": "accepted" if ok else "wrong_answer",
        })
    pl.DataFrame(records).write_parquet(run / "distilled.parquet")
    manifest = {
        "sdft_version": "0.1.0",
        "fingerprint": (tag * 64)[:64],
        "fingerprint_inputs": {
            "source": {"kind": "hub", "id": "openai/gsm8k", "config": "main", "split": "train",
                       "revision": "e53f048856ff4f594e959d75785d2c2d37b678ee"},
            "recipe": {"name": "gsm8k", "version": 1, "prompt_column": "question", "input_column": None,
                       "response_column": "answer", "check": "math", "prefill": "Great! Let's think step by step. "},
            "template": {"format": "chat", "system": "You are an expert in math. Below are a math question ...",
                         "user": "{instruction}\n\n{response}", "prefill": "Great! Let's think step by step. ",
                         "chat_template_sha256": None, "example": "<s>[INST] {instruction}\n\n{response} [/INST]"},
            "model": {"backend": "local", "model_id": "sdft-tests/tiny-llama", "revision": "0" * 40},
            "generation": {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "stop": []},
            "seed": 0,
        },
        "spec": DistillSpec.make(recipe="gsm8k", source="openai/gsm8k", config="main", split="train",
                                 revision="e53f048856ff4f594e959d75785d2c2d37b678ee", model="sdft-tests/tiny-llama",
                                 max_new_tokens=64, temperature=0.0, top_p=1.0, out=str(run)).to_dict(),
        "created_at": "2024-05-01T00:00:00+00:00",
    }
    if checked:
        accepted = sum(r["accepted"] for r in records)
        manifest["check"] = {"strict": False, "rows": rows, "accepted": accepted, "pending": 0,
                             "by_reason": {"accepted": accepted, "wrong_answer": rows - accepted}}
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "report").mkdir(exist_ok=True)
    summary = {"rows": rows, "mean": 31.5, "median": 30.0, "p10": 20.0, "p90": 40.0, "max": 44.0}
    (run / "report" / "stats.json").write_text(json.dumps({  # sdft_data.diff's stats.json, schema 1 (abridged)
        "schema": 1, "rows": rows, "identical_rewrites": 1,
        "length": {"chars": {"original": {**summary, "mean": 17.25}, "rewrite": summary, "final": summary}},
        "similarity": {"rows": rows, "rouge_l_f1": {**summary, "mean": 0.4321, "median": 0.5}},
        "answer_agreement": {"kind": "last_integer", "rewrite": {"rows": rows, "agree": 2, "rate": 2 / rows}}}))
    (run / "report" / "report.md").write_text("# Diff report\n")
    (run / "report" / "lengths.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return run


@pytest.fixture
def no_saved_token(tmp_path, monkeypatch):
    """No HF_TOKEN and an empty token file: nobody's real token takes part in a test."""
    import huggingface_hub.constants as hc

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    return tmp_path / "hf-home" / "token"


@pytest.fixture
def hub(tmp_path, no_saved_token):
    with LoopbackHub(tokens={TOKEN: "write"}) as server, hub_env(server.url, cache_dir=tmp_path / "cache"):
        yield server


@pytest.fixture
def runs(tmp_path):
    return make_run(tmp_path / "run1", rows=6, tag="a"), make_run(tmp_path / "run2", rows=9, tag="b")


def _push(run, hub, **kw):
    return push(run, REPO, endpoint=hub.url, token=TOKEN, **kw)


def _readme(hub, revision, tmp_path) -> str:
    path = HfApi(endpoint=hub.url, token=TOKEN).hf_hub_download(
        REPO, "README.md", repo_type="dataset", revision=revision, cache_dir=tmp_path / "readme-cache")
    return Path(path).read_text()


def test_push_two_versions_and_load_each_with_datasets(hub, runs, tmp_path):
    import datasets

    r1, r2 = _push(runs[0], hub), _push(runs[1], hub)
    assert (r1.version, r1.status, r2.version, r2.status) == ("v1", "published", "v2", "published")
    repo = hub.repo(REPO)
    assert repo.tags == {"v1": r1.location, "v2": r2.location} and repo.branches["main"] == r2.location

    for run, version in zip(runs, ("v1", "v2")):
        ds = datasets.load_dataset(REPO, revision=version, split="train", cache_dir=str(tmp_path / f"ds-{version}"))
        assert_frame_equal(pl.from_arrow(ds.data.table), pl.read_parquet(run / "distilled.parquet"))
    assert [(v.version, v.rows) for v in versions(REPO, endpoint=hub.url)] == [("v1", 6), ("v2", 9)]
    how = read_version_manifest(f"{REPO}@v1", endpoint=hub.url)
    assert how["fingerprint"] == "a" * 64 and how["publish"]["version"] == "v1"
    assert read_version_manifest(REPO, endpoint=hub.url)["publish"]["version"] == "v2"  # no @: the latest


def test_one_commit_holds_data_card_manifest_and_report(hub, runs):
    result = _push(runs[0], hub)
    files = set(HfApi(endpoint=hub.url).list_repo_files(REPO, repo_type="dataset", revision="v1"))
    assert files == {".gitattributes", "README.md", "manifest.json", "data/train-00000-of-00001.parquet",
                     "report/stats.json", "report/report.md", "report/lengths.png"}
    commits = HfApi(endpoint=hub.url).list_repo_commits(REPO, repo_type="dataset")
    assert [c.commit_id for c in commits][0] == result.location and len(commits) == 2  # initial + this one


def test_card_validates_and_shows_the_statistics(hub, runs, tmp_path):
    _push(runs[0], hub)
    _push(runs[1], hub)
    text = _readme(hub, "v2", tmp_path)
    DatasetCard(text).validate(repo_type="dataset")  # the Hub's own check (the loopback's model of it)
    assert ("POST", "validate-yaml", 200) in hub.requests  # push asked the Hub before uploading
    meta = read_metadata(text)
    DatasetCardData(**meta)
    # dataset_info as push_to_hub writes it: features and the train split's rows
    info = meta["dataset_info"]
    assert {"name": "answer", "dtype": "large_string"} in info["features"] or {"name": "answer", "dtype": "string"} in info["features"]
    assert {"name": "accepted", "dtype": "bool"} in info["features"]
    assert info["splits"][0]["name"] == "train" and info["splits"][0]["num_examples"] == 9
    assert meta["sdft"]["version"] == "v2" and meta["sdft"]["rows"] == 9
    assert meta["license"] == "mit" and meta["source_datasets"] == ["openai/gsm8k"]
    assert {"sdft", "self-distillation", "synthetic"} <= set(meta["tags"])
    assert meta["size_categories"] == ["n<1K"] and meta["language"] == ["en"]
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert "text-generation" in meta["task_categories"] and meta["pretty_name"]
    # run 2: 9 rows, 6 accepted (i % 3 != 0), 3 fell back.
    assert "| rows | 9 |" in text and "| accepted rewrites | 6 |" in text and "| rewrite rate | 66.7% |" in text
    assert "| wrong_answer | 3 | 33.3% | the rewrite's last integer differs from the reference's |" in text
    assert "| chars | original | 17.25 | 30 | 40 |" in text and "| rouge_l_f1 | 0.4321 | 0.5 | 9 |" in text
    assert "| rewrite | last_integer | 2 | 9 | 22.2% |" in text and "identical to their reference: 1" in text
    assert "![report/lengths.png](report/lengths.png)" in text
    assert 'load_dataset("sdft-org/gsm8k-sdft", revision="v2"' in text
    assert "sdft-org/gsm8k-sdft@v2" in text and "sdft-train" in text
    assert "sdft-tests/tiny-llama" in text and "{instruction}\n\n{response}" in text
    # Greedy decoding: only the parameters that applied.
    assert "| decoding | `greedy` |" in text and "| max_new_tokens | `64` |" in text and "top_p" not in text
    # every version in the table, and both citations
    assert "| v1 |" in text and "| v2 |" in text and "`" + "a" * 12 + "`" in text
    assert "Self-Distillation Bridges Distribution Gap" in text and "cobbe2021gsm8k" in text


def test_regenerated_card_keeps_metadata_added_by_hand(hub, runs, tmp_path):
    _push(runs[0], hub)
    card = DatasetCard(_readme(hub, "main", tmp_path))
    card.data["annotations_creators"] = ["machine-generated"]
    card.data["tags"] = card.data["tags"] + ["math"]
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_commit(REPO, repo_type="dataset", commit_message="hand edit",
                      operations=[CommitOperationAdd("README.md", str(card).encode())])
    _push(runs[1], hub)
    meta = read_metadata(_readme(hub, "v2", tmp_path))
    assert meta["annotations_creators"] == ["machine-generated"]
    assert "math" in meta["tags"] and "sdft" in meta["tags"] and meta["size_categories"] == ["n<1K"]


def test_repush_is_a_noop_that_says_so(hub, runs):
    _push(runs[0], hub)
    refs_before = (dict(hub.repo(REPO).tags), dict(hub.repo(REPO).branches))
    again = _push(runs[0], hub)
    assert again.status == "already-published" and again.version == "v1"
    assert "already published" in again.message()
    assert (hub.repo(REPO).tags, hub.repo(REPO).branches) == refs_before
    result = CliRunner().invoke(cli, ["push", str(runs[0]), "--repo", REPO], env={"HF_TOKEN": TOKEN})
    assert result.exit_code == 0 and "already published as sdft-org/gsm8k-sdft@v1" in result.output


def test_existing_tag_is_refused_and_nothing_moves(hub, runs):
    first = _push(runs[0], hub)
    head = hub.repo(REPO).branches["main"]
    with pytest.raises(PublishError, match="tag v1 already exists"):
        _push(runs[1], hub, tag="v1")
    assert hub.repo(REPO).tags == {"v1": first.location} and hub.repo(REPO).branches["main"] == head


def test_bad_or_missing_token_gives_one_line_and_never_the_token(hub, runs):
    with pytest.raises(PermissionError, match="hf auth login"):
        push(runs[0], REPO, endpoint=hub.url, token="hf_not_a_valid_token_xyz")
    with pytest.raises(PermissionError, match="no Hugging Face token"):
        push(runs[0], REPO, endpoint=hub.url)
    assert REPO not in {f"{k[1]}" for k in hub.repos}
    result = CliRunner().invoke(cli, ["push", str(runs[0]), "--repo", REPO], env={"HF_TOKEN": "hf_not_a_valid_token_xyz"})
    assert result.exit_code == 1
    assert "authentication failed for sdft-org/gsm8k-sdft" in result.output and "hf auth login" in result.output
    assert "hf_not_a_valid_token_xyz" not in result.output and len(result.output.strip().splitlines()) == 1


def test_token_saved_by_hf_auth_login_is_used(hub, runs, no_saved_token):
    no_saved_token.parent.mkdir(parents=True, exist_ok=True)
    no_saved_token.write_text(TOKEN)
    assert push(runs[0], REPO, endpoint=hub.url).version == "v1"


def test_private_repo_needs_a_valid_token_to_load(hub, runs, tmp_path):
    _push(runs[0], hub, private=True)
    assert hub.repo(REPO).private
    with pytest.raises(PermissionError, match="authentication failed"):
        load(f"{REPO}@v1", endpoint=hub.url, token="hf_bad", cache_dir=tmp_path / "fresh1")
    ds = load(f"{REPO}@v1", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "fresh2")
    assert ds.num_rows == 6


def test_push_that_fails_at_the_commit_leaves_no_version_and_rerun_finishes(hub, runs):
    hub.fail("commit", status=500)
    with pytest.raises(PublishError, match="no new version was created"):
        _push(runs[0], hub)
    assert versions(REPO, endpoint=hub.url) == []
    assert _push(runs[0], hub).version == "v1"


def test_push_that_fails_at_the_tag_is_finished_by_tagging_the_landed_commit(hub, runs):
    hub.fail("tag", status=503)
    with pytest.raises(PublishError, match="re-run to finish"):
        _push(runs[0], hub)
    landed = hub.repo(REPO).branches["main"]
    assert hub.repo(REPO).tags == {}  # the commit landed, but no version appeared
    again = _push(runs[0], hub)
    assert (again.status, again.version, again.location) == ("resumed", "v1", landed)
    assert hub.repo(REPO).tags == {"v1": landed} and hub.repo(REPO).branches["main"] == landed


def test_bad_input_is_one_clear_line(hub, runs, tmp_path):
    runner = CliRunner()
    bad_repo = runner.invoke(cli, ["push", str(runs[0]), "--repo", "just-a-name"], env={"HF_TOKEN": TOKEN})
    assert bad_repo.exit_code == 1 and "invalid repo name 'just-a-name': expected ORG/NAME" in bad_repo.output
    unchecked = make_run(tmp_path / "unchecked", checked=False)
    result = runner.invoke(cli, ["push", str(unchecked), "--repo", REPO], env={"HF_TOKEN": TOKEN})
    assert result.exit_code == 1 and f"run {unchecked} was never checked: run `sdft-data check {unchecked}`" in result.output
    (runs[0] / "distilled.parquet").unlink()
    assert "was never checked" in runner.invoke(cli, ["push", str(runs[0]), "--repo", REPO]).output
    with pytest.raises(ValueError, match="invalid version"):
        parse_spec(f"{REPO}@latest")
    with pytest.raises(ValueError, match="the Hub says: \"license\" 'free-for-all' is not a license id"):
        push(runs[1], REPO, endpoint=hub.url, token=TOKEN, license="free-for-all")
    assert hub.repos == {}  # nothing was created by any of these: the Hub rejected the card first


def test_large_runs_are_sharded_and_load_whole(hub, tmp_path):
    run = make_run(tmp_path / "big", rows=400, tag="c")
    result = _push(run, hub, max_shard_bytes=4096)
    shards = [f for f in result.files if f.startswith("data/")]
    assert len(shards) > 1 and shards[0] == f"data/train-00000-of-{len(shards):05d}.parquet"
    ds = load(f"{REPO}@v1", endpoint=hub.url, cache_dir=tmp_path / "c")
    assert_frame_equal(pl.from_arrow(ds.data.table).sort("row_id"), pl.read_parquet(run / "distilled.parquet"))


def test_a_repo_with_someone_elses_data_is_left_alone(hub, runs):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(REPO, repo_type="dataset")
    api.create_commit(REPO, repo_type="dataset", commit_message="theirs",
                      operations=[CommitOperationAdd("data/theirs.csv", b"a,b\n1,2\n")])
    with pytest.raises(PublishError, match="not published by sdft-data"):
        _push(runs[0], hub)
    assert "data/theirs.csv" in api.list_repo_files(REPO, repo_type="dataset") and hub.repo(REPO).tags == {}


def test_fewer_shards_in_a_later_version_drop_the_stale_ones(hub, tmp_path):
    import datasets

    _push(make_run(tmp_path / "big", rows=200, tag="c"), hub, max_shard_bytes=4096)
    _push(make_run(tmp_path / "small", rows=5, tag="d"), hub)
    files = HfApi(endpoint=hub.url).list_repo_files(REPO, repo_type="dataset", revision="v2")
    assert [f for f in files if f.startswith("data/")] == ["data/train-00000-of-00001.parquet"]
    assert datasets.load_dataset(REPO, revision="v2", split="train", cache_dir=str(tmp_path / "d")).num_rows == 5


def test_pull_downloads_one_version_and_detects_tampering(hub, runs, tmp_path):
    _push(runs[0], hub)
    _push(runs[1], hub)
    out = tmp_path / "pulled"
    result = CliRunner().invoke(cli, ["pull", f"{REPO}@v1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"pulled {REPO}@v1" in result.output
    assert json.loads((out / "manifest.json").read_text())["publish"]["version"] == "v1"
    assert_frame_equal(pl.read_parquet(out / "data"), pl.read_parquet(runs[0] / "distilled.parquet"))
    shard = out / "data" / "train-00000-of-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(PublishError, match="does not match its manifest"):
        verify_version(out)
    again = CliRunner().invoke(cli, ["pull", f"{REPO}@v1", "--out", str(out)])
    assert again.exit_code == 1 and "not empty" in again.output


def test_cli_versions_lists_every_version(hub, runs):
    for run in runs:
        assert CliRunner().invoke(cli, ["push", str(run), "--repo", REPO], env={"HF_TOKEN": TOKEN}).exit_code == 0
    out = CliRunner().invoke(cli, ["versions", REPO]).output.splitlines()
    assert out[0].split()[:2] == ["version", "date"]
    assert [line.split()[0] for line in out[1:]] == ["v1", "v2"] and "66.7%" in out[2]
    missing = CliRunner().invoke(cli, ["pull", f"{REPO}@v7", "--out", "never"])
    assert missing.exit_code == 1 and "has no version v7; versions: v1, v2" in missing.output


def test_local_folder_target_has_the_same_layout_and_versions(hub, runs, tmp_path):
    local = tmp_path / "published"
    for run in runs:
        _push(run, hub)
        assert push(run, REPO, local=local).status == "published"
    api = HfApi(endpoint=hub.url)
    for version in ("v1", "v2"):
        on_hub = set(api.list_repo_files(REPO, repo_type="dataset", revision=version)) - {".gitattributes"}
        folder = local / REPO / "versions" / version
        in_folder = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
        assert in_folder == on_hub
    assert [v.version for v in versions(REPO, local=local)] == ["v1", "v2"]
    top, v2 = (local / REPO / "README.md").read_text(), (local / REPO / "versions" / "v2" / "README.md").read_text()
    assert top == v2.replace("path: data/train-*", "path: versions/v2/data/train-*") and top != v2
    ds = load(f"{REPO}@v1", local=local, cache_dir=tmp_path / "c")
    assert_frame_equal(pl.from_arrow(ds.data.table), pl.read_parquet(runs[0] / "distilled.parquet"))
    latest = load(REPO, local=local, cache_dir=tmp_path / "c2")
    assert latest.num_rows == 9
    assert read_version_manifest(f"{REPO}@v1", local=local)["publish"]["rows"] == 6


def test_local_folder_loads_with_datasets_latest_and_pinned(runs, tmp_path):
    import datasets

    local = tmp_path / "hub"
    for run in runs:
        push(run, REPO, local=local)
    folder = local / REPO
    latest = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "c1"))
    assert_frame_equal(pl.from_arrow(latest.data.table), pl.read_parquet(runs[1] / "distilled.parquet"))
    for run, version in zip(runs, ("v1", "v2")):
        pinned = datasets.load_dataset(str(folder / "versions" / version), split="train", cache_dir=str(tmp_path / version))
        assert_frame_equal(pl.from_arrow(pinned.data.table), pl.read_parquet(run / "distilled.parquet"))
    # The card and pull say exactly that.
    card = (folder / "README.md").read_text()
    assert f'load_dataset("DIR/{REPO}/versions/v2", split="train")' in card
    assert f'load_dataset("{REPO}", revision="v2", split="train")' in card
    out = tmp_path / "pulled"
    result = CliRunner().invoke(cli, ["pull", f"{REPO}@v1", "--out", str(out), "--hub-dir", str(local)])
    assert result.exit_code == 0, result.output
    assert f'datasets.load_dataset("{out}", split="train")' in result.output
    assert f'datasets.load_dataset("{folder / "versions" / "v1"}", split="train")' in result.output
    assert datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "c3")).num_rows == 6


def test_local_versions_are_immutable_and_interrupted_pushes_leave_nothing(runs, tmp_path):
    local = tmp_path / "published"
    runner = CliRunner()
    assert "published sdft-org/gsm8k-sdft@v1" in runner.invoke(cli, ["push", str(runs[0]), "--repo", REPO, "--hub-dir", str(local)]).output
    assert "already published" in runner.invoke(cli, ["push", str(runs[0]), "--repo", REPO, "--hub-dir", str(local)]).output
    refused = runner.invoke(cli, ["push", str(runs[1]), "--repo", REPO, "--hub-dir", str(local), "--tag", "v1"])
    assert refused.exit_code == 1 and "never overwritten" in refused.output
    v1 = local / REPO / "versions" / "v1" / "manifest.json"
    assert stat.S_IMODE(v1.stat().st_mode) & 0o222 == 0  # published files are read-only
    # A push killed half way leaves a staging folder (dead pid), never a version; the next push cleans it.
    stale = local / REPO / ".staging-999999999-x"
    (stale / "data").mkdir(parents=True)
    assert [v.version for v in versions(REPO, local=local)] == ["v1"]
    assert push(runs[1], REPO, local=local).version == "v2" and not stale.exists()
    pulled = runner.invoke(cli, ["pull", f"{REPO}@v2", "--out", str(tmp_path / "copy"), "--hub-dir", str(local)])
    assert pulled.exit_code == 0 and (tmp_path / "copy" / "data" / "train-00000-of-00001.parquet").is_file()


def test_size_categories():
    assert [size_category(n) for n in (0, 999, 1000, 52_002, 1_000_000)] == [
        "n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]


def test_card_has_a_sample_the_command_that_reproduces_it_and_limitations(runs, tmp_path):
    local = tmp_path / "hub"
    push(runs[1], REPO, local=local)
    text = (local / REPO / "versions" / "v1" / "README.md").read_text()
    assert "## A sample row" in text and '"question": "What is 1 + 1? (b)"' in text  # row 1: the first accepted
    assert "## Limitations" in text and "## How to reproduce this version" in text
    command = ("sdft-data distill --recipe gsm8k --source openai/gsm8k --config main --split train --revision"
               " e53f048856ff4f594e959d75785d2c2d37b678ee --max-new-tokens 64 --temperature 0.0 --top-p 1.0"
               " --model sdft-tests/tiny-llama --out runs/gsm8k-sdft")
    assert command in text and f"sdft-data push runs/gsm8k-sdft --repo {REPO} --hub-dir hub" in text
    manifest = json.loads((runs[1] / "manifest.json").read_text())
    manifest["imported"] = {"model": "not stated"}
    manifest["spec"] = ImportSpec.make(original="openai/gsm8k@e53f048856ff4f594e959d75785d2c2d37b678ee",
                                       distilled="/data/distilled.json", recipe="gsm8k",
                                       model="sdft-tests/tiny-llama", out="here").to_dict()
    manifest["fingerprint_inputs"]["distilled"] = {"kind": "file", "id": "distilled.json", "sha256": "0" * 64}
    assert reproduce_commands(manifest, "org/x")[0] == (
        "sdft-data import --original openai/gsm8k@e53f048856ff4f594e959d75785d2c2d37b678ee --distilled distilled.json"
        " --recipe gsm8k --model sdft-tests/tiny-llama --out runs/x")
    # A run recorded by an older version, with no settings: the card says so rather than guess.
    del manifest["spec"]
    assert reproduce_commands(manifest, "org/x")[0].startswith("# made by an sdft version that did not record")


# ---------------------------------------------------------------- hardening, round two


def _other_recipe(run: Path) -> Path:
    """`run` made into a run of another recipe (alpaca) with its own fingerprint."""
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["fingerprint"] = "c" * 64
    manifest["fingerprint_inputs"]["recipe"]["name"] = "alpaca"
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_a_run_of_another_recipe_never_becomes_the_next_version(hub, runs, tmp_path):
    """A new version of a repo moves `main`: an alpaca run would turn a gsm8k dataset into another dataset."""
    other = _other_recipe(runs[1])
    _push(runs[0], hub)
    with pytest.raises(PublishError, match=r"sdft-org/gsm8k-sdft holds the gsm8k dataset \(latest v1\) and this run "
                                           r"is alpaca: its version would switch `main`"):
        _push(other, hub)
    assert set(hub.repo(REPO).tags) == {"v1"}
    folder = tmp_path / "published"
    push(runs[0], REPO, local=folder)
    with pytest.raises(PublishError, match="holds the gsm8k dataset"):
        push(other, REPO, local=folder)
    assert sorted(p.name for p in (folder / REPO / "versions").iterdir()) == ["v1"]


def test_pushes_into_one_folder_at_once_each_get_their_own_version(runs, tmp_path, monkeypatch):
    """Two pushes that stage at the same time: without a lock both take v1, and the second failed with
    "version v1 already exists". A barrier makes them overlap when nothing keeps them apart."""
    import threading

    import sdft_data.publish as publish

    barrier = threading.Barrier(2, timeout=3)
    stage = publish._stage

    def stage_together(*args, **kwargs):
        try:
            barrier.wait()  # both pushes staging at once, unless one waits for the other
        except threading.BrokenBarrierError:
            pass
        return stage(*args, **kwargs)

    monkeypatch.setattr(publish, "_stage", stage_together)
    folder, results, errors = tmp_path / "published", [], []

    def one(run):
        try:
            results.append(push(run, REPO, local=folder))
        except Exception as e:  # noqa: BLE001 - the test reports it
            errors.append(e)

    threads = [threading.Thread(target=one, args=(run,)) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(r.version for r in results) == ["v1", "v2"]
    assert [v.version for v in versions(REPO, local=folder)] == ["v1", "v2"]


def test_the_shipped_license_list_holds_every_id_the_loopback_hub_knows():
    """Both come from the Hub's documented list; the package's (data, with its source) may be newer, never smaller."""
    from helpers.hub_server import HUB_LICENSES

    from sdft_data.card import check_license, hub_licenses

    assert HUB_LICENSES <= hub_licenses()
    assert {"apache-2.0", "mit", "cc-by-nc-4.0", "cc-by-sa-3.0", "other", "unknown"} <= hub_licenses()
    with pytest.raises(ValueError, match="did you mean apache-2.0"):
        check_license("apache")
