"""The whole path a user takes, through the CLIs: distill, push to the Hub, load v1, train on it."""

import json

import datasets
import polars as pl
from click.testing import CliRunner

from sdft_data.cli import main as sdft_data
from helpers.hub_server import LoopbackHub, hub_env
from sdft_train.cli import main as sdft_train

TOKEN = "hf_pipeline_secret_token"


def test_distill_push_load_train(tiny_model_dir, gsm8k_file, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    run, runner = tmp_path / "run", CliRunner()
    with LoopbackHub(tokens={TOKEN: "write"}) as hub, hub_env(hub.url, cache_dir=tmp_path / "cache"):
        outputs = []
        for cli, args in [
            (sdft_data, ["distill", "--recipe", "gsm8k", "--source", gsm8k_file, "--model", tiny_model_dir,
                         "--out", run, "--max-new-tokens", "8"]),
            (sdft_data, ["push", run, "--repo", "org/gsm8k-sdft", "--allow-no-rewrites"]),  # tiny model: noise
            (sdft_data, ["versions", "org/gsm8k-sdft"]),
            (sdft_train, ["train", "--data", "org/gsm8k-sdft@v1", "--model", tiny_model_dir,
                          "--out", tmp_path / "ckpt", "--max-steps", "1", "--grad-accum", "1"]),
        ]:
            result = runner.invoke(cli, list(map(str, args)))
            assert result.exit_code == 0, result.output
            outputs.append(result.output)
        assert "published org/gsm8k-sdft@v1" in outputs[1]
        assert "v1" in outputs[2]

        # A second user loads exactly v1's rows with the plain datasets client.
        loaded = datasets.load_dataset("org/gsm8k-sdft", revision="v1", split="train")
        distilled = pl.read_parquet(run / "distilled.parquet")
        assert loaded.to_polars().sort("row_id").equals(distilled)

    stats = json.loads((run / "report" / "stats.json").read_text())
    assert stats["inputs"]["model"] == tiny_model_dir.name, "the report names the seed model"
    fingerprint = json.loads((run / "manifest.json").read_text())["fingerprint"]
    record = json.loads((tmp_path / "ckpt" / "train_manifest.json").read_text())
    assert record["data"] == "org/gsm8k-sdft@v1" and record["data_fingerprint"] == fingerprint
    # The token is in no output and no file written.
    assert not any(TOKEN in out for out in outputs)
    for path in [*run.rglob("*"), *(tmp_path / "ckpt").rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
