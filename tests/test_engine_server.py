"""The loopback engine server: TGI's and OpenAI's wire formats, real generation, fault switches."""

import subprocess
import sys
from pathlib import Path
import time

import httpx
import pytest

from helpers.engine_server import EngineServer, Faults


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with EngineServer(tiny_model_dir, model_sha="a" * 40, max_concurrent_requests=8) as s:
        yield s


@pytest.fixture
def client(server):
    server.set_faults(**vars(Faults()))
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.get("/control/stats", params={"reset": 1})
        yield c


@pytest.fixture(scope="module")
def prompt(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    return tok.apply_chat_template([{"role": "user", "content": "How many clips did she sell?"}],
                                   tokenize=False, add_generation_prompt=True)


def _direct_greedy(model_dir, prompt, n):
    """What transformers itself generates greedily for the prompt, and how many prompt tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    enc = tok(prompt, add_special_tokens=False, return_tensors="pt")
    out = model.generate(**enc, do_sample=False, max_new_tokens=n)
    return tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True), enc["input_ids"].shape[1]


def test_info_has_every_field_tgi_requires(client, tiny_model_dir):
    info = client.get("/info").json()
    required = ["model_id", "max_concurrent_requests", "max_best_of", "max_stop_sequences", "max_input_tokens",
                "max_total_tokens", "validation_workers", "max_client_batch_size", "router", "version"]
    assert all(k in info for k in required)
    assert info["model_id"] == str(tiny_model_dir) and info["model_sha"] == "a" * 40
    assert info["max_concurrent_requests"] == 8
    assert client.get("/health").status_code == 200


def test_generate_is_real_greedy_generation(client, tiny_model_dir, prompt):
    r = client.post("/generate", json={"inputs": prompt, "parameters": {"max_new_tokens": 12, "details": True}})
    assert r.status_code == 200
    body = r.json()
    text, n_prompt = _direct_greedy(tiny_model_dir, prompt, 12)
    assert body["generated_text"] == text
    assert body["details"]["finish_reason"] in ("length", "eos_token")
    assert body["details"]["generated_tokens"] == len(body["details"]["tokens"]) <= 12
    assert r.headers["x-prompt-tokens"] == str(n_prompt)
    # The compat route answers the same, as a one-element list.
    compat = client.post("/", json={"inputs": prompt, "parameters": {"max_new_tokens": 12}}).json()
    assert compat[0]["generated_text"] == text


def test_sampling_follows_the_seed(client, prompt):
    def sample(seed):
        p = {"max_new_tokens": 16, "do_sample": True, "temperature": 1.0, "seed": seed}
        return client.post("/generate", json={"inputs": prompt, "parameters": p}).json()["generated_text"]

    assert sample(1) == sample(1)
    assert len({sample(s) for s in range(1, 5)}) > 1


@pytest.mark.parametrize("parameters, message", [
    ({"temperature": 0}, "`temperature` must be strictly positive"),
    ({"do_sample": True, "top_p": 1.0}, "`top_p` must be > 0.0 and < 1.0"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "`stop` supports up to 4 stop sequences"),
    ({"max_new_tokens": 5000}, "must be <= 2048"),
])
def test_validation_errors_are_tgi_422s(client, prompt, parameters, message):
    r = client.post("/generate", json={"inputs": prompt, "parameters": parameters})
    assert r.status_code == 422
    assert r.json()["error_type"] == "validation" and message in r.json()["error"]


def test_completions_and_models_speak_openai(client, server, tiny_model_dir, prompt):
    models = client.get("/v1/models").json()
    assert models["data"][0]["id"] == server.served_name
    r = client.post("/v1/completions", json={"model": server.served_name, "prompt": prompt, "max_tokens": 12,
                                             "temperature": 0})
    choice = r.json()["choices"][0]
    text, n_prompt = _direct_greedy(tiny_model_dir, prompt, 12)
    assert choice["text"] == text
    assert r.json()["usage"]["prompt_tokens"] == n_prompt
    unknown = client.post("/v1/completions", json={"model": "nope", "prompt": prompt})
    assert unknown.status_code == 404 and "does not exist" in unknown.json()["message"]


def test_stop_sequences_tgi_keeps_them_openai_cuts_them(client, tiny_model_dir, prompt):
    text, _ = _direct_greedy(tiny_model_dir, prompt, 24)
    stop = text[5:8]
    assert stop and stop not in text[:7]
    tgi = client.post("/generate", json={"inputs": prompt, "parameters": {"max_new_tokens": 24, "stop": [stop]}})
    assert tgi.json()["generated_text"] == text[: text.index(stop) + len(stop)]
    assert tgi.json()["details"]["finish_reason"] == "stop_sequence"
    oai = client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 24, "temperature": 0, "stop": [stop]})
    choice = oai.json()["choices"][0]
    assert choice["text"] == text[: text.index(stop)]
    assert (choice["finish_reason"], choice["stop_reason"]) == ("stop", stop)


def test_fault_rates_and_retry_after(client, prompt):
    client.post("/control/faults", json={"rate_429": 0.5, "rate_503": 0.5, "retry_after": 2})
    statuses = [client.post("/generate", json={"inputs": prompt, "parameters": {"max_new_tokens": 2}})
                for _ in range(20)]
    assert {r.status_code for r in statuses} == {429, 503}
    assert all(r.headers["Retry-After"] == "2" for r in statuses)
    assert {r.json()["error_type"] for r in statuses} == {"overloaded", "unavailable"}
    stats = client.get("/control/stats").json()
    assert stats["by_status"]["429"] + stats["by_status"]["503"] == 20


def test_scripted_faults_then_normal_service(client, prompt):
    client.post("/control/faults", json={"script": [424, "drop", 500]})
    body = {"inputs": prompt, "parameters": {"max_new_tokens": 2}}
    assert client.post("/generate", json=body).status_code == 424
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/generate", json=body)
    assert client.post("/generate", json=body).json()["error_type"] == "incomplete_generation"
    assert client.post("/generate", json=body).status_code == 200
    assert client.get("/control/stats").json()["dropped"] == 1


def test_reject_pattern_gives_422_for_matching_prompts_only(client, prompt):
    client.post("/control/faults", json={"reject": "POISON"})
    bad = client.post("/generate", json={"inputs": prompt + "POISON", "parameters": {"max_new_tokens": 2}})
    good = client.post("/generate", json={"inputs": prompt, "parameters": {"max_new_tokens": 2}})
    assert (bad.status_code, good.status_code) == (422, 200)
    assert bad.json()["error_type"] == "validation"


def test_down_drops_generation_and_fails_health(client, prompt):
    client.post("/control/faults", json={"down": True})
    assert client.get("/health").status_code == 503
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/generate", json={"inputs": prompt})
    assert client.get("/info").status_code == 200  # the router answers; generation does not


def test_more_than_max_concurrent_requests_get_429(tiny_model_dir, prompt):
    import concurrent.futures

    with EngineServer(echo=True, model_id="echo", max_concurrent_requests=2, faults=Faults(latency=0.3)) as s:
        body = {"inputs": prompt, "parameters": {"max_new_tokens": 4}}
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda _: httpx.post(s.url + "/generate", json=body, timeout=10).status_code,
                                  range(6)))
    assert codes.count(200) == 2 and codes.count(429) == 4


def test_token_is_required_when_set(tiny_model_dir, prompt):
    with EngineServer(echo=True, token="hf_loopbacksecret") as s:
        assert httpx.get(s.url + "/info").status_code == 401
        ok = httpx.get(s.url + "/info", headers={"Authorization": "Bearer hf_loopbacksecret"})
        assert ok.status_code == 200
        assert s.stats["unauthorized"] == 1


def test_runs_as_a_separate_process_and_prints_its_url(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).parent / "helpers" / "engine_server.py"), "--echo", "--port", "0", "--latency", "0.05",
         "--rate-429", "1", "--retry-after", "1"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("engine server listening on http://127.0.0.1:")
        url = line.split()[-1]
        t = time.monotonic()
        r = httpx.post(url + "/generate", json={"inputs": "hi", "parameters": {"max_new_tokens": 4}})
        assert r.status_code == 429 and r.headers["Retry-After"] == "1"
        assert time.monotonic() - t >= 0.05
        httpx.post(url + "/control/faults", json={"rate_429": 0})
        echo = httpx.post(url + "/generate", json={"inputs": "hi", "parameters": {"max_new_tokens": 4}}).json()
        assert echo["details"]["generated_tokens"] == 4
    finally:
        proc.terminate()
    # SIGTERM stops it cleanly.
    assert proc.wait(timeout=10) == 0
