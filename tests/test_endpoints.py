"""The tgi and openai backends against the loopback engine server: equal to local, and through faults.

Everything goes over real HTTP to tests/helpers/engine_server.py, running in
its own thread (or, for the killed run, the client runs in its own process).
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from itertools import count

import polars as pl
import pytest
from click.testing import CliRunner

from sdft_data.backends import GenerationParams, Request
from sdft_data.backends._http import EndpointDown, EndpointError, RetryPolicy, error_text
from sdft_data.backends.local import LocalBackend
from sdft_data.backends.openai import OpenAIBackend
from sdft_data.backends.tgi import TGIBackend
from helpers.engine_server import EngineServer, Faults

from conftest import GSM8K_ROWS

GREEDY = GenerationParams(max_new_tokens=20, temperature=0)
SAMPLED = GenerationParams(max_new_tokens=20, temperature=0.95, top_p=0.7)
# Retries in milliseconds rather than seconds, so fault tests take well under a second.
FAST = RetryPolicy(max_attempts=6, backoff_base=0.01, backoff_cap=0.05, request_timeout=10)
TRANSIENT_20 = dict(rate_429=0.05, rate_503=0.05, rate_424=0.03, rate_500=0.03, rate_drop=0.04, retry_after=0.02)
TOKEN = "hf_TopSecretLoopbackToken123"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def prompts(tiny_model_dir):
    """Chat-template prompts (starting with the BOS text) with the GSM8K-style prefill."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    questions = [f"{r['question']} ({i})" for i in range(7) for r in GSM8K_ROWS][:40]
    return [
        tok.apply_chat_template([{"role": "system", "content": "You are an expert in math."},
                                 {"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        + "Great! Let's think step by step. "
        for q in questions
    ]


@pytest.fixture(scope="module")
def local(tiny_model_dir):
    return LocalBackend(str(tiny_model_dir), batch_size=4)


@pytest.fixture(scope="module")
def local_greedy(local, prompts):
    return _collect(local.generate(_requests(prompts), GREEDY))


@pytest.fixture(scope="module")
def servers(tiny_model_dir):
    """Two model servers serving the same model, as two GPUs would."""
    with EngineServer(tiny_model_dir, model_sha="f" * 40) as a, EngineServer(tiny_model_dir, model_sha="f" * 40) as b:
        yield a, b


@pytest.fixture
def server(servers):
    """The first server, with faults and counters cleared."""
    for s in servers:
        s.set_faults(**vars(Faults()))
        s.reset_stats()
        s.token = None
    return servers[0]


def _requests(prompts, seed=1000):
    return [Request(row_id=i, prompt=p, seed=seed + i) for i, p in enumerate(prompts)]


def _collect(results):
    """Results by row id, failing on any duplicate."""
    out = {}
    for r in results:
        assert r.row_id not in out, f"row {r.row_id} answered twice"
        out[r.row_id] = r
    return out


def _fields(results):
    return {i: (r.text, r.finish_reason, r.generated_tokens, r.prompt_tokens) for i, r in results.items()}


def _echo_server(tiny_model_dir, **kw):
    """A model-free server that still names the tiny model, so backends load its tokenizer."""
    return EngineServer(echo=True, model_id=str(tiny_model_dir), **kw)


# ---------------------------------------------------------------- greedy equals local


def test_tgi_greedy_equals_local_backend(server, prompts, local_greedy):
    backend = TGIBackend([server.url], policy=FAST)
    got = _collect(backend.generate(_requests(prompts), GREEDY))
    assert _fields(got) == _fields(local_greedy)
    assert {r.status for r in got.values()} == {"ok"} and {r.attempts for r in got.values()} == {1}
    assert backend.info.model_id == str(server.model_id) and backend.info.revision == "f" * 40
    assert backend.info.extra["endpoints"] == [server.url]


def test_openai_greedy_equals_local_backend(server, prompts, local_greedy):
    backend = OpenAIBackend([server.url + "/v1/"], model=server.served_name, policy=FAST)
    got = _collect(backend.generate(_requests(prompts), GREEDY))
    assert _fields(got) == _fields(local_greedy)
    # The server is a TGI: its /info tells the revision.
    assert backend.info.revision == "f" * 40


@pytest.fixture(scope="module")
def bos_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model with a tokenizer that adds its BOS itself, like Llama's."""
    out = tmp_path_factory.mktemp("bos-model")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    tok = json.loads((out / "tokenizer.json").read_text())
    bos = {"SpecialToken": {"id": "<s>", "type_id": 0}}
    tok["post_processor"]["single"].insert(0, bos)
    tok["post_processor"]["pair"].insert(0, bos)
    tok["post_processor"]["special_tokens"] = {"<s>": {"id": "<s>", "ids": [0], "tokens": ["<s>"]}}
    (out / "tokenizer.json").write_text(json.dumps(tok))
    return out


def test_a_bos_adding_tokenizer_does_not_get_two_bos(bos_model_dir, prompts):
    import httpx

    local = _collect(LocalBackend(str(bos_model_dir)).generate(_requests(prompts[:6]), GREEDY))
    with EngineServer(bos_model_dir) as s:
        backend = TGIBackend([s.url], policy=FAST)
        assert backend.info.extra["strips_leading_bos"]
        assert _fields(_collect(backend.generate(_requests(prompts[:6]), GREEDY))) == _fields(local)
        oai = OpenAIBackend([s.url], model=s.served_name, policy=FAST)
        assert _fields(_collect(oai.generate(_requests(prompts[:6]), GREEDY))) == _fields(local)
        # What the stripping prevents: the prompt as rendered gets a second BOS on the server.
        raw = httpx.post(s.url + "/generate", json={"inputs": prompts[0], "parameters": {"max_new_tokens": 1}})
        assert int(raw.headers["x-prompt-tokens"]) == local[0].prompt_tokens + 1


def test_sampling_follows_each_rows_seed(server, prompts):
    for backend in (TGIBackend([server.url], policy=FAST),
                    OpenAIBackend([server.url], model=server.served_name, policy=FAST)):
        first = _collect(backend.generate(_requests(prompts[:8]), SAMPLED))
        again = _collect(backend.generate(_requests(prompts[:8]), SAMPLED))
        other = _collect(backend.generate(_requests(prompts[:8], seed=5), SAMPLED))
        assert {i: r.text for i, r in first.items()} == {i: r.text for i, r in again.items()}
        assert {i: r.text for i, r in first.items()} != {i: r.text for i, r in other.items()}
    # top_p 1 means no nucleus filtering; TGI refuses top_p >= 1, so it must not be sent.
    full = _collect(TGIBackend([server.url], policy=FAST).generate(
        _requests(prompts[:2]), GenerationParams(max_new_tokens=4, temperature=1.0, top_p=1.0)))
    assert {r.status for r in full.values()} == {"ok"}


def test_stop_sequences_end_the_text_alike_on_every_backend(server, prompts, local_greedy, local):
    text = local_greedy[0].text
    stop = next(text[i:i + 3] for i in range(4, len(text) - 3) if text[i:i + 3] not in text[:i + 2])
    params = GenerationParams(max_new_tokens=20, temperature=0, stop=(stop,))
    expected = text[: text.index(stop) + len(stop)]
    for backend in (local, TGIBackend([server.url], policy=FAST),
                    OpenAIBackend([server.url], model=server.served_name, policy=FAST)):
        (r,) = backend.generate(_requests(prompts[:1]), params)
        assert (r.text, r.finish_reason) == (expected, "stop_sequence"), type(backend).__name__


# ---------------------------------------------------------------- faults


def test_twenty_percent_transient_faults_cost_retries_not_rows(servers, server, prompts, local_greedy):
    for seed, s in enumerate(servers):
        # Each kind of fault at least once, then 20% of requests at random.
        s.set_faults(**TRANSIENT_20, seed=seed, script=[429, 503, 424, 500, "drop"])
    backend = TGIBackend([s.url for s in servers], concurrency=3, policy=FAST)
    got = _collect(backend.generate(_requests(prompts), GREEDY))
    assert sorted(got) == list(range(len(prompts)))
    assert {r.status for r in got.values()} == {"ok"}
    assert _fields(got) == _fields(local_greedy), "a retried row generates the same text"
    assert backend.retries > 0 and backend.retries == sum(r.attempts - 1 for r in got.values())
    for s in servers:
        stats = s.stats
        assert stats["by_status"].get("200", 0) > 0, "requests are spread across endpoints"
        assert stats["max_in_flight"] <= 3, "each endpoint keeps its own limit"
        assert stats["dropped"] > 0 and all(stats["by_status"][k] > 0 for k in ("429", "503", "424", "500"))


def test_a_422_fails_only_that_row_with_its_reason(server, prompts):
    server.set_faults(reject=r"\(3\)")  # the rows whose question ends in "(3)"
    got = _collect(TGIBackend([server.url], policy=FAST).generate(_requests(prompts), GREEDY))
    failed = {i for i, r in got.items() if r.status == "failed"}
    assert failed == {i for i, p in enumerate(prompts) if "(3)" in p} and failed
    for i in failed:
        r = got[i]
        assert r.text is None and r.attempts == 1
        assert r.error.startswith("HTTP 422: validation Input validation error") and "\n" not in r.error
    assert all(got[i].status == "ok" for i in set(got) - failed)


def test_overload_halves_concurrency_and_every_row_finishes(tiny_model_dir, prompts, caplog):
    with _echo_server(tiny_model_dir, max_concurrent_requests=2, faults=Faults(latency=0.02)) as s:
        backend = TGIBackend([s.url], concurrency=16, policy=FAST)
        with caplog.at_level(logging.INFO, logger="sdft_data.backends"):
            got = _collect(backend.generate(_requests(prompts), GREEDY))
        assert {r.status for r in got.values()} == {"ok"} and len(got) == len(prompts)
        assert s.stats["by_status"]["429"] > 0
        assert "overloaded: concurrency 16 -> 8" in caplog.text


def test_retry_after_is_honoured(server, prompts):
    server.set_faults(script=[429], retry_after=0.4)
    t = time.monotonic()
    (r,) = TGIBackend([server.url], policy=FAST).generate(_requests(prompts[:1]), GREEDY)
    assert r.status == "ok" and r.attempts == 2
    assert time.monotonic() - t >= 0.4


def test_request_timeout_bounds_a_hanging_call(server, prompts):
    server.set_faults(script=["hang"], hang=20)
    policy = RetryPolicy(max_attempts=3, backoff_base=0.01, request_timeout=0.5)
    t = time.monotonic()
    (r,) = TGIBackend([server.url], policy=policy).generate(_requests(prompts[:1]), GREEDY)
    assert r.status == "ok" and r.attempts == 2
    assert time.monotonic() - t < 5


def test_an_endpoint_that_stays_down_fails_the_run_after_what_finished(tiny_model_dir, prompts):
    policy = RetryPolicy(max_attempts=3, backoff_base=0.02, backoff_cap=0.1, request_timeout=5)
    with _echo_server(tiny_model_dir, faults=Faults(latency=0.01)) as s:
        backend = TGIBackend([s.url], concurrency=2, policy=policy)
        results = backend.generate(_requests(prompts), GREEDY)
        seen = [next(results).row_id for _ in range(4)]
        s.set_faults(down=True)
        t = time.monotonic()
        with pytest.raises(EndpointDown) as e:
            seen += [r.row_id for r in results]
        assert time.monotonic() - t < 5
    message = str(e.value)
    assert message.startswith(f"endpoint down: {s.url} (") and "run the same command again to resume" in message
    assert "\n" not in message
    assert len(seen) == len(set(seen)) and 4 <= len(seen) < len(prompts)


def test_the_retry_budget_stops_a_run_however_many_attempts_are_left(tiny_model_dir, prompts):
    # Attempts alone would allow minutes of retries; the budget ends it after about a second of failing.
    policy = RetryPolicy(max_attempts=1000, backoff_base=0.05, backoff_cap=0.2, request_timeout=5, retry_budget=1)
    with _echo_server(tiny_model_dir, faults=Faults(down=True)) as s:
        t = time.monotonic()
        with pytest.raises(EndpointDown, match=r"--retry-budget 1 s\). Rows finished so far are kept"):
            _collect(TGIBackend([s.url], concurrency=2, policy=policy).generate(_requests(prompts), GREEDY))
        assert 1 <= time.monotonic() - t < 5


def test_max_prompt_tokens_fails_long_rows_unsent(server, prompts):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(server.model_id)
    lengths = [len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    limit = sorted(lengths)[len(lengths) // 2]
    for backend in (TGIBackend([server.url], policy=FAST, max_prompt_tokens=limit),
                    OpenAIBackend([server.url], model=server.served_name, policy=FAST, max_prompt_tokens=limit)):
        server.reset_stats()
        got = _collect(backend.generate(_requests(prompts), GREEDY))
        long = {i for i, n in enumerate(lengths) if n > limit}
        assert long and {i for i, r in got.items() if r.status == "failed"} == long
        for i in long:
            assert got[i].error == f"prompt too long: {lengths[i]} tokens, more than --max-prompt-tokens {limit}"
            assert got[i].attempts == 0
        assert server.stats["requests"] == len(prompts) - len(long), "long prompts are never sent"


def test_credentials_in_an_endpoint_url_are_refused_and_never_shown():
    for url in ("http://user:s3cret-pass@gpu1:8080", "https://s3cret-pass@gpu1"):
        with pytest.raises(ValueError, match="has a user:password in it") as e:
            TGIBackend([url])
        assert "s3cret-pass" not in str(e.value)


def test_the_other_endpoints_carry_a_run_when_one_goes_down(tiny_model_dir, prompts):
    with _echo_server(tiny_model_dir) as a, _echo_server(tiny_model_dir) as b:
        backend = TGIBackend([a.url, b.url], concurrency=2, policy=FAST)
        a.set_faults(down=True)
        got = _collect(backend.generate(_requests(prompts), GREEDY))
        assert len(got) == len(prompts) and {r.status for r in got.values()} == {"ok"}
        assert b.stats["by_status"]["200"] == len(prompts)


def test_requests_are_pulled_lazily_and_closing_stops_the_pump(tiny_model_dir):
    pulled = count()

    def endless():
        for i in count():
            next(pulled)
            yield Request(row_id=i, prompt="<s>hello", seed=i)

    with _echo_server(tiny_model_dir) as s:
        results = TGIBackend([s.url], concurrency=4, policy=FAST).generate(endless(), GREEDY)
        for _ in range(100):
            next(results)
        results.close()
    # At most twice the concurrency plus a little is pulled ahead of what was handed back.
    assert next(pulled) <= 100 + 2 * 4 + 16
    assert not any(t.name == "sdft-http-pump" for t in threading.enumerate())


# ---------------------------------------------------------------- start-up checks, concurrency, auth


def test_concurrency_defaults_to_the_servers_max_concurrent_requests(tiny_model_dir, prompts):
    with _echo_server(tiny_model_dir, max_concurrent_requests=7, faults=Faults(latency=0.02)) as s:
        assert TGIBackend([s.url]).concurrency == [7]
        assert OpenAIBackend([s.url], model=s.served_name).concurrency == [7]
        backend = TGIBackend([s.url], concurrency=3, policy=FAST)
        _collect(backend.generate(_requests(prompts), GREEDY))
        assert s.stats["max_in_flight"] == 3


def test_start_up_refusals_are_one_clear_line(server, servers, tiny_model_dir):
    with pytest.raises(ValueError, match=r"--model 'other/model' does not match the model served at .* \("):
        TGIBackend([server.url], model="other/model")
    with pytest.raises(ValueError, match=r"serves '.*', not --model 'other/model'"):
        OpenAIBackend([server.url], model="other/model")
    with _echo_server(tiny_model_dir, model_sha="e" * 40) as other:
        with pytest.raises(ValueError, match="endpoints serve different models: .*; point every --endpoint"):
            TGIBackend([server.url, other.url])
    with pytest.raises(ValueError, match=r"cannot reach http://127.0.0.1:9/info \(.*\); is the server up"):
        TGIBackend(["http://127.0.0.1:9"])
    with pytest.raises(ValueError, match="is not an http"):
        TGIBackend(["gpu1:8080"])
    with pytest.raises(ValueError, match="given twice"):
        TGIBackend([server.url, server.url + "/"])


def test_an_unloadable_served_id_asks_for_tokenizer(tiny_model_dir, prompts):
    with EngineServer(echo=True, model_id="/models/llama-8b") as s:
        with pytest.raises(ValueError, match="cannot load the tokenizer '/models/llama-8b' here .*pass --tokenizer"):
            TGIBackend([s.url])
        backend = TGIBackend([s.url], tokenizer=str(tiny_model_dir), model="/models/llama-8b")
        assert backend.info.model_id == "/models/llama-8b" and backend.tokenizer.chat_template


def test_the_token_is_sent_and_never_shown(server, prompts, caplog):
    server.token = TOKEN
    with caplog.at_level(logging.DEBUG):
        backend = TGIBackend([server.url], token=TOKEN, policy=FAST)
        assert {r.status for r in backend.generate(_requests(prompts[:4]), GREEDY)} == {"ok"}
        with pytest.raises(ValueError) as no_token:
            TGIBackend([server.url])
        assert "refused the request (HTTP 401); check HF_TOKEN or --token-file" in str(no_token.value)
        server.token = "hf_rotated"
        with pytest.raises(EndpointError) as rotated:
            list(backend.generate(_requests(prompts[:4]), GREEDY))
    assert "401" in str(rotated.value) and "HF_TOKEN" in str(rotated.value)
    shown = [repr(backend), str(backend.info.to_dict()), repr(backend.stats), repr(backend._pump),
             str(no_token.value), str(rotated.value), caplog.text]
    assert not any(TOKEN in s for s in shown)


def test_error_bodies_of_every_server_kind_become_one_line():
    assert error_text(422, b'{"error": "Input validation error: too long", "error_type": "validation"}') == \
        "HTTP 422: validation Input validation error: too long"
    assert error_text(400, b'{"object": "error", "message": "maximum context length", "type": "BadRequestError"}') \
        == "HTTP 400: BadRequestError maximum context length"
    assert error_text(400, b'{"error": {"message": "bad", "type": "invalid_request_error"}}') == \
        "HTTP 400: invalid_request_error bad"
    assert error_text(502, b"<html>Bad Gateway</html>") == "HTTP 502: <html>Bad Gateway</html>"


# ---------------------------------------------------------------- through the run engine


def _gsm8k_source(tmp_path, n=30):
    rows = [dict(r, question=f"{r['question']} (variant {i})") for i in range(n // len(GSM8K_ROWS) + 1)
            for r in GSM8K_ROWS][:n]
    path = tmp_path / "gsm8k30.json"
    path.write_text(json.dumps(rows))
    return path


def _shard_rows(run_dir):
    return pl.concat([pl.read_parquet(p) for p in sorted((run_dir / "generations").glob("*.parquet"))])


PARAMS_E2E = GenerationParams(max_new_tokens=12, temperature=0)


def test_distill_through_faults_writes_every_row_once_equal_to_local(servers, server, tmp_path, local):
    from sdft_data.run import distill

    source = _gsm8k_source(tmp_path)
    for seed, s in enumerate(servers):
        s.set_faults(**TRANSIENT_20, seed=seed + 10, script=[503, "drop"])
    backend = TGIBackend([s.url for s in servers], concurrency=4, policy=FAST)
    summary = distill(recipe="gsm8k", source=str(source), out=tmp_path / "tgi", engine=backend,
                      decoding=PARAMS_E2E, flush_rows=4, progress=False)
    assert summary.counts == {"rows": 30, "ok": 30, "failed": 0, "pending": 0}
    shards = _shard_rows(tmp_path / "tgi")
    assert sorted(shards["row_id"].to_list()) == list(range(30)), "every row exactly once"
    manifest = json.loads((tmp_path / "tgi" / "manifest.json").read_text())
    assert manifest["model_info"]["backend"] == "tgi" and manifest["model_info"]["revision"] == "f" * 40
    assert manifest["sessions"][0]["retries"] > 0

    distill(recipe="gsm8k", source=str(source), out=tmp_path / "local", engine=local, decoding=PARAMS_E2E,
            progress=False)
    columns = ["row_id", "text", "finish_reason", "generated_tokens", "prompt_tokens"]
    assert shards.sort("row_id").select(columns).equals(_shard_rows(tmp_path / "local").sort("row_id").select(columns))


KILL_SCRIPT = """
import sys
from sdft_data.backends import GenerationParams
from sdft_data.run import distill
distill(recipe="gsm8k", source=sys.argv[1], out=sys.argv[2], backend="tgi", endpoints=(sys.argv[3],),
        concurrency=1, max_new_tokens=12, temperature=0, flush_rows=2, progress=False)
"""


@pytest.mark.slow
def test_a_killed_tgi_run_resumes_with_every_row_once(server, tmp_path):
    from sdft_data.run import distill, generations

    source = _gsm8k_source(tmp_path)
    server.set_faults(latency=0.05, rate_503=0.1, retry_after=0.01)
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, source, run, server.url],
                            env=dict(os.environ, PYTHONPATH=os.getcwd()))
    deadline = time.monotonic() + 120
    while len(list((run / "generations").glob("*.parquet"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(generations(run).collect())
    assert 0 < partial < 30

    server.set_faults(latency=0)
    backend = TGIBackend([server.url], concurrency=1, policy=FAST)
    summary = distill(recipe="gsm8k", source=str(source), out=run, engine=backend, decoding=PARAMS_E2E,
                      flush_rows=2, progress=False)
    assert summary.resumed and summary.generated_now == 30 - partial
    assert sorted(_shard_rows(run)["row_id"].to_list()) == list(range(30)), "every row exactly once"
    assert summary.counts["ok"] == 30


def test_a_422_row_is_recorded_failed_then_retry_failed_fills_it(server, tmp_path):
    from sdft_data.run import distill, generations

    source = _gsm8k_source(tmp_path, n=12)
    server.set_faults(reject=r"eggs are in 5 boxes\? \(variant 1\)")
    backend = TGIBackend([server.url], concurrency=4, policy=FAST)
    first = distill(recipe="gsm8k", source=str(source), out=tmp_path / "run", engine=backend,
                    decoding=PARAMS_E2E, progress=False)
    assert first.counts == {"rows": 12, "ok": 11, "failed": 1, "pending": 0}
    (failed,) = generations(tmp_path / "run").filter(pl.col("status") == "failed").collect().iter_rows(named=True)
    assert failed["row_id"] == 7 and failed["text"] is None and "HTTP 422" in failed["error"]

    server.set_faults(reject=None)
    again = distill(recipe="gsm8k", source=str(source), out=tmp_path / "run", engine=backend,
                    decoding=PARAMS_E2E, retry_failed=True, progress=False)
    assert again.generated_now == 1
    assert again.counts == {"rows": 12, "ok": 12, "failed": 0, "pending": 0}
    assert generations(tmp_path / "run").collect().filter(pl.col("row_id") == 7)["status"].to_list() == ["ok"]


def test_the_token_never_shows_in_any_file_or_output(server, tmp_path, monkeypatch, capfd, caplog):
    from sdft_data.cli import main

    source = _gsm8k_source(tmp_path, n=6)
    server.token = TOKEN
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    run = tmp_path / "run"
    args = ["distill", "--recipe", "gsm8k", "--source", str(source), "--backend", "tgi", "--endpoint", server.url,
            "--out", str(run), "--max-new-tokens", "8", "--temperature", "0"]
    with caplog.at_level(logging.DEBUG):
        ok = CliRunner().invoke(main, args)
        assert ok.exit_code == 0, ok.output
        assert "ok 6, failed 0" in ok.output
        monkeypatch.setenv("HF_TOKEN", TOKEN[::-1])  # a wrong token: refused at start, in one line
        refused = CliRunner().invoke(main, args + ["--out", str(tmp_path / "other")])
        assert refused.exit_code == 1 and "HTTP 401" in refused.output
    captured = capfd.readouterr()
    for text in (ok.output, refused.output, captured.out, captured.err, caplog.text):
        assert TOKEN not in text and TOKEN[::-1] not in text
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.json" for p in files)
    for p in files:
        data = p.read_bytes()
        assert TOKEN.encode() not in data and TOKEN[::-1].encode() not in data, p


# ---------------------------------------------------------------- hostile servers
#
# Every row is a server that misbehaves on purpose (tests/helpers/engine_server.py's faults), met by
# the real clients: a token must stay with its origin, every request must end by its deadline, and
# an answer of the wrong size or type must be refused with one line.

SLOW = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.05, request_timeout=1.5, retry_budget=1)


def _tgi(server, policy=SLOW):
    return TGIBackend([server.url], policy=policy, token=TOKEN)


def _openai(server, policy=SLOW):
    return OpenAIBackend([server.url], model=server.served_name, policy=policy, token=TOKEN)


def _judge(server):
    from sdft_train.tasks.alpacaeval import Judge

    return Judge(server.url, "judge", token=TOKEN, timeout=1.5).verdict("i", "a", "b")


def _generate(backend, max_new_tokens=8):
    return list(backend.generate(_requests(["hi"]), GenerationParams(max_new_tokens=max_new_tokens, temperature=0)))


@pytest.fixture
def hostile(tiny_model_dir):
    """A server (echo, requiring TOKEN) and another origin it may redirect to, which counts what it sees."""
    with _echo_server(tiny_model_dir, token=TOKEN) as a, _echo_server(tiny_model_dir) as b:
        yield a, b


# Where a redirect comes from: (route redirected, status, what is done, the fragment of the one-line error).
REDIRECTS = [
    ("/info", 302, _tgi, "a redirect to another origin"),
    ("/v1/models", 302, _openai, "a redirect to another origin"),
    ("/v1/models", 308, _openai, "a redirect to another origin"),
    ("/generate", 307, lambda s: _generate(_tgi(s)), "answered 307, a redirect to"),
    ("/generate", 302, lambda s: _generate(_tgi(s)), "answered 302, a redirect to"),
    ("/v1/completions", 308, lambda s: _generate(_openai(s)), "answered 308, a redirect to"),
    ("/v1/chat/completions", 302, _judge, "a redirect to another origin"),
    ("/v1/chat/completions", 307, _judge, "a redirect to another origin"),
]


@pytest.mark.parametrize("path, status, call, fragment", REDIRECTS, ids=[f"{p}-{s}" for p, s, *_ in REDIRECTS])
def test_a_token_never_goes_to_another_origin(hostile, path, status, call, fragment):
    a, b = hostile
    a.set_faults(redirect=b.url, redirect_path=path, redirect_status=status)
    with pytest.raises((ValueError, EndpointError)) as e:
        call(a)
    assert fragment in str(e.value) and b.url in str(e.value) and TOKEN not in str(e.value)
    assert len(str(e.value).splitlines()) == 1
    assert a.stats["authorization_seen"] >= 1  # the token went where it was given
    assert b.stats["seen"] == 0 and b.stats["authorization_seen"] == 0  # and nowhere else: not followed


@pytest.mark.parametrize("kind", ["api", "download"])
def test_the_hub_client_keeps_the_token_from_another_origin(hostile, kind, tmp_path, monkeypatch):
    """huggingface_hub (Hub paths: dataset info, file download) follows a redirect away from the Hub
    without the Authorization header; this holds it to that."""
    from huggingface_hub import HfApi, hf_hub_download

    a, b = hostile
    a.set_faults(redirect=b.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(Exception):
        if kind == "api":
            HfApi(endpoint=a.url, token=TOKEN).dataset_info("org/data")
        else:
            hf_hub_download("org/data", "data.json", repo_type="dataset", endpoint=a.url, token=TOKEN,
                            cache_dir=tmp_path)
    assert a.stats["authorization_seen"] >= 1
    if kind == "api":
        assert b.stats["seen"] >= 1  # followed there...
    assert b.stats["authorization_seen"] == 0  # ...without the token


# (route, made before the drip starts, then what meets it, the error and a fragment of its one line)
DRIPS = [
    ("/info", lambda s: s, _tgi, ValueError, "within 1.5 s (connect to last byte)"),
    ("/v1/models", lambda s: s, _openai, ValueError, "within 1.5 s (connect to last byte)"),
    ("/generate", _tgi, _generate, EndpointDown, "no answer within 1.5 s"),
    ("/v1/completions", _openai, _generate, EndpointDown, "no answer within 1.5 s"),
    ("/v1/chat/completions", lambda s: s, _judge, ValueError, "no complete answer within 1.5 s"),
]


@pytest.mark.parametrize("path, before, call, error, fragment", DRIPS, ids=[d[0] for d in DRIPS])
def test_a_slow_drip_ends_at_the_total_deadline(hostile, path, before, call, error, fragment):
    """One byte every 0.4 s: each read gets something in time, the whole never does."""
    a, _ = hostile
    target = before(a)
    a.set_faults(drip=0.4)
    t0 = time.monotonic()
    with pytest.raises(error) as e:
        call(target)
    took = time.monotonic() - t0
    assert fragment in str(e.value) and len(str(e.value).splitlines()) == 1, str(e.value)
    assert took < 10, f"{path} ran {took:.1f} s past its 1.5 s deadline"


@pytest.mark.parametrize("backend_of", [_tgi, _openai], ids=["tgi", "openai"])
@pytest.mark.parametrize("text, fragment", [("x" * (50 << 20), "bytes, more than"),
                                            ("x" * 20_000, "20000 characters of text for at most 32 new tokens")],
                         ids=["50MB", "20k-chars"])
def test_an_answer_too_large_for_the_tokens_asked_is_refused(hostile, backend_of, text, fragment):
    a, _ = hostile
    # Time enough for the loopback to build a 50 MB answer even on a busy machine: the size refuses it.
    backend = backend_of(a, RetryPolicy(max_attempts=2, backoff_base=0.01, request_timeout=60, retry_budget=1))
    a.set_faults(text=text)
    with pytest.raises(EndpointDown) as e:
        _generate(backend, max_new_tokens=32)
    assert fragment in str(e.value), str(e.value)
    a.set_faults(text="y" * 8000)  # long, but what 32 tokens can decode to
    [result] = _generate(backend, max_new_tokens=32)
    assert result.status == "ok" and result.text == "y" * 8000


INFO_TYPES = [
    ({"model_id": 12345}, "model_id is int 12345, not a one-line string"),
    ({"model_sha": ["a"]}, "model_sha is list ['a'], not a one-line string"),
    ({"model_sha": "abc\ndef"}, "model_sha is str 'abc\\ndef', not a one-line string"),
    ({"max_concurrent_requests": "many"}, "max_concurrent_requests is str 'many', not a positive integer"),
    ({"max_concurrent_requests": 0}, "max_concurrent_requests is int 0, not a positive integer"),
    ({"max_concurrent_requests": True}, "max_concurrent_requests is bool True, not a positive integer"),
    ({"max_total_tokens": 2048.5}, "max_total_tokens is float 2048.5, not a positive integer"),
    ({"max_input_tokens": {"n": 1}}, "max_input_tokens is dict {'n': 1}, not a positive integer"),
    ({"max_stop_sequences": -1}, "max_stop_sequences is int -1, not an integer >= 0"),
    ({"version": 3}, "version is int 3, not a one-line string"),
]


@pytest.mark.parametrize("backend_of", [_tgi, _openai], ids=["tgi", "openai"])
@pytest.mark.parametrize("info, fragment", INFO_TYPES, ids=[next(iter(i)) + "-" + repr(next(iter(i.values())))
                                                           for i, _ in INFO_TYPES])
def test_info_fields_of_the_wrong_type_are_refused_in_one_line(hostile, backend_of, info, fragment):
    a, _ = hostile
    if backend_of is _openai and "model_id" in info:
        pytest.skip("the openai backend reads /info only when it names the served model")
    if backend_of is _openai:
        info = {"model_id": a.served_name, **info}  # a TGI behind /v1: its /info is read
    a.set_faults(info=info)
    with pytest.raises(ValueError) as e:
        backend_of(a)
    message = str(e.value)
    assert fragment in message and message.startswith(f"{a.url}/info: ") and len(message.splitlines()) == 1, message


@pytest.mark.parametrize("entry, fragment", [({"id": 5}, "/v1/models: id is int 5, not a one-line string"),
                                             ({"root": ["x"]}, "/v1/models: root is list ['x'], not a one-line")])
def test_models_entries_of_the_wrong_type_are_refused_in_one_line(hostile, entry, fragment):
    a, _ = hostile
    a.set_faults(models=entry)
    with pytest.raises(ValueError) as e:
        OpenAIBackend([a.url], model=a.served_name if "id" not in entry else "5", policy=SLOW, token=TOKEN)
    assert fragment in str(e.value) and len(str(e.value).splitlines()) == 1, str(e.value)
