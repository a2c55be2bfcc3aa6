"""The run engine: resume after SIGKILL, fingerprints, refusals, and bad input."""

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from sdft_data.backends import GenerationParams, ModelInfo, Request, Result
from sdft_data.backends.local import LocalBackend
from sdft_data.cli import main
from sdft_data.recipes import get_recipe
from sdft_data.run import distill, generate_run, generations, row_seed

from conftest import GSM8K_ROWS

PARAMS = GenerationParams(max_new_tokens=8, temperature=0.95, top_p=0.7)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return LocalBackend(str(tiny_model_dir), batch_size=4)


def _distill(engine, source, out, **kw):
    kw.setdefault("decoding", PARAMS)
    kw.setdefault("recipe", "gsm8k")
    return distill(source=str(source), out=out, engine=engine, progress=False, **kw)


def test_distill_writes_a_complete_run(engine, gsm8k_file, tmp_path):
    summary = _distill(engine, gsm8k_file, tmp_path / "run")
    run = tmp_path / "run"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["fingerprint"] == summary.fingerprint
    assert manifest["counts"] == {"rows": 6, "ok": 6, "failed": 0, "pending": 0}
    assert manifest["fingerprint_inputs"]["source"]["id"] == "gsm8k_small.json"
    assert manifest["fingerprint_inputs"]["model"]["revision"].startswith("sha256:")
    assert manifest["fingerprint_inputs"]["template"]["format"] == "chat"
    assert manifest["tokens"]["generated"] > 0
    assert manifest["status"] == "generated"
    distilled = pl.read_parquet(run / "distilled.parquet")
    assert distilled.columns[:2] == ["question", "answer"]
    assert distilled["row_id"].to_list() == list(range(6))
    # Random-weight text never states the right answer, so every row falls back to the normalised reference.
    assert distilled["original_response"][0] == "Tom has 3 + 4 = 7 apples.\nThe answer is 7."
    assert distilled.filter(~pl.col("accepted"))["answer"].to_list() == distilled.filter(~pl.col("accepted"))["original_response"].to_list()
    gen = generations(run).collect()
    assert gen["seed"].to_list() == [row_seed(0, i) for i in range(6)]
    # A second identical call resumes and generates nothing.
    again = _distill(engine, gsm8k_file, run)
    assert again.resumed and again.generated_now == 0


def test_fingerprint_covers_every_input(engine, gsm8k_file, tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    _distill(engine, gsm8k_file, run, limit=2)
    other_file = tmp_path / "other.json"
    other_file.write_text(json.dumps(GSM8K_ROWS[::-1]))
    bumped = dataclasses.replace(get_recipe("gsm8k"), version=get_recipe("gsm8k").version + 1)
    # Named by the option that changed where there is one.
    changes = {
        "--source": dict(source=other_file),
        "recipe": dict(recipe=bumped),
        "template": dict(format="paper", paper_layout="llama2"),
        "--max-new-tokens": dict(max_new_tokens=9),
        "--seed": dict(seed=1),
    }
    for key, change in changes.items():
        kw = dict(limit=2) | change
        source = kw.pop("source", gsm8k_file)
        with pytest.raises(ValueError, match=f"holds a different run .*differs in: {key}"):
            _distill(engine, source, run, **kw)
    with pytest.raises(ValueError, match="differs in: --limit"):
        _distill(engine, gsm8k_file, run, limit=3)
    from sdft_data.tiny import build_tiny_model

    other_model = LocalBackend(str(build_tiny_model(tmp_path / "m2", seed=1)))
    with pytest.raises(ValueError, match="differs in: --model"):
        _distill(other_model, gsm8k_file, run, limit=2)
    assert len(list((run / "generations").glob("*.parquet"))) == 1, "a refused run must write nothing"


KILL_SCRIPT = """
import sys
from sdft_data.backends import GenerationParams, ModelInfo, Request, Result
from sdft_data.run import distill
distill(recipe="gsm8k", source=sys.argv[1], out=sys.argv[2], model=sys.argv[3], batch_size=2,
        max_new_tokens=24, flush_rows=2, progress=False)
"""


@pytest.mark.slow
def test_sigkill_then_resume_equals_uninterrupted(tiny_model_dir, tmp_path):
    rows = [dict(r, question=f"{r['question']} (variant {i})") for i in range(5) for r in GSM8K_ROWS]
    source = tmp_path / "gsm8k30.json"
    source.write_text(json.dumps(rows))
    env = dict(os.environ, PYTHONPATH=os.getcwd())

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, source, killed, tiny_model_dir], env=env)
    deadline = time.monotonic() + 120
    while len(list((killed / "generations").glob("*.parquet"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = generations(killed).collect()
    assert 0 < len(partial) < len(rows)
    assert not (killed / "distilled.parquet").exists()

    subprocess.run([sys.executable, "-c", KILL_SCRIPT, source, killed, tiny_model_dir], env=env, check=True)
    whole = tmp_path / "whole"
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, source, whole, tiny_model_dir], env=env, check=True)

    resumed_gen = pl.concat([pl.read_parquet(p) for p in sorted((killed / "generations").glob("*.parquet"))])
    assert sorted(resumed_gen["row_id"].to_list()) == list(range(len(rows))), "every row exactly once"
    assert_frame_equal(pl.read_parquet(killed / "distilled.parquet"), pl.read_parquet(whole / "distilled.parquet"))
    manifest = json.loads((killed / "manifest.json").read_text())
    killed_session, resumed_session = manifest["sessions"]
    assert killed_session["finished_at"] is None, "a SIGKILLed session leaves its trace"
    assert resumed_session["rows"] == len(rows) - len(partial)


def _cli(*args):
    return CliRunner().invoke(main, list(map(str, args)))


@pytest.mark.parametrize(
    "make_source, extra, message",
    [
        (lambda p: p.write_text(json.dumps([{"q": "x", "a": "y"}])), [], "missing column(s) question, answer; columns found: q, a"),
        (lambda p: p.write_text("[]"), [], "is empty"),
        (lambda p: p.write_text("{not json"), [], "cannot read source"),
        (lambda p: p.write_bytes(b""), [], "is empty (0 bytes)"),  # --limit 0 is click's range check now
        (lambda p: None, [], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path, make_source, extra, message):
    source = tmp_path / "src.json"
    make_source(source)
    out = tmp_path / "out"
    result = _cli("distill", "--recipe", "gsm8k", "--source", source, "--model", tiny_model_dir, "--out", out, *extra)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not out.exists()


def test_unknown_recipe_lists_the_registry(tmp_path, gsm8k_file):
    # The CLI's --recipe choices come from the registry; the library says the same in its own words.
    result = _cli("distill", "--recipe", "gsm9k", "--source", gsm8k_file, "--model", "m", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "'gsm9k' is not one of 'alpaca', 'dolly', 'gsm8k', 'magicoder', 'openfunctions', 'toy', 'custom'" in result.output
    with pytest.raises(ValueError, match="unknown --recipe 'gsm9k'; choose one of: alpaca, dolly"):
        distill(recipe="gsm9k", source=str(gsm8k_file), out=tmp_path / "o", model="m")
    assert not (tmp_path / "o").exists()


def test_not_a_model_folder(tmp_path, gsm8k_file):
    (tmp_path / "notamodel").mkdir()
    result = _cli("distill", "--recipe", "gsm8k", "--source", gsm8k_file, "--model", tmp_path / "notamodel",
                  "--out", tmp_path / "out")
    assert result.exit_code == 1 and "is not a model folder" in result.output
    assert not (tmp_path / "out").exists()


def test_out_dir_that_is_not_a_run_is_refused(tiny_model_dir, gsm8k_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    result = _cli("distill", "--recipe", "gsm8k", "--source", gsm8k_file, "--model", tiny_model_dir, "--out", out)
    assert result.exit_code == 1 and "is not a run directory" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]


def test_every_command_has_help():
    for name, command in main.commands.items():
        result = _cli(name, "--help")
        assert result.exit_code == 0, name
        assert command.help and len(command.help.strip()) > 20, f"{name} has no real help"


def test_custom_recipe_from_a_local_file(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "custom"
    result = _cli("distill", "--recipe", "custom", "--source", alpaca_file, "--prompt-column", "instruction",
                  "--input-column", "input", "--response-column", "output", "--template", "refer",
                  "--model", tiny_model_dir, "--out", out, "--max-new-tokens", "4", "--format", "paper")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    recipe = manifest["fingerprint_inputs"]["recipe"]
    assert (recipe["name"], recipe["prompt_column"], recipe["input_column"]) == ("custom", "instruction", "input")
    assert manifest["fingerprint_inputs"]["template"]["example"].startswith(
        "Below are an instruction that describes a task along with a reference answer. Refer to")  # no BOS: the authors' bytes
    distilled = pl.read_parquet(out / "distilled.parquet")
    assert distilled.columns[:3] == ["instruction", "input", "output"] and distilled.height == 4
    # A custom recipe without its columns is refused in one line.
    missing = _cli("distill", "--recipe", "custom", "--source", alpaca_file, "--model", tiny_model_dir,
                   "--out", tmp_path / "x")
    assert missing.exit_code == 1 and "--prompt-column and --response-column" in missing.output


def test_custom_recipe_needs_a_source(tiny_model_dir, tmp_path):
    result = _cli("distill", "--recipe", "custom", "--prompt-column", "q", "--response-column", "a",
                  "--model", tiny_model_dir, "--out", tmp_path / "x")
    assert result.exit_code == 1 and "has no default source: pass --source" in result.output
    assert not (tmp_path / "x").exists()


def test_a_run_being_written_by_another_process_is_refused(engine, gsm8k_file, tmp_path):
    import fcntl

    run = tmp_path / "run"
    _distill(engine, gsm8k_file, run, limit=2)
    with open(run / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="another process is writing"):
            _distill(engine, gsm8k_file, run, limit=2)
    assert _distill(engine, gsm8k_file, run, limit=2).resumed  # released: the run goes on


def test_progress_shows_tokens_while_a_batch_is_still_running(tmp_path, capsys, monkeypatch):
    import sdft_data.run as run_module

    monkeypatch.setattr(run_module, "PROGRESS_SECONDS", 0)

    class OneBatch:
        """Two rows generated together: their tokens come long before either row is done."""

        info = ModelInfo(backend="stub", model_id="stub", revision=None)
        on_tokens = None

        def generate(self, requests, params):
            requests = list(requests)
            for _ in range(3):
                self.on_tokens(len(requests))
            for r in requests:
                yield Result(r.row_id, "text", finish_reason="length", prompt_tokens=1, generated_tokens=3)

    engine = OneBatch()
    generate_run(tmp_path / "run", inputs={"stub": 1}, rows=2, requests=[Request(0, "a", 0), Request(1, "b", 1)],
                 engine=engine, params=GenerationParams(max_new_tokens=3), progress=True)
    bar = capsys.readouterr().err
    assert re.search(r" 0/2 \[[^\]]*tokens=6", bar), bar
    assert re.search(r" 2/2 \[[^\]]*tokens=6", bar)
    assert engine.on_tokens is None
