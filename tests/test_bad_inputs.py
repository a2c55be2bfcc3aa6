"""Bad input, table-driven: every row is one mistake a user makes, through the real CLIs.

Each row gives the command line, the exit code, a fragment of the one `Error:`
line it must print, and what must not change: a fresh --out must not exist
afterwards ("nothing written"), or a folder's files must be byte-identical
("unchanged"). Every row also checks that no exception escaped (no traceback).

The hang cases run as subprocesses with a wall-clock bound, against loopback
servers that stall: one that takes connections and never answers, and a TGI
that answers /info but never /generate.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import polars as pl
import pytest
from click.testing import CliRunner

from sdft_data.cli import main as data_cli

from conftest import ALPACA_ROWS, GSM8K_ROWS

SECRET = "hunter2-TopSecret"


# ---------------------------------------------------------------- loopback servers


class StallServer:
    """Takes TCP connections on 127.0.0.1 and never answers a byte."""

    def __enter__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return self

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def __exit__(self, *exc):
        self.sock.close()
        for c in self.conns:
            c.close()


class FakeTGI:
    """TGI's /info for the tiny model; /generate stalls ("stall") or answers 200 with wrong types ("badtypes")."""

    def __init__(self, model_dir: Path, mode: str):
        self.model_dir, self.mode = str(model_dir), mode
        self.release = threading.Event()

    def __enter__(self):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _json(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path == "/info":
                    self._json(200, {"model_id": outer.model_dir, "model_sha": None, "max_concurrent_requests": 4,
                                     "max_total_tokens": 2048, "max_stop_sequences": 4})
                else:
                    self._json(404, {"error": "not found", "error_type": "not_found"})

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.mode == "stall":
                    outer.release.wait(120)
                    return
                self._json(200, {"generated_text": 5, "details": "not an object"})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- shared fixtures


def _invoke(cli, args: list) -> "click.testing.Result":  # noqa: F821
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def world(tiny_model_dir, tmp_path_factory):
    """One source, one finished run (all rewrites cut short: the tiny model writes noise), bad files."""
    root = tmp_path_factory.mktemp("bad-inputs")
    source = root / "alpaca.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in ALPACA_ROWS))
    run = root / "run"
    result = _invoke(data_cli, ["distill", "--recipe", "alpaca", "--source", source, "--model", tiny_model_dir,
                                "--out", run, "--max-new-tokens", "4", "--temperature", "0"])
    assert result.exit_code == 0, result.output
    distill_output = result.output
    files = root / "files"
    files.mkdir()
    (files / "empty.jsonl").write_bytes(b"")
    (files / "broken.json").write_text('[{"instruction": "a", "input": "", "output": "b"}, {"instruction": ')
    (files / "broken.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n{"instruction": "c",\n')
    (files / "broken.csv").write_text('instruction,input,output\na,,b\n"c",d,e,f\n')
    (files / "strings.json").write_text('["one row", "another"]')
    (files / "notes.txt").write_text("instruction: hi\n")
    (files / "no_output.jsonl").write_text('{"instruction": "a", "input": ""}\n')
    (files / "a_dir").mkdir()
    (files / "not_a_model").mkdir()
    (files / "not_a_model" / "readme.md").write_text("hello")
    (files / "token").write_text(SECRET)
    (files / "question_answer.jsonl").write_text('{"question": "a", "answer": "b"}\n')
    (files / "no_rows.json").write_text("[]")
    (files / "evaldata" / "gsm8k").mkdir(parents=True)
    (files / "evaldata" / "gsm8k" / "gsm8k_test.json").write_text(json.dumps(GSM8K_ROWS[:2]))
    (files / "evaldata_empty" / "gsm8k").mkdir(parents=True)
    (files / "evaldata_empty" / "gsm8k" / "gsm8k_test.json").write_bytes(b"")
    # Sources whose columns are not text: mixed types, lists, objects, bytes that are not UTF-8.
    mixed = [{"instruction": "a", "input": "", "output": "b"}, {"instruction": 5, "input": "", "output": "c"}]
    (files / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mixed))
    (files / "mixed.json").write_text(json.dumps(mixed))
    (files / "list_output.jsonl").write_text('{"instruction": "a", "input": "", "output": ["b", "c"]}\n')
    pl.DataFrame({"instruction": ["a"], "input": [""], "output": [["b"]]}).write_parquet(files / "list_output.parquet")
    (files / "object_instruction.jsonl").write_text('{"instruction": {"x": "a"}, "input": "", "output": "b"}\n')
    (files / "latin1.jsonl").write_bytes('{"instruction": "caf\xe9", "input": "", "output": "b"}\n'.encode("latin-1"))
    # Two runs of another recipe (gsm8k), an eval folder, an unfinished training run.
    gsm8k = root / "gsm8k.json"
    gsm8k.write_text(json.dumps(GSM8K_ROWS[:3]))
    runs = {}
    for name, extra in (("gsm8k_run", []), ("gsm8k_run_2", ["--limit", "2"])):
        runs[name] = root / name
        result = _invoke(data_cli, ["distill", "--recipe", "gsm8k", "--source", gsm8k, "--model", tiny_model_dir,
                                    "--out", runs[name], "--max-new-tokens", "4", "--temperature", "0", *extra])
        assert result.exit_code == 0, result.output
    from sdft_train.cli import main as train_cli

    evaluated = root / "eval"
    result = _invoke(train_cli, ["eval", "--model", tiny_model_dir, "--tasks", "gsm8k", "--data-dir",
                                 files / "evaldata", "--max-new-tokens", "4", "--out", evaluated, "--quiet"])
    assert result.exit_code == 0, result.output
    trained = root / "trained"
    result = _invoke(train_cli, ["train", "--data", run, "--model", tiny_model_dir, "--out", trained,
                                 "--max-steps", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    return {"root": root, "source": source, "run": run, "model": tiny_model_dir, "files": files,
            "distill_output": distill_output, "evaluated": evaluated, "trained": trained, **runs}


@dataclass
class Ctx:
    """What a row's command line may name: the shared world, and this row's own tmp folder."""

    world: dict
    tmp: Path

    def __getattr__(self, name):
        return self.world[name]

    @property
    def out(self) -> Path:
        """A fresh --out: it must still not exist after a refused command."""
        return self.tmp / "out"

    def f(self, name: str) -> Path:
        return self.world["files"] / name

    def copy_run(self, name="run") -> Path:
        dst = self.tmp / name
        if not dst.exists():
            shutil.copytree(self.world["run"], dst)
        return dst

    def unfinished_run(self) -> Path:
        """The run as a killed distill leaves it: half its rows generated, status interrupted, never checked."""
        run = self.tmp / "unfinished"
        if run.exists():
            return run
        shutil.copytree(self.world["run"], run)
        (shard,) = sorted((run / "generations").glob("*.parquet"))
        pl.read_parquet(shard).head(2).write_parquet(shard)
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["status"] = "interrupted"
        manifest["counts"].update(ok=2, pending=len(ALPACA_ROWS) - 2)
        manifest.pop("check", None)
        (run / "manifest.json").write_text(json.dumps(manifest))
        for name in ("distilled.parquet",):
            (run / name).unlink(missing_ok=True)
        shutil.rmtree(run / "report", ignore_errors=True)
        return run

    def damaged_run(self) -> Path:
        """A run whose generations shard was cut short (a copy interrupted, a disk fault)."""
        run = self.tmp / "damaged"
        if not run.exists():
            shutil.copytree(self.world["run"], run)
            (shard,) = sorted((run / "generations").glob("*.parquet"))
            shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
        return run

    def edited_run(self, how: str) -> Path:
        """The run with its distilled.parquet changed by hand after `check`: rows cut, `accepted` flipped, other
        types, not parquet at all; "flip-unhashed": flipped in a run checked before the table's hash was kept."""
        run = self.tmp / f"edited-{how}"
        if run.exists():
            return run
        shutil.copytree(self.world["run"], run)
        table = pl.read_parquet(run / "distilled.parquet")
        if how == "cut":
            table.head(2).write_parquet(run / "distilled.parquet")
        elif how in ("flip", "flip-unhashed"):
            table.with_columns(pl.lit(True).alias("accepted")).write_parquet(run / "distilled.parquet")
        elif how == "types":
            table.with_columns(pl.col("accepted").cast(pl.String)).write_parquet(run / "distilled.parquet")
        elif how == "garbage":
            (run / "distilled.parquet").write_bytes(b"not a parquet file\n" * 50)
        if how == "flip-unhashed":
            manifest = json.loads((run / "manifest.json").read_text())
            del manifest["check"]["distilled_sha256"]
            (run / "manifest.json").write_text(json.dumps(manifest))
        return run

    def pushed(self, run: str, repo: str, hub: Path) -> Path:
        """`hub` after pushing the world's `run` to `repo` in it."""
        result = _invoke(data_cli, ["push", self.world[run], "--repo", repo, "--hub-dir", hub, "--allow-no-rewrites"])
        assert result.exit_code == 0, result.output
        return hub

    def copy_of(self, name: str) -> Path:
        dst = self.tmp / name
        if not dst.exists():
            shutil.copytree(self.world[name], dst)
        return dst

    def unfinished_eval(self) -> Path:
        """The eval folder as a kill leaves it: generated, not scored (no results.json)."""
        folder = self.copy_of("evaluated")
        (folder / "results.json").unlink(missing_ok=True)
        return folder

    def unfinished_training(self) -> Path:
        """The training folder as a kill leaves it: train_state.json, no train_manifest.json."""
        folder = self.copy_of("trained")
        (folder / "train_manifest.json").unlink(missing_ok=True)
        return folder

    def edited_results(self, how: str) -> Path:
        """The eval folder with its results.json edited by hand into types sdft-train eval never writes."""
        folder = self.tmp / f"results-{how}"
        if folder.exists():
            return folder
        shutil.copytree(self.world["evaluated"], folder)
        results = json.loads((folder / "results.json").read_text())
        task = results["tasks"]["gsm8k"]
        if how == "tasks-list":
            results["tasks"] = [task]
        elif how == "score-text":
            task["score"] = "high"
        elif how == "samples-text":
            task["decoding"]["samples"] = "1"
        elif how == "decoding-missing":
            del task["decoding"]
        elif how == "model-text":
            results["model"] = "tiny"
        elif how == "score-true":
            task["score"] = True
        (folder / "results.json").write_text(json.dumps(results))
        return folder

    def model_without_weights(self) -> Path:
        """The tiny model's folder name and tokenizer, no weights: loading it would fail."""
        dst = self.tmp / "elsewhere" / self.world["model"].name
        if not dst.exists():
            dst.mkdir(parents=True)
            for p in self.world["model"].iterdir():
                if p.is_file() and not p.name.endswith(".safetensors"):
                    shutil.copy(p, dst / p.name)
        return dst


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@dataclass
class Case:
    id: str
    args: Callable[[Ctx], list]
    code: int
    fragment: str
    nothing_written: bool = True  # the row's --out (ctx.out) does not exist afterwards
    unchanged: Callable[[Ctx], Path] | None = None  # a folder that must be byte-identical afterwards
    absent: tuple[str, ...] = ()  # strings that must not appear in the output (secrets)
    cli: str = "data"
    marks: list = field(default_factory=list)


def distill(*extra, out=None) -> Callable[[Ctx], list]:
    """A distill command line on the shared source and model, into a fresh --out (or `out(ctx)`), plus `extra`."""
    def args(c: Ctx) -> list:
        base = ["distill", "--recipe", "alpaca", "--source", c.source, "--model", c.model,
                "--out", out(c) if out else c.out, "--max-new-tokens", "4"]
        return base + [x(c) if callable(x) else x for x in extra]
    return args


def distill_from(source: Callable[[Ctx], Path], *extra) -> Callable[[Ctx], list]:
    def args(c: Ctx) -> list:
        return ["distill", "--recipe", "alpaca", "--source", source(c), "--model", c.model, "--out", c.out,
                *[x(c) if callable(x) else x for x in extra]]
    return args


def resume_into(run: Callable[[Ctx], Path], *extra, model=None) -> Callable[[Ctx], list]:
    """The shared run's own command line into `run`, with `extra` options changed."""
    def args(c: Ctx) -> list:
        return ["distill", "--recipe", "alpaca", "--source", c.source, "--model", model(c) if model else c.model,
                "--out", run(c), "--max-new-tokens", "4", "--temperature", "0", *extra]
    return args


def push(run: Callable[[Ctx], Path], *extra) -> Callable[[Ctx], list]:
    return lambda c: ["push", run(c), "--repo", "org/data", "--hub-dir", c.tmp / "hub", *extra]


CASES = [
    # ---- distill: values no engine accepts (click ranges, exit 2)
    Case("temperature-negative", distill("--temperature", "-1"), 2, "'--temperature': -1.0 is not in the range x>=0"),
    Case("temperature-nan", distill("--temperature", "nan"), 1, "--temperature must be a number, not nan"),
    Case("top-p-above-1", distill("--top-p", "2"), 2, "'--top-p': 2.0 is not in the range 0.0<x<=1.0"),
    Case("top-p-zero", distill("--top-p", "0"), 2, "'--top-p': 0.0 is not in the range 0.0<x<=1.0"),
    Case("max-new-tokens-zero", distill("--max-new-tokens", "0"), 2, "'--max-new-tokens': 0 is not in the range x>=1"),
    Case("batch-size-zero", distill("--batch-size", "0"), 2, "'--batch-size': 0 is not in the range x>=1"),
    Case("limit-zero", distill("--limit", "0"), 2, "'--limit': 0 is not in the range x>=1"),
    Case("limit-negative", distill("--limit", "-3"), 2, "'--limit': -3 is not in the range x>=1"),
    Case("concurrency-zero", distill("--concurrency", "0"), 2, "'--concurrency': 0 is not in the range x>=1"),
    Case("seed-negative", distill("--seed", "-1"), 2, "'--seed': -1 is not in the range x>=0"),
    Case("top-k-negative", distill("--top-k", "-1"), 2, "'--top-k': -1 is not in the range x>=0"),
    Case("max-prompt-tokens-zero", distill("--max-prompt-tokens", "0"), 2, "'--max-prompt-tokens': 0 is not in the range"),
    Case("request-timeout-zero", distill("--request-timeout", "0"), 2, "'--request-timeout': 0.0 is not in the range x>0"),
    Case("retry-budget-negative", distill("--retry-budget", "-5"), 2, "'--retry-budget': -5.0 is not in the range x>0"),
    Case("temperature-not-a-number", distill("--temperature", "warm"), 2, "'warm' is not a valid float"),
    Case("format-unknown", distill("--format", "xml"), 2, "'xml' is not one of 'chat', 'paper'"),
    Case("backend-unknown", distill("--backend", "vllm"), 2, "'vllm' is not one of 'local', 'tgi', 'openai'"),
    Case("recipe-unknown", distill("--recipe", "nope"), 2, "'nope' is not one of 'alpaca', 'dolly', 'gsm8k'"),
    Case("custom-without-columns", distill("--recipe", "custom"), 1, "--recipe custom needs --prompt-column"),
    # ---- distill: sources
    Case("source-0-bytes", distill_from(lambda c: c.f("empty.jsonl")), 1, "is empty (0 bytes)"),
    Case("source-broken-json", distill_from(lambda c: c.f("broken.json")), 1,
         "broken.json: invalid JSON at line 1, column 68: Expecting value"),
    Case("source-broken-jsonl", distill_from(lambda c: c.f("broken.jsonl")), 1,
         "broken.jsonl: invalid JSON on line 2"),
    Case("source-broken-csv", distill_from(lambda c: c.f("broken.csv")), 1,
         "broken.csv: line 3 has 4 fields, the header has 3"),
    Case("source-rows-not-rows", distill_from(lambda c: c.f("strings.json")), 1,
         "is missing column(s) instruction, output; columns found: text"),
    Case("source-is-a-folder", distill_from(lambda c: c.f("a_dir")), 1, "is a folder, not a file"),
    Case("source-missing", distill_from(lambda c: c.tmp / "nope.jsonl"), 1, "nope.jsonl does not exist"),
    Case("source-unsupported-type", distill_from(lambda c: c.f("notes.txt")), 1, "unsupported file type '.txt'"),
    Case("source-missing-column", distill_from(lambda c: c.f("no_output.jsonl")), 1, "is missing column(s) output"),
    Case("split-on-local-file", distill("--split", "test"), 1, "--split is for Hub datasets"),
    Case("config-on-local-file", distill("--config", "main"), 1, "--config is for Hub datasets"),
    # ---- distill: models and backends
    Case("model-folder-missing", distill("--model", lambda c: c.tmp / "models" / "tny"), 1,
         "tny does not exist (a Hub model id is ORG/NAME)"),
    Case("model-not-a-model-folder", distill("--model", lambda c: c.f("not_a_model")), 1,
         "is not a model folder (no config.json)"),
    Case("model-is-a-file", distill("--model", lambda c: c.f("notes.txt")), 1, "is a file, not a .gguf: give a model folder"),
    Case("local-without-model", lambda c: ["distill", "--recipe", "alpaca", "--source", c.source, "--out", c.out], 1,
         "--backend local needs --model"),
    Case("local-with-endpoint", distill("--endpoint", "http://127.0.0.1:9"), 1,
         "--endpoint is for the tgi and openai backends, not local"),
    Case("local-with-request-timeout", distill("--request-timeout", "5"), 1,
         "--request-timeout is for the tgi and openai backends, not local"),
    Case("local-with-concurrency", distill("--concurrency", "4"), 1, "--concurrency is for the tgi and openai"),
    Case("max-new-tokens-over-context", distill("--max-new-tokens", "4096"), 1,
         "--max-new-tokens 4096 does not fit the model's context of 2048 tokens"),
    Case("tgi-without-endpoint", distill("--backend", "tgi"), 1, "--backend tgi needs at least one --endpoint"),
    Case("openai-without-model", lambda c: ["distill", "--recipe", "alpaca", "--source", c.source, "--backend", "openai",
                                            "--endpoint", "http://127.0.0.1:9", "--out", c.out], 1,
         "--backend openai needs --endpoint URL and --model NAME"),
    Case("endpoint-with-password", distill("--backend", "tgi", "--endpoint", f"http://me:{SECRET}@127.0.0.1:9"), 1,
         "has a user:password in it: remove it and put the token in a file", absent=(SECRET,)),
    Case("endpoint-not-a-url", distill("--backend", "tgi", "--endpoint", "gpu1:8080"), 1, "is not an http(s) URL"),
    Case("endpoint-bad-port", distill("--backend", "tgi", "--endpoint", "http://gpu1:80a80"), 1, "is not a valid URL"),
    Case("endpoint-refused", distill("--backend", "tgi", "--endpoint", "http://127.0.0.1:9"), 1,
         "cannot reach http://127.0.0.1:9/info"),
    Case("token-file-missing", distill("--backend", "tgi", "--endpoint", "http://127.0.0.1:9", "--token-file",
                                       lambda c: c.tmp / "no-token"), 1, "no-token"),
    # ---- distill: run directories
    Case("out-is-a-file", distill(out=lambda c: c.f("notes.txt")), 1, "notes.txt exists and is not a directory"),
    Case("out-not-a-run", distill(out=lambda c: c.files), 1,
         "is not empty and is not a run directory", nothing_written=True, unchanged=lambda c: c.files),
    Case("out-other-limit", resume_into(lambda c: c.copy_run(), "--limit", "2"), 1,
         "differs in: --limit (null there, 2 here)", unchanged=lambda c: c.copy_run()),
    Case("out-other-temperature", resume_into(lambda c: c.copy_run(), "--temperature", "0.5"), 1,
         "differs in: --temperature (0.0 there, 0.5 here)", unchanged=lambda c: c.copy_run()),
    # The model folder has no weights: only a refusal made before loading them names the field.
    Case("out-other-run-refused-before-weights",
         resume_into(lambda c: c.copy_run(), "--seed", "7", model=lambda c: c.model_without_weights()), 1,
         "differs in: --seed (0 there, 7 here)", unchanged=lambda c: c.copy_run()),
    Case("retry-failed-without-run", distill("--retry-failed"), 1, "--retry-failed needs an existing run"),
    Case("resume-damaged-shard", resume_into(lambda c: c.damaged_run()), 1,
         "is damaged (", unchanged=lambda c: c.damaged_run()),
    # ---- check
    Case("check-missing-dir", lambda c: ["check", c.tmp / "nope"], 1, "does not exist"),
    Case("check-not-a-run", lambda c: ["check", c.files], 1, "is not a run directory: it has no manifest.json",
         unchanged=lambda c: c.files),
    Case("check-unfinished-run", lambda c: ["check", c.unfinished_run()], 1,
         "is unfinished (interrupted): 2 of 4 rows are not generated yet; run the same `sdft-data distill`",
         unchanged=lambda c: c.unfinished_run()),
    Case("check-damaged-shard", lambda c: ["check", c.damaged_run()], 1,
         "000001.parquet is damaged", unchanged=lambda c: c.damaged_run()),
    # ---- push
    Case("push-no-accepted-rewrite", push(lambda c: c.copy_run()), 1, "pass --allow-no-rewrites",
         unchanged=lambda c: c.copy_run()),
    Case("push-ungenerated-run", push(lambda c: c.unfinished_run()), 1,
         "is not generated yet (2 of 4 rows pending): run the same `sdft-data distill` command",
         unchanged=lambda c: c.unfinished_run()),
    Case("push-max-shard-size-zero", push(lambda c: c.copy_run(), "--max-shard-size", "0"), 2,
         "'--max-shard-size': 0 is not in the range x>=1"),
    Case("push-bad-repo", lambda c: ["push", c.copy_run(), "--repo", "just-a-name", "--hub-dir", c.tmp / "hub"], 1,
         "invalid repo name 'just-a-name'"),
    Case("push-bad-tag", push(lambda c: c.copy_run(), "--tag", "latest", "--allow-no-rewrites"), 1,
         "invalid version tag 'latest'"),
    Case("push-not-a-run", push(lambda c: c.files), 1, "has no manifest.json"),
    # ---- versions, pull
    Case("versions-unknown-local-repo", lambda c: ["versions", "org/unknown", "--hub-dir", c.files], 1,
         "dataset repo org/unknown not found in"),
    Case("versions-missing-local-folder", lambda c: ["versions", "org/data", "--hub-dir", c.tmp / "nope"], 1,
         "publishing folder"),
    Case("versions-bad-repo", lambda c: ["versions", "no-slash", "--hub-dir", c.files], 1, "invalid repo name"),
    Case("pull-unknown-version", lambda c: ["pull", "org/data@v9", "--out", c.out, "--hub-dir", c.files], 1,
         "org/data"),
    Case("pull-bad-version", lambda c: ["pull", "org/data@latest", "--out", c.out, "--hub-dir", c.files], 1,
         "invalid version 'latest'"),
    # ---- diff
    Case("diff-against-missing-path", lambda c: ["diff", c.copy_run(), "--against", c.tmp / "old-run"], 1,
         "--against", unchanged=lambda c: c.copy_run()),
    Case("diff-against-missing-relative", lambda c: ["diff", c.copy_run(), "--against", "./runs/old"], 1,
         "--against ./runs/old: no such file or folder"),
    Case("diff-run-and-pair", lambda c: ["diff", c.copy_run(), "--original", c.source], 1,
         "give either RUN_DIR or --original"),
    Case("diff-pair-incomplete", lambda c: ["diff", "--original", c.source], 1, "missing --distilled, --recipe"),
    Case("diff-examples-negative", lambda c: ["diff", c.copy_run(), "--examples", "-1"], 2,
         "'--examples': -1 is not in the range x>=0"),
    Case("diff-missing-run", lambda c: ["diff", c.tmp / "nope"], 1, "does not exist"),
    Case("diff-tokenizer-not-a-model", lambda c: ["diff", c.copy_run(), "--tokenizer", c.f("not_a_model")], 1,
         "not_a_model holds no tokenizer (no tokenizer.json", unchanged=lambda c: c.copy_run()),
    # ---- tiny-model
    Case("tiny-model-zero-layers", lambda c: ["tiny-model", c.out, "--layers", "0"], 2,
         "'--layers': 0 is not in the range x>=1"),
    Case("tiny-model-small-hidden", lambda c: ["tiny-model", c.out, "--hidden-size", "2"], 2,
         "'--hidden-size': 2 is not in the range x>=8"),
]


def train(*extra, data=None, model=None, out=None) -> Callable[[Ctx], list]:
    """sdft-train train on the shared run (or `data(ctx)`) and model, into a fresh --out (or `out(ctx)`), plus `extra`."""
    def args(c: Ctx) -> list:
        return ["train", "--data", data(c) if data else c.run, "--model", model(c) if model else c.model,
                "--out", out(c) if out else c.out, "--max-steps", "1", "--quiet",
                *[x(c) if callable(x) else x for x in extra]]
    return args


def evaluate(*extra, model=None, tasks="gsm8k", data_dir=None) -> Callable[[Ctx], list]:
    """sdft-train eval of the tiny model on a 2-row GSM8K file (or `data_dir(ctx)`), into a fresh --out."""
    def args(c: Ctx) -> list:
        return ["eval", "--model", model(c) if model else c.model, "--tasks", tasks, "--data-dir",
                data_dir(c) if data_dir else c.f("evaldata"), "--out", c.out, "--quiet",
                *[x(c) if callable(x) else x for x in extra]]
    return args


TRAIN_CASES = [
    Case("train-batch-size-zero", train("--batch-size", "0"), 2, "'--batch-size': 0 is not in the range x>=1"),
    Case("train-max-steps-zero", train("--max-steps", "0"), 2, "'--max-steps': 0 is not in the range x>=1"),
    Case("train-max-length-one", train("--max-length", "1"), 2, "'--max-length': 1 is not in the range x>=2"),
    Case("train-lr-negative", train("--lr", "-1"), 2, "'--lr': -1.0 is not in the range x>0.0"),
    Case("train-epochs-zero", train("--epochs", "0"), 2, "'--epochs': 0.0 is not in the range x>0.0"),
    Case("train-grad-accum-zero", train("--grad-accum", "0"), 2, "'--grad-accum': 0 is not in the range x>=1"),
    Case("train-lora-rank-zero", train("--lora-rank", "0"), 2, "'--lora-rank': 0 is not in the range x>=1"),
    Case("train-responses-unknown", train("--responses", "both"), 2, "'both' is not one of 'sdft', 'original'"),
    Case("train-missing-columns-with-recipe", train("--recipe", "alpaca", data=lambda c: c.f("question_answer.jsonl")),
         1, "lacks column(s) instruction, output that recipe alpaca needs; columns found: question, answer"),
    Case("train-empty-file", train("--recipe", "alpaca", data=lambda c: c.f("empty.jsonl")), 1,
         "empty.jsonl is empty (0 bytes)"),
    Case("train-no-rows", train("--recipe", "alpaca", data=lambda c: c.f("no_rows.json")), 1,
         "no_rows.json: the list is empty: no rows"),
    Case("train-broken-jsonl", train("--recipe", "alpaca", data=lambda c: c.f("broken.jsonl")), 1,
         "broken.jsonl: invalid JSON on line 2"),
    Case("train-missing-data", train(data=lambda c: c.tmp / "nope.parquet"), 1,
         "is neither a file, a run directory nor org/name@version"),
    Case("train-unfinished-run", train(data=lambda c: c.unfinished_run()), 1,
         "is not generated yet (2 of 4 rows pending)", unchanged=lambda c: c.unfinished_run()),
    Case("train-not-a-model-folder", train(model=lambda c: c.f("not_a_model")), 1,
         "is not a model folder (no config.json)"),
    Case("train-missing-model-folder", train(model=lambda c: c.tmp / "models" / "nope"), 1,
         "model folder", ),
    Case("train-unknown-recipe", train("--recipe", "nope"), 2, "'nope' is not one of 'alpaca', 'dolly'"),
    Case("train-unknown-method", train("--method", "grpo"), 2, "'grpo' is not one of 'sft', 'on-policy'"),
    Case("train-on-policy-option-without-it", train("--teacher", "live", "--generations", "4"), 1,
         "--generations, --teacher are for --method on-policy"),
    Case("train-on-policy-generations-not-a-divisor", train("--method", "on-policy", "--generations", "3"), 1,
         "--batch-size x --grad-accum (8) must be a multiple of it"),
    Case("train-on-policy-template-without-context", train("--method", "on-policy", "--teacher-template",
                                                           "{prompt} (see above)"), 1,
         "--teacher-template must hold {privileged_context}"),
    Case("train-on-policy-template-other-field", train("--method", "on-policy", "--teacher-template",
                                                       "{prompt} {privileged_context} {answer}"), 1,
         "--teacher-template may hold only {prompt} and {privileged_context}"),
    Case("train-on-policy-group-by-length", train("--method", "on-policy", "--group-by-length"), 1,
         "--method on-policy draws its prompts with TRL's sampler"),
    Case("train-on-policy-vllm-not-installed", train("--method", "on-policy", "--vllm"), 1,
         "--vllm needs the vllm package"),
]
for case in TRAIN_CASES:
    case.cli = "train"

EVAL_CASES = [
    Case("eval-limit-zero", evaluate("--limit", "0"), 2, "'--limit': 0 is not in the range x>=1"),
    Case("eval-unknown-task", evaluate(tasks="nope"), 1, "unknown --tasks 'nope'; choose one of: gsm8k, multiarith"),
    Case("eval-no-task", lambda c: ["eval", "--model", c.model, "--out", c.out], 1, "pass either --tasks"),
    Case("eval-batch-size-zero", evaluate("--batch-size", "0"), 2, "'--batch-size': 0 is not in the range x>=1"),
    Case("eval-max-new-tokens-zero", evaluate("--max-new-tokens", "0"), 2, "'--max-new-tokens': 0 is not in the range x>=1"),
    Case("eval-samples-zero", evaluate("--samples", "0"), 2, "'--samples': 0 is not in the range x>=1"),
    Case("eval-missing-data-dir", evaluate(data_dir=lambda c: c.tmp / "nodir"), 1,
         "nodir does not exist (a folder laid out like the paper's data folder)"),
    Case("eval-data-file-missing", evaluate(data_dir=lambda c: c.files), 1,
         "gsm8k: no data file"),
    Case("eval-empty-data-file", evaluate(data_dir=lambda c: c.f("evaldata_empty")), 1,
         "gsm8k_test.json is empty (0 bytes)"),
    Case("eval-not-a-model-folder", evaluate(model=lambda c: c.f("not_a_model")), 1,
         "is not a model folder (no config.json)"),
    Case("eval-missing-model-folder", evaluate(model=lambda c: c.tmp / "models" / "nope"), 1,
         "nope does not exist (a Hub model id is ORG/NAME)"),
    Case("eval-tgi-without-endpoint", evaluate("--backend", "tgi"), 1, "--backend tgi needs at least one --endpoint"),
    Case("eval-endpoint-with-password", evaluate("--backend", "tgi", "--endpoint", f"http://me:{SECRET}@127.0.0.1:9"),
         1, "has a user:password in it", absent=(SECRET,)),
]
for case in EVAL_CASES:
    case.cli = "train"



def eval_into(folder: Callable[[Ctx], Path], *extra, model=None) -> Callable[[Ctx], list]:
    """The world's eval command line (as it made c.world["evaluated"]) into `folder`, with `extra` options."""
    def args(c: Ctx) -> list:
        return ["eval", "--model", model(c) if model else c.model, "--tasks", "gsm8k", "--data-dir", c.f("evaldata"),
                "--max-new-tokens", "4", "--out", folder(c), "--quiet", *extra]
    return args


def push_into(run: Callable[[Ctx], Path], repo: str, *extra) -> Callable[[Ctx], list]:
    """push into a fresh --hub-dir (ctx.out: it must not exist after a refused push)."""
    return lambda c: ["push", run(c), "--repo", repo, "--hub-dir", c.out, "--allow-no-rewrites", *extra]


def _edited_readme_license(c: Ctx) -> list:
    # The first version is published; then its README.md is given a license by hand that the Hub refuses.
    hub = c.pushed("gsm8k_run", "org/g", c.tmp / "hub")
    readme = hub / "org" / "g" / "README.md"
    readme.write_text(readme.read_text().replace("license: unknown", "license: my-own-license"))
    return ["push", c.world["gsm8k_run_2"], "--repo", "org/g", "--hub-dir", hub, "--allow-no-rewrites"]


def _other_recipe_into_repo(c: Ctx) -> list:
    # org/data holds the alpaca run as v1; the gsm8k run is pushed into it.
    c.pushed("run", "org/data", c.tmp / "hub")
    return ["push", c.world["gsm8k_run"], "--repo", "org/data", "--hub-dir", c.tmp / "hub", "--allow-no-rewrites"]


LONG_NAME = "a" * 97
TABLE_CHANGED = "distilled.parquet is not the table `sdft-data check` wrote"

# Hardening, round two: each of these was a traceback, a silent acceptance or an unclear line.
ROUND_TWO = [
    # ---- sources whose columns are not text (tracebacks before; the bytes one was a Rust panic)
    Case("source-mixed-types", distill_from(lambda c: c.f("mixed.jsonl")), 1,
         "column 'instruction' mixes types (row 1 is text, row 2 a number): every value of a text column must be text"),
    Case("source-mixed-types-json-list", distill_from(lambda c: c.f("mixed.json")), 1,
         "column 'instruction' mixes types (row 1 is text, row 2 a number)"),
    Case("source-list-column", distill_from(lambda c: c.f("list_output.jsonl")), 1,
         "column 'output' holds lists (list<item: string>), not text"),
    Case("source-list-column-parquet", distill_from(lambda c: c.f("list_output.parquet")), 1,
         "column 'output' holds lists"),
    Case("source-object-column", distill_from(lambda c: c.f("object_instruction.jsonl")), 1,
         "column 'instruction' holds objects (struct<x: string>), not text"),
    Case("source-not-utf8", distill_from(lambda c: c.f("latin1.jsonl")), 1,
         "column 'instruction' is not UTF-8 text in row 1: save the file as UTF-8"),
    Case("max-prompt-chars-zero", distill("--max-prompt-chars", "0"), 2, "'--max-prompt-chars': 0 is not in the range x>=1"),
    Case("diff-pair-mixed-types", lambda c: ["diff", "--original", c.f("mixed.jsonl"), "--distilled", c.f("mixed.jsonl"),
                                             "--recipe", "alpaca", "--out", c.out], 1,
         "mixed.jsonl: column 'instruction' mixes types"),
    Case("import-list-column", lambda c: ["import", "--original", c.f("list_output.jsonl"), "--distilled",
                                          c.f("list_output.jsonl"), "--recipe", "alpaca", "--out", c.out], 1,
         "column 'output' holds lists"),
    # ---- a changed setting into the same --out: named by its option
    Case("out-other-max-new-tokens", resume_into(lambda c: c.copy_run(), "--max-new-tokens", "5"), 1,
         "differs in: --max-new-tokens (4 there, 5 here)", unchanged=lambda c: c.copy_run()),
    Case("out-other-rules", resume_into(lambda c: c.copy_run(), "--rules", "strict"), 1,
         'differs in: --rules ("default" there, "strict" here)', unchanged=lambda c: c.copy_run()),
    Case("out-other-top-k", resume_into(lambda c: c.copy_run(), "--top-k", "5"), 1,
         "differs in: --top-k (50 there, 5 here)", unchanged=lambda c: c.copy_run()),
    # ---- a distilled.parquet cut, edited or replaced by hand after `check` (published as is before)
    Case("push-cut-table", push(lambda c: c.edited_run("cut"), "--allow-no-rewrites"), 1, TABLE_CHANGED,
         unchanged=lambda c: c.edited_run("cut")),
    Case("push-flipped-accepted", push(lambda c: c.edited_run("flip"), "--allow-no-rewrites"), 1, TABLE_CHANGED,
         unchanged=lambda c: c.edited_run("flip")),
    Case("push-flipped-accepted-unhashed-run", push(lambda c: c.edited_run("flip-unhashed"), "--allow-no-rewrites"), 1,
         "holds 4 rows, 4 accepted, and manifest.json says 4 rows, 0 accepted: the table was edited after",
         unchanged=lambda c: c.edited_run("flip-unhashed")),
    Case("push-table-wrong-types", push(lambda c: c.edited_run("types"), "--allow-no-rewrites"), 1,
         "column 'accepted' holds large_string, not boolean", unchanged=lambda c: c.edited_run("types")),
    Case("push-table-garbage", push(lambda c: c.edited_run("garbage"), "--allow-no-rewrites"), 1,
         "edited-garbage/distilled.parquet is not a readable parquet file (",
         unchanged=lambda c: c.edited_run("garbage")),
    Case("diff-cut-table", lambda c: ["diff", c.edited_run("cut")], 1, TABLE_CHANGED,
         unchanged=lambda c: c.edited_run("cut")),
    Case("diff-table-wrong-types", lambda c: ["diff", c.edited_run("types")], 1,
         "column 'accepted' holds large_string, not boolean", unchanged=lambda c: c.edited_run("types")),
    Case("diff-table-garbage", lambda c: ["diff", c.edited_run("garbage")], 1,
         "distilled.parquet is not a readable parquet file", unchanged=lambda c: c.edited_run("garbage")),
    Case("diff-against-edited-run", lambda c: ["diff", c.copy_run(), "--against", c.edited_run("flip")], 1,
         TABLE_CHANGED, unchanged=lambda c: c.copy_run()),
    # ---- publishing what the Hub would refuse, or what would switch `main` to another dataset
    Case("push-other-recipe-into-repo", _other_recipe_into_repo, 1,
         "org/data holds the alpaca dataset (latest v1) and this run is gsm8k: its version would switch `main`",
         unchanged=lambda c: c.tmp / "hub"),
    Case("push-license-unknown", push_into(lambda c: c.copy_run(), "org/data", "--license", "apache"), 1,
         "--license 'apache' is not a license id the Hub accepts (did you mean apache-2.0?)"),
    Case("push-license-edited-in-readme", _edited_readme_license, 1,
         "the license 'my-own-license' in", unchanged=lambda c: c.tmp / "hub"),
    Case("push-repo-name-too-long", push_into(lambda c: c.copy_run(), f"org/{LONG_NAME}"), 1,
         "its name is 97 characters long; the Hub allows at most 96"),
    Case("push-repo-organisation-too-long", push_into(lambda c: c.copy_run(), f"{LONG_NAME}/data"), 1,
         "its organisation is 97 characters long; the Hub allows at most 96"),
    Case("push-repo-dot-git", push_into(lambda c: c.copy_run(), "org/data.git"), 1,
         "the Hub refuses a name that ends in .git"),
    Case("versions-repo-name-too-long", lambda c: ["versions", f"org/{LONG_NAME}", "--hub-dir", c.files], 1,
         "its name is 97 characters long"),
    Case("pull-repo-dot-git", lambda c: ["pull", "org/data.git@v1", "--out", c.out, "--hub-dir", c.files], 1,
         "the Hub refuses a name that ends in .git"),
]

ROUND_TWO_TRAIN = [
    # ---- eval into a folder evaluated another way: the option named, before the model loads
    Case("eval-other-temperature", eval_into(lambda c: c.copy_of("evaluated"), "--temperature", "0.5"), 1,
         "holds an eval made another way (gsm8k, sample 0: differs in --temperature (0.95 there, 0.5 here))",
         unchanged=lambda c: c.copy_of("evaluated")),
    Case("eval-other-seed", eval_into(lambda c: c.copy_of("evaluated"), "--seed", "3"), 1,
         "differs in --seed (0 there, 3 here)", unchanged=lambda c: c.copy_of("evaluated")),
    Case("eval-other-format", eval_into(lambda c: c.copy_of("evaluated"), "--format", "paper"), 1,
         'differs in --format ("chat" there, "paper" here)', unchanged=lambda c: c.copy_of("evaluated")),
    Case("eval-other-max-new-tokens", eval_into(lambda c: c.copy_of("evaluated"), "--max-new-tokens", "5"), 1,
         "differs in --max-new-tokens (4 there, 5 here)", unchanged=lambda c: c.copy_of("evaluated")),
    Case("eval-other-limit", eval_into(lambda c: c.copy_of("evaluated"), "--limit", "1"), 1,
         "differs in --limit (null there, 1 here)", unchanged=lambda c: c.copy_of("evaluated")),
    # The model folder has no weights: only a refusal made before loading them names the option.
    Case("eval-other-run-refused-before-weights",
         eval_into(lambda c: c.unfinished_eval(), "--top-p", "0.5", model=lambda c: c.model_without_weights()), 1,
         "differs in --top-p (0.7 there, 0.5 here)", unchanged=lambda c: c.unfinished_eval()),
    # ---- train: a resume with another setting; files whose columns are not text; an edited table
    Case("train-resume-other-lr", train("--resume", "--lr", "0.5", out=lambda c: c.unfinished_training()), 1,
         "holds another training run (differs in: --lr (0.0001 there, 0.5 here))",
         unchanged=lambda c: c.unfinished_training()),
    Case("train-mixed-types", train("--recipe", "alpaca", data=lambda c: c.f("mixed.jsonl")), 1,
         "mixed.jsonl: column 'instruction' mixes types (row 1 is text, row 2 a number)"),
    Case("train-list-column", train("--recipe", "alpaca", data=lambda c: c.f("list_output.jsonl")), 1,
         "column 'output' holds lists"),
    Case("train-not-utf8", train("--recipe", "alpaca", data=lambda c: c.f("latin1.jsonl")), 1,
         "column 'instruction' is not UTF-8 text in row 1"),
    Case("train-cut-table", train(data=lambda c: c.edited_run("cut")), 1, TABLE_CHANGED,
         unchanged=lambda c: c.edited_run("cut")),
    # ---- compare: a results.json edited by hand into other types
    Case("compare-tasks-a-list", lambda c: ["compare", c.edited_results("tasks-list")], 1,
         "results.json: tasks is a list, which sdft-train eval never writes"),
    Case("compare-score-text", lambda c: ["compare", c.edited_results("score-text")], 1,
         "results.json: tasks.gsm8k.score is text, which sdft-train eval never writes"),
    Case("compare-score-boolean", lambda c: ["compare", c.edited_results("score-true")], 1,
         "results.json: tasks.gsm8k.score is a boolean"),
    Case("compare-samples-text", lambda c: ["compare", c.edited_results("samples-text")], 1,
         "tasks.gsm8k.decoding.samples is text"),
    Case("compare-decoding-missing", lambda c: ["compare", c.edited_results("decoding-missing")], 1,
         "tasks.gsm8k.decoding is missing"),
    Case("compare-model-text", lambda c: ["compare", c.edited_results("model-text")], 1,
         "results.json: model is text"),
]
for case in ROUND_TWO_TRAIN:
    case.cli = "train"

CASES += TRAIN_CASES + EVAL_CASES + ROUND_TWO + ROUND_TWO_TRAIN


def _ids(cases):
    return [c.id for c in cases]


def _check_result(case: Case, code: int, output: str, c: Ctx):
    assert "Traceback" not in output, output
    assert code == case.code, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, output
    assert case.fragment in errors[0], output
    for secret in case.absent:
        assert secret not in output


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_bad_input(case: Case, world, tmp_path):
    c = Ctx(world, tmp_path)
    args = case.args(c)
    watched = case.unchanged(c) if case.unchanged else None
    before = snapshot(watched) if watched else None
    from sdft_train.cli import main as train_cli

    result = _invoke(data_cli if case.cli == "data" else train_cli, args)
    # Anything but a clean exit is an exception the user would see as a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    _check_result(case, result.exit_code, result.output, c)
    if case.nothing_written:
        assert not c.out.exists(), f"{c.out} was written"
    if watched:
        assert snapshot(watched) == before, f"{watched} changed"


def test_there_are_enough_rows():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------- hangs: bounded in time


def _tgi_distill(c: Ctx, url: str, *extra) -> list:
    return ["distill", "--recipe", "alpaca", "--source", c.source, "--backend", "tgi", "--endpoint", url,
            "--out", c.out, "--max-new-tokens", "4", *extra]


def _invoke_bounded(args: list, seconds: float):
    """_invoke in a thread, failing the test (not hanging it) when the command outlives `seconds`."""
    box = {}
    thread = threading.Thread(target=lambda: box.update(result=_invoke(data_cli, args)), daemon=True)
    t = time.monotonic()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s: {args}"
    return box["result"], time.monotonic() - t


def test_a_server_that_takes_connections_and_never_answers_is_refused_within_the_request_timeout(world, tmp_path):
    c = Ctx(world, tmp_path)
    with StallServer() as server:
        result, elapsed = _invoke_bounded(_tgi_distill(c, server.url, "--request-timeout", "1"), 20)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"Error: no answer from {server.url}/info within 1 s" in result.output
    assert elapsed < 10
    assert not c.out.exists()


def test_a_generate_that_never_answers_ends_the_run_within_timeout_and_budget(world, tmp_path):
    c = Ctx(world, tmp_path)
    with FakeTGI(world["model"], "stall") as server:
        result, elapsed = _invoke_bounded(
            _tgi_distill(c, server.url, "--request-timeout", "0.5", "--retry-budget", "1"), 30)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "endpoint down" in error[0] and "no answer within 0.5 s" in error[0]
    assert "run the same command again to resume" in error[0]
    assert elapsed < 15  # 0.5 s requests, 1 s budget, backoff: a few seconds
    manifest = json.loads((c.out / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["counts"]["pending"] == len(ALPACA_ROWS)


@pytest.mark.slow
def test_ctrl_c_says_that_running_again_resumes(world, tmp_path):
    """A real SIGINT, so a real process: while every request stalls."""
    c = Ctx(world, tmp_path)
    with FakeTGI(world["model"], "stall") as server:
        proc = subprocess.Popen([sys.executable, "-m", "sdft_data.cli",
                                 *map(str, _tgi_distill(c, server.url, "--request-timeout", "60"))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                manifest = c.out / "manifest.json"
                if manifest.is_file() and json.loads(manifest.read_text()).get("status") == "generating":
                    break
                time.sleep(0.1)
            time.sleep(0.5)  # requests in flight, all stalled
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "Aborted!" not in err
    assert "Error: interrupted: what finished is saved; run the same command again to resume" in err
    assert json.loads((c.out / "manifest.json").read_text())["status"] == "interrupted"


# ---------------------------------------------------------------- hostile servers: one line, no token elsewhere

# Each row is a TGI (the loopback engine, with HF_TOKEN required) that misbehaves at start-up or in
# every answer; `sdft-data distill` must stop with one Error line, within its deadlines, never
# showing the token, never sending it to the other origin a redirect names.
HOSTILE = [
    ("info-model-id-int", {"info": {"model_id": 12345}}, "/info: model_id is int 12345, not a one-line string"),
    ("info-model-sha-list", {"info": {"model_sha": ["a"]}}, "/info: model_sha is list ['a'], not a one-line string"),
    ("info-concurrency-many", {"info": {"max_concurrent_requests": "many"}},
     "/info: max_concurrent_requests is str 'many', not a positive integer"),
    ("info-total-tokens-text", {"info": {"max_total_tokens": "2048"}},
     "/info: max_total_tokens is str '2048', not a positive integer"),
    ("info-stop-sequences-list", {"info": {"max_stop_sequences": [4]}},
     "/info: max_stop_sequences is list [4], not an integer >= 0"),
    ("info-version-object", {"info": {"version": {"v": 3}}}, "/info: version is dict {'v': 3}, not a one-line string"),
    ("info-redirect-to-another-origin", {"redirect_path": "/info"}, "/info answered 302, a redirect to another origin"),
    ("generate-redirect", {"redirect_path": "/generate", "redirect_status": 307},
     "/generate answered 307, a redirect to"),
    ("info-slow-drip", {"drip": 0.5}, "/info within 2 s (connect to last byte)"),
    ("generate-slow-drip", {"drip": 0.5, "drip_path": "/generate"}, "no answer within 2 s"),
    ("generate-8-MB-text", {"text": "x" * (8 << 20)}, "bytes, more than 1081344)"),  # 1 MB + 8 KB a token
    ("generate-text-too-long-for-4-tokens", {"text": "x" * 5000},
     "5000 characters of text for at most 4 new tokens"),
]


@pytest.mark.parametrize("faults, fragment", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_a_hostile_server_is_one_line_and_keeps_the_token(world, tmp_path, monkeypatch, faults, fragment):
    from helpers.engine_server import EngineServer

    c = Ctx(world, tmp_path)
    monkeypatch.setenv("HF_TOKEN", SECRET)
    with EngineServer(echo=True, model_id=str(world["model"]), token=SECRET) as server, \
            EngineServer(echo=True, model_id=str(world["model"])) as other:
        server.set_faults(**faults, **({"redirect": other.url} if "redirect_path" in faults else {}))
        result, elapsed = _invoke_bounded(_tgi_distill(c, server.url, "--request-timeout", "2", "--retry-budget", "1"),
                                          60)
        assert other.stats["authorization_seen"] == 0 and other.stats["seen"] == 0
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0], result.output
    assert "Traceback" not in result.output and SECRET not in result.output
    assert elapsed < 30


# ---------------------------------------------------------------- wrong answers, long prompts, full disks


def test_answers_with_wrong_types_fail_rows_not_the_process(world, tmp_path):
    from sdft_data.backends import Request
    from sdft_data.backends.openai import parse_completion
    from sdft_data.backends.tgi import parse_generate

    req = Request(0, "p", 1)
    for data in [{"generated_text": 5}, {"generated_text": "x", "details": "oops"}, ["oops"], [],
                 {"generated_text": "x", "details": {"generated_tokens": "many"}}, None]:
        with pytest.raises(ValueError):
            parse_generate(req, data, {})
    for data in [{"choices": "x"}, {"choices": [{"text": 1}]}, {"choices": []}, "oops",
                 {"choices": [{"text": "x"}], "usage": {"completion_tokens": "3"}}]:
        with pytest.raises(ValueError):
            parse_completion(req, data, {})

    # Through the CLI: retried, and the run stops with the reason once the budget is spent.
    c = Ctx(world, tmp_path)
    with FakeTGI(world["model"], "badtypes") as server:
        result = _invoke(data_cli, _tgi_distill(c, server.url, "--retry-budget", "1"))
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "malformed answer (ValueError: generated_text is int, not a string)" in result.output
    manifest = json.loads((c.out / "manifest.json").read_text())
    assert manifest["counts"]["pending"] == len(ALPACA_ROWS)


def test_prompts_too_long_for_the_model_fail_their_row_with_the_reason(world, tmp_path):
    rows = [dict(r) for r in ALPACA_ROWS]
    rows[1]["instruction"] = "word " * 100_000  # 500k characters, far over the 2,048-token context
    source = tmp_path / "long.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    t = time.monotonic()
    result = _invoke(data_cli, ["distill", "--recipe", "alpaca", "--source", source, "--model", world["model"],
                                "--out", out, "--max-new-tokens", "4", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    assert time.monotonic() - t < 30
    gen = pl.read_parquet(out / "generations" / "*.parquet").sort("row_id")
    assert gen["status"].to_list() == ["ok", "failed", "ok", "ok"]
    error = gen["error"][1]
    assert error.startswith("prompt too long: ") and "the model's context of 2048 tokens less --max-new-tokens 4" in error

    # --max-prompt-tokens: every prompt here is longer than 5 tokens; a run of failed rows, not a crash.
    out2 = tmp_path / "run2"
    result = _invoke(data_cli, ["distill", "--recipe", "alpaca", "--source", world["source"], "--model",
                                world["model"], "--out", out2, "--max-new-tokens", "4", "--max-prompt-tokens", "5"])
    assert result.exit_code == 0, result.output
    assert f"failed {len(ALPACA_ROWS)}" in result.output
    errors = pl.read_parquet(out2 / "generations" / "*.parquet")["error"].to_list()
    assert all(e.endswith("more than 5 (--max-prompt-tokens 5)") for e in errors)


def test_a_full_disk_says_so_and_running_again_finishes(world, tmp_path):
    c = Ctx(world, tmp_path)
    run = c.unfinished_run()
    # The next shard's temporary file is /dev/full: every write to it fails with ENOSPC.
    (run / "generations" / ".000002.parquet.tmp").symlink_to("/dev/full")
    again = resume_into(lambda c: run)(c)
    result = _invoke(data_cli, again)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    assert f"Error: disk full writing {run / 'generations' / '000002.parquet'} (No space left on device): free " \
           "space on that disk and run the same command again" in result.output
    assert not (run / "generations" / "000002.parquet").exists()

    result = _invoke(data_cli, again)
    assert result.exit_code == 0, result.output
    gen = pl.read_parquet(run / "generations" / "*.parquet")
    assert sorted(gen["row_id"].to_list()) == list(range(len(ALPACA_ROWS))), "every row once"

    # check's output file on a full disk: one line, the old distilled.parquet untouched.
    before = (run / "distilled.parquet").read_bytes()
    (run / ".distilled.parquet.tmp").symlink_to("/dev/full")
    result = _invoke(data_cli, ["check", run])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "Error: disk full" in result.output and "run the same command again" in result.output
    assert (run / "distilled.parquet").read_bytes() == before


def test_distill_warns_when_the_rewrites_were_cut_short(world):
    assert "warning: 4 of 4 rewrites (100%) were cut off at --max-new-tokens 4 and fell back to the original: " \
           "raise --max-new-tokens" in world["distill_output"]


# ---------------------------------------------------------------- hardening, round two: faults


def test_rows_without_an_instruction_or_a_reference_are_never_sent_nor_accepted(world, tmp_path):
    rows = [{"instruction": None, "input": "", "output": "Red."},
            {"instruction": "Name a color.", "input": "", "output": None},
            {"instruction": "   ", "input": "", "output": "Blue."},
            dict(ALPACA_ROWS[3])]
    source = tmp_path / "nulls.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    result = _invoke(data_cli, ["distill", "--recipe", "alpaca", "--source", source, "--model", world["model"],
                                "--out", out, "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output
    gen = pl.read_parquet(out / "generations" / "*.parquet").sort("row_id")
    assert gen["status"].to_list() == ["failed", "failed", "failed", "ok"]
    assert gen["error"].to_list()[:3] == [
        "the source row has no instruction (null or empty): not sent",
        "the source row has no reference response (null or empty): not sent",
        "the source row has no instruction (null or empty): not sent"]
    table = pl.read_parquet(out / "distilled.parquet").sort("row_id")
    assert table["reason"].to_list()[:3] == ["no_instruction", "no_reference", "no_instruction"]
    assert not any(table["accepted"])

    # The check itself: alpaca has no task check, and a rewrite of nothing was accepted.
    from sdft_data.check import check_frame
    from sdft_data.recipes import get_recipe

    frame = pl.DataFrame({"instruction": ["Name a color.", ""], "reference": ["", "Red."],
                          "rewrite": ["Blue is a colour.", "Red is a colour."]})
    checked = check_frame(frame, get_recipe("alpaca")).collect()
    assert checked["reason"].to_list() == ["no_reference", "no_instruction"] and not any(checked["accepted"])


def test_a_prompt_over_max_prompt_chars_fails_its_row_before_any_tokenizer_sees_it(world, tmp_path):
    rows = [dict(r) for r in ALPACA_ROWS]
    rows[1]["input"] = "word " * 10_000  # 50,000 characters: a tokenizer would count 10,000 tokens
    source = tmp_path / "long.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "run"
    result = _invoke(data_cli, ["distill", "--recipe", "alpaca", "--source", source, "--model", world["model"],
                                "--out", out, "--max-new-tokens", "4", "--max-prompt-chars", "20000"])
    assert result.exit_code == 0, result.output
    gen = pl.read_parquet(out / "generations" / "*.parquet").sort("row_id")
    assert gen["status"].to_list() == ["ok", "failed", "ok", "ok"]
    assert gen["error"][1].startswith("prompt too long: 50,0") and \
        "characters, more than --max-prompt-chars 20,000 (tokenizing it would take about" in gen["error"][1]

    # Eval's prompts go through the same bound (rendered prompts, checked as they are sent).
    from sdft_train.cli import main as train_cli

    result = _invoke(train_cli, ["eval", "--model", world["model"], "--tasks", "gsm8k", "--data-dir",
                                 world["files"] / "evaldata", "--max-new-tokens", "4", "--out", tmp_path / "eval",
                                 "--quiet", "--max-prompt-chars", "20"])
    assert result.exit_code == 0, result.output
    gen = pl.read_parquet(tmp_path / "eval" / "runs" / "gsm8k" / "sample-0" / "generations" / "*.parquet")
    assert gen["status"].to_list() == ["failed", "failed"]
    assert all("more than --max-prompt-chars 20 " in e for e in gen["error"])


_PEAK_RSS = """
import resource, sys
from sdft_data.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    print("peak-rss-kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


@pytest.mark.slow
def test_one_huge_row_costs_memory_by_its_size_not_by_its_tokens(world, tmp_path):
    """A 10 MB row took 2.7 GB to tokenize (a 200 MB one past 20 GB, and the kernel killed the run)."""
    def peak(source: Path, out: Path) -> int:
        proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, "distill", "--recipe", "alpaca", "--source",
                               str(source), "--model", str(world["model"]), "--out", str(out), "--max-new-tokens", "4"],
                              capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr[-2000:]
        return int(proc.stdout.split("peak-rss-kb")[-1]) * 1024

    rows = [dict(r) for r in ALPACA_ROWS]
    rows[2]["input"] = "word " * 2_000_000  # 10 MB
    big = tmp_path / "big.jsonl"
    big.write_text("".join(json.dumps(r) + "\n" for r in rows))
    extra = peak(big, tmp_path / "big-run") - peak(world["source"], tmp_path / "small-run")
    assert extra < 700e6, f"a 10 MB row took {extra / 1e9:.2f} GB more"
    gen = pl.read_parquet(tmp_path / "big-run" / "generations" / "*.parquet").sort("row_id")
    assert gen["status"].to_list() == ["ok", "ok", "failed", "ok"]
    assert "more than --max-prompt-chars 1,000,000" in gen["error"][2]


@pytest.mark.slow
def test_sigterm_keeps_the_finished_rows_and_says_so(world, tmp_path):
    """SIGTERM (a scheduler, `kill`) used to kill the run outright, with up to 1,024 finished rows unflushed."""
    source = tmp_path / "many.jsonl"
    source.write_text("".join(json.dumps({"instruction": f"Say {i}.", "input": "", "output": f"{i}."}) + "\n"
                              for i in range(3000)))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "sdft_data.cli", "distill", "--recipe", "alpaca", "--source",
                             str(source), "--model", str(world["model"]), "--out", str(out), "--max-new-tokens", "8",
                             "--batch-size", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            manifest = out / "manifest.json"
            if manifest.is_file() and json.loads(manifest.read_text()).get("status") == "generating":
                break
            time.sleep(0.2)
        time.sleep(4)  # rows finish, none is flushed yet (every 10 s or 1,024 rows)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "Traceback" not in err
    assert "Error: terminated (SIGTERM): what finished is saved; run the same command again to resume" in err
    manifest = json.loads((out / "manifest.json").read_text())
    saved = pl.read_parquet(out / "generations" / "*.parquet").height
    assert manifest["status"] == "interrupted" and 0 < saved < 3000
    assert manifest["counts"]["ok"] == saved and manifest["counts"]["pending"] == 3000 - saved


_READ_ONLY = """
import json, shutil, subprocess, sys
from pathlib import Path
from click.testing import CliRunner
from sdft_data.cli import main as data_cli
from sdft_train.cli import main as train_cli

run, model, evaldata, scratch = map(Path, sys.argv[1:5])
ro = scratch / "ro"
ro.mkdir()
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(ro)], check=True)
shutil.copytree(run, ro / "run")
(ro / "hub").mkdir()
subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
w = scratch / "w"
common = ["--recipe", "alpaca", "--source", str(run.parent / "alpaca.jsonl"), "--model", str(model),
          "--max-new-tokens", "4", "--temperature", "0"]
commands = {
    "distill-new": (data_cli, ["distill", *common, "--out", ro / "new"]),
    "distill-resume": (data_cli, ["distill", *common, "--out", ro / "run"]),
    "check": (data_cli, ["check", ro / "run"]),
    "diff": (data_cli, ["diff", ro / "run"]),
    "diff-elsewhere": (data_cli, ["diff", ro / "run", "--out", w / "report"]),
    "push-from-read-only-run": (data_cli, ["push", ro / "run", "--repo", "org/d", "--hub-dir", w / "hub",
                                           "--allow-no-rewrites"]),
    "push-into-read-only-folder": (data_cli, ["push", run, "--repo", "org/d", "--hub-dir", ro / "hub",
                                              "--allow-no-rewrites"]),
    "pull": (data_cli, ["pull", "org/d@v1", "--hub-dir", w / "hub", "--out", ro / "pulled"]),
    "import": (data_cli, ["import", "--original", run.parent / "alpaca.jsonl", "--distilled",
                          run.parent / "alpaca.jsonl", "--recipe", "alpaca", "--out", ro / "imported"]),
    "tiny-model": (data_cli, ["tiny-model", ro / "tiny"]),
    "train": (train_cli, ["train", "--data", run, "--model", model, "--out", ro / "ckpt", "--max-steps", "1",
                          "--quiet"]),
    "eval": (train_cli, ["eval", "--model", model, "--tasks", "gsm8k", "--data-dir", evaldata, "--max-new-tokens",
                         "4", "--out", ro / "eval", "--quiet"]),
}
out = {}
for name, (cli, args) in commands.items():
    result = CliRunner().invoke(cli, [str(a) for a in args])
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    out[name] = {"code": result.exit_code, "output": result.output, "crashed": crashed}
print("RESULTS" + json.dumps(out))
"""


@pytest.mark.slow
def test_a_read_only_file_system_is_one_line_for_every_command(world, tmp_path):
    """EROFS is an OSError, not a PermissionError: six commands showed a traceback. A real read-only mount,
    in a user and mount namespace of its own (skipped where the kernel allows none)."""
    import shutil as sh

    if sh.which("unshare") is None or subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode:
        pytest.skip("no user namespaces here: cannot mount a read-only file system")
    proc = subprocess.run(["unshare", "-Urm", sys.executable, "-c", _READ_ONLY, str(world["run"]), str(world["model"]),
                           str(world["files"] / "evaldata"), str(tmp_path)], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert "RESULTS" in proc.stdout, proc.stderr[-3000:]
    results = json.loads(proc.stdout.split("RESULTS", 1)[1])
    # Reading a read-only run is fine: its report is made elsewhere, nothing is written into it.
    for name in ("diff-elsewhere", "push-from-read-only-run"):
        assert results.pop(name)["code"] == 0
    assert len(results) == 10
    for name, r in results.items():
        errors = [line for line in r["output"].splitlines() if line.startswith("Error:")]
        assert not r["crashed"] and r["code"] == 1 and "Traceback" not in r["output"], (name, r["output"][-2000:])
        assert len(errors) == 1 and "read-only file system" in errors[0] and "nothing was changed there" in errors[0], \
            (name, r["output"][-2000:])
