"""A loopback inference server for tests and benchmarks: TGI's API and OpenAI completions.

It stands in for a TGI or vLLM server: the real backends, with their real HTTP
client, talk to it. Generation is real (a transformers model, usually the tiny
one from sdft_data.tiny), so outputs can be compared with the local backend's.

    POST /generate         TGI GenerateRequest -> GenerateResponse, with details and
                           the x-prompt-tokens / x-generated-tokens headers
    POST /                 TGI's compat route: the same, as a one-element list
    GET  /info             TGI Info: model_id, model_sha, max_concurrent_requests, ...
    GET  /health           200, or 503 while `down`
    POST /v1/completions   CompletionRequest -> CompletionFinal, finish_reason and
                           stop_reason as vLLM gives them (the stop string cut off)
    GET  /v1/models        the served model, vLLM-style list
    POST /v1/chat/completions  a judge's canned verdict ("Output (a)", or the `text` fault)
    GET|POST /control/faults   read or change the fault switches (JSON; never authenticated)
    GET  /control/stats        counters: requests, answers by status, drops, peak in flight

Tokenization is TGI's: the raw prompt with the tokenizer's special tokens on.
Greedy decoding is the same `model.generate(..., do_sample=False)` call the
local backend makes, so greedy text matches it token for token. Validation
follows TGI: temperature must be > 0, top_p in (0, 1), at most
`max_stop_sequences` stops, prompt plus max_new_tokens within
`max_total_tokens`; a temperature or top_p without do_sample still samples,
as in TGI. More than `max_concurrent_requests` at once get 429, as in TGI.

Faults (Faults, settable at construction, by CLI flags or POST /control/faults):
rates of 429, 503, 424 and 500 answers and of dropped connections, a
Retry-After for 429/503, a regex whose matching prompts get 422 (as a prompt
too long would), added latency, `down` (every generation request dropped), and
`script`, a list of the next answers in order (429, 503, 424, 500, "drop",
"hang") for deterministic tests. `echo` answers with canned text and no model,
so a benchmark measures the client, not the model.

Hostile-server faults: `text`, a generated text sent instead of the model's (a
50 MB one, a forged HumanEval completion); `info` and `models`, fields merged
into /info and into /v1/models' entry (wrong types); `drip`, seconds between
the bytes of every answer's body under `drip_path` (a server that never stops
answering); `redirect`, a base URL that every route under `redirect_path`
(never /control) answers `redirect_status` to, same path. Every server counts
the requests it sees (`seen`) and those carrying an Authorization header
(`authorization_seen`), on any route: the other origin of a redirect must see
neither.

In a test, as a context manager (its own thread and event loop):

    with EngineServer(model_dir, faults=Faults(rate_503=0.2)) as server:
        backend = TGIBackend([server.url])

As a process:

    python tests/helpers/engine_server.py --model models/tiny --port 8080 --rate-429 0.1
    python tests/helpers/engine_server.py --echo --latency 0.2 --port 0   # prints its URL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from aiohttp import web

ECHO_TEXT = "Great! Let's think step by step. She sold 48 clips in April and 24 in May. The answer is 72."


@dataclass
class Faults:
    """What goes wrong, and how often. Rates are per generation request, drawn from a seeded RNG."""

    rate_429: float = 0.0
    rate_503: float = 0.0
    rate_424: float = 0.0
    rate_500: float = 0.0
    rate_drop: float = 0.0  # close the connection without an answer
    retry_after: float | None = None  # seconds, sent with 429 and 503
    reject: str | None = None  # regex: prompts that match get 422 (as a prompt too long would)
    latency: float = 0.0  # seconds before every generation answer
    down: bool = False  # drop every generation request; /health answers 503
    script: list = field(default_factory=list)  # the next answers, in order, before any rate applies
    hang: float = 30.0  # how long a scripted "hang" keeps the request waiting
    seed: int = 0
    text: str | None = None  # generated text sent instead of the model's (or the echo)
    info: dict = field(default_factory=dict)  # fields merged into /info's answer
    models: dict = field(default_factory=dict)  # fields merged into /v1/models' entry
    drip: float = 0.0  # seconds between the bytes of every answer's body (routes under drip_path)
    drip_path: str = "/"
    redirect: str | None = None  # base URL the routes under redirect_path (all but /control) redirect to
    redirect_path: str = "/"
    redirect_status: int = 302


class _Invalid(Exception):
    """A request TGI would refuse with 422."""


class EngineServer:
    """The loopback server. `model_dir` may be None in echo mode. See the module docstring."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        model_id: str | None = None,
        model_sha: str | None = None,
        served_name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        echo: bool = False,
        max_concurrent_requests: int = 128,
        max_input_tokens: int = 1024,
        max_total_tokens: int = 2048,
        max_stop_sequences: int = 4,
        token: str | None = None,
        faults: Faults | None = None,
    ):
        if model_dir is None and not echo:
            raise ValueError("EngineServer needs a model folder, or echo=True")
        # Like TGI, /info reports the model as it was named at launch.
        self.model_id = model_id or (str(model_dir) if model_dir is not None else "echo")
        self.model_sha = model_sha
        self.served_name = served_name or self.model_id
        self.host, self.port = host, port
        self.echo = echo
        self.max_concurrent_requests = max_concurrent_requests
        self.max_input_tokens = max_input_tokens
        self.max_total_tokens = max_total_tokens
        self.max_stop_sequences = max_stop_sequences
        self.token = token  # the bearer token required, when set
        self.faults = faults or Faults()
        self._lock = threading.Lock()  # faults and stats are touched from the test's thread too
        self._rng = random.Random(self.faults.seed)
        self._reset_stats()
        self.model = self.tokenizer = None
        if model_dir is not None and not echo:
            self._load(model_dir)
        # One worker: generation is serialised, which also keeps torch's global
        # RNG (seeded per request) deterministic.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-model")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = 0
        self._counter = 0

    # ---------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "EngineServer":
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, errors), name="engine-server", daemon=True)
        self._thread.start()
        ready.wait()
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join()
            self._thread = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "EngineServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _serve(self, ready: threading.Event, errors: list) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._stopped = asyncio.Event()
        try:
            runner = loop.run_until_complete(self._start_site())
        except BaseException as e:  # noqa: BLE001 - reported to start()
            errors.append(e)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_until_complete(self._stopped.wait())
        loop.run_until_complete(runner.cleanup())
        loop.close()

    async def _start_site(self) -> web.AppRunner:
        app = web.Application(client_max_size=64 * 2**20, middlewares=[self._hostile])
        app.router.add_post("/generate", self._tgi_generate)
        app.router.add_post("/", self._tgi_compat)
        app.router.add_get("/info", self._info)
        app.router.add_get("/health", self._health)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_route("*", "/control/faults", self._control_faults)
        app.router.add_get("/control/stats", self._control_stats)
        # handler_cancellation: a client that gives up (timeout) ends its hanging
        # handler, so shutdown does not wait for it.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        await site.start()
        self.port = runner.addresses[0][1]
        return runner

    # ---------------------------------------------------------------- control

    def set_faults(self, **changes) -> None:
        """Change fault switches while serving, e.g. set_faults(down=True)."""
        with self._lock:
            for k, v in changes.items():
                if k not in {f.name for f in fields(Faults)}:
                    raise ValueError(f"unknown fault {k!r}; known: {', '.join(f.name for f in fields(Faults))}")
                setattr(self.faults, k, list(v) if k == "script" else dict(v) if k in ("info", "models") else v)
            if "seed" in changes:
                self._rng = random.Random(changes["seed"])

    @property
    def stats(self) -> dict:
        with self._lock:
            return json.loads(json.dumps(self._stats))

    def reset_stats(self) -> None:
        with self._lock:
            self._reset_stats()

    def _reset_stats(self) -> None:
        self._stats = {"requests": 0, "by_status": {}, "dropped": 0, "hung": 0, "max_in_flight": 0,
                       "unauthorized": 0, "generated_tokens": 0, "seen": 0, "authorization_seen": 0}

    def _count(self, status) -> None:
        with self._lock:
            key = str(status)
            self._stats["by_status"][key] = self._stats["by_status"].get(key, 0) + 1

    async def _control_faults(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                self.set_faults(**(await request.json()))
            except (ValueError, TypeError) as e:
                return _error(400, str(e), "control")
        with self._lock:
            return web.json_response(asdict(self.faults))

    async def _control_stats(self, request: web.Request) -> web.Response:
        if request.query.get("reset"):
            self.reset_stats()
        return web.json_response(self.stats)

    @web.middleware
    async def _hostile(self, request: web.Request, handler):
        """Every request is counted (with or without a token); then the redirect and drip faults."""
        control = request.path.startswith("/control/")
        with self._lock:
            if not control:
                self._stats["seen"] += 1
                self._stats["authorization_seen"] += "Authorization" in request.headers
            f = self.faults
            redirect = f.redirect if request.path.startswith(f.redirect_path) else None
            status, drip = f.redirect_status, f.drip if request.path.startswith(f.drip_path) else 0.0
        if control:
            return await handler(request)
        if redirect:
            return web.Response(status=status, headers={"Location": redirect.rstrip("/") + request.path_qs})
        response = await handler(request)
        body = getattr(response, "body", None)
        if not drip or not isinstance(body, bytes):
            return response
        # The answer one byte at a time: each read gets something, the whole never comes in time.
        stream = web.StreamResponse(status=response.status, headers={
            k: v for k, v in response.headers.items() if k.lower() not in ("content-length", "transfer-encoding")})
        stream.content_length = len(body)
        await stream.prepare(request)
        for i in range(len(body)):
            await stream.write(body[i:i + 1])
            await asyncio.sleep(drip)
        await stream.write_eof()
        return stream

    # ---------------------------------------------------------------- TGI routes

    async def _info(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return web.json_response({
            "model_id": self.model_id,
            "model_sha": self.model_sha,
            "model_pipeline_tag": "text-generation",
            "max_concurrent_requests": self.max_concurrent_requests,
            "max_best_of": 2,
            "max_stop_sequences": self.max_stop_sequences,
            "max_input_tokens": self.max_input_tokens,
            "max_total_tokens": self.max_total_tokens,
            "validation_workers": 2,
            "max_client_batch_size": 4,
            "router": "text-generation-router",
            "version": "loopback",
            "sha": None,
            "docker_label": None,
            **self.faults.info,
        })

    async def _health(self, request: web.Request) -> web.Response:
        if self.faults.down:
            return _error(503, "unhealthy", "healthcheck")
        return web.Response(status=200)

    async def _tgi_compat(self, request: web.Request) -> web.Response:
        return await self._tgi_generate(request, compat=True)

    async def _tgi_generate(self, request: web.Request, compat: bool = False) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        try:
            body = await request.json()
            inputs = body["inputs"]
            p = body.get("parameters") or {}
            if not isinstance(inputs, str) or not isinstance(p, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return self._answer(_error(422, "Failed to deserialize the JSON body", "validation"))
        early = await self._fault(request, inputs)
        if early is not None:
            return early
        sample = bool(p.get("do_sample")) or any(p.get(k) is not None for k in ("temperature", "top_p", "top_k"))
        try:
            _check_tgi_parameters(p, self.max_stop_sequences)
            out = await self._run(
                inputs, max_new_tokens=p.get("max_new_tokens") or 100, sample=sample,
                temperature=p.get("temperature") or 1.0, top_p=p.get("top_p") or 1.0, top_k=p.get("top_k"),
                seed=p.get("seed"), stop=p.get("stop") or [], cut_stop=False,
            )
        except _Invalid as e:
            return self._answer(_error(422, f"Input validation error: {e}", "validation"))
        if isinstance(out, web.StreamResponse):
            return out
        answer = {
            "generated_text": out["text"],
            "details": {
                "finish_reason": out["finish_reason"],
                "generated_tokens": out["generated_tokens"],
                "seed": out["seed"],
                "prefill": [],
                "tokens": out["tokens"],
            },
        }
        headers = {
            "x-compute-type": "cpu",
            "x-prompt-tokens": str(out["prompt_tokens"]),
            "x-generated-tokens": str(out["generated_tokens"]),
        }
        return self._answer(web.json_response([answer] if compat else answer, headers=headers))

    # ---------------------------------------------------------------- OpenAI routes

    async def _models(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._unauthorized()
        return web.json_response({"object": "list", "data": [{
            "id": self.served_name, "object": "model", "created": 0, "owned_by": "sdft-loopback",
            "root": self.model_id, "max_model_len": self.max_total_tokens, **self.faults.models,
        }]})

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        try:
            body = await request.json()
            prompt = body["prompt"]
            if isinstance(prompt, list) and len(prompt) == 1:
                prompt = prompt[0]
            if not isinstance(prompt, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return self._answer(_error(422, "`prompt` must be one string", "validation"))
        if body.get("model") not in (None, self.served_name):
            # vLLM's answer to an unknown model name.
            return self._answer(web.json_response(
                {"object": "error", "message": f"The model `{body['model']}` does not exist.",
                 "type": "NotFoundError", "param": None, "code": 404}, status=404))
        early = await self._fault(request, prompt)
        if early is not None:
            return early
        temperature = body.get("temperature", 1.0)
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        try:
            out = await self._run(
                prompt, max_new_tokens=body.get("max_tokens") or 16, sample=bool(temperature),
                temperature=temperature or 1.0, top_p=body.get("top_p") or 1.0, top_k=None,
                seed=body.get("seed"), stop=stop, cut_stop=True,
            )
        except _Invalid as e:
            return self._answer(_error(422, f"Input validation error: {e}", "validation"))
        if isinstance(out, web.StreamResponse):
            return out
        self._counter += 1
        finish = {"length": "length"}.get(out["finish_reason"], "stop")
        answer = {
            "id": f"cmpl-{self._counter}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.served_name,
            "system_fingerprint": "loopback",
            "choices": [{"index": 0, "text": out["text"], "logprobs": None, "finish_reason": finish,
                         "stop_reason": out["stop_reason"]}],
            "usage": {"prompt_tokens": out["prompt_tokens"], "completion_tokens": out["generated_tokens"],
                      "total_tokens": out["prompt_tokens"] + out["generated_tokens"]},
        }
        return self._answer(web.json_response(answer))

    async def _chat(self, request: web.Request) -> web.Response:
        """A judge's answer: the `text` fault, else "Output (a)" (no model; AlpacaEval's judge client)."""
        if not self._authorized(request):
            return self._unauthorized()
        await request.read()
        text = self.faults.text if self.faults.text is not None else "Output (a)"
        return self._answer(web.json_response({"object": "chat.completion", "model": self.served_name, "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}))

    # ---------------------------------------------------------------- shared machinery

    def _authorized(self, request: web.Request) -> bool:
        if not self.token:
            return True
        ok = request.headers.get("Authorization") == f"Bearer {self.token}"
        if not ok:
            with self._lock:
                self._stats["unauthorized"] += 1
        return ok

    def _unauthorized(self) -> web.Response:
        return self._answer(_error(401, "Authorization header is missing or the token is invalid", "authentication"))

    def _answer(self, response: web.Response) -> web.Response:
        self._count(response.status)
        return response

    async def _fault(self, request: web.Request, prompt: str) -> web.StreamResponse | None:
        """The injected fault for this request, as a response to return; None to serve it."""
        with self._lock:
            self._stats["requests"] += 1
            f = self.faults
            if f.down:
                kind = "drop"
            elif f.script:
                kind = f.script.pop(0)
            elif f.reject and re.search(f.reject, prompt):
                kind = 422
            else:
                kind, r = None, self._rng.random()
                for k, rate in ((429, f.rate_429), (503, f.rate_503), (424, f.rate_424), (500, f.rate_500),
                                ("drop", f.rate_drop)):
                    if r < rate:
                        kind = k
                        break
                    r -= rate
            retry_after, latency, hang = f.retry_after, f.latency, f.hang
        if kind is None:
            return None
        if kind == "hang":
            with self._lock:
                self._stats["hung"] += 1
            await asyncio.sleep(hang)
            return None
        if latency:
            await asyncio.sleep(latency)
        if kind == "drop":
            with self._lock:
                self._stats["dropped"] += 1
            # Close without an answer: the client sees the connection reset.
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=500)
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None and kind in (429, 503) else None
        message, error_type = {
            429: ("Model is overloaded", "overloaded"),
            503: ("Service temporarily unavailable", "unavailable"),
            424: ("Request failed during generation", "generation"),
            500: ("Incomplete generation", "incomplete_generation"),
            422: ("Input validation error: `inputs` tokens + `max_new_tokens` must be <= "
                  f"{self.max_total_tokens} (rejected by the loopback's reject pattern)", "validation"),
        }[int(kind)]
        return self._answer(_error(int(kind), message, error_type, headers))

    async def _run(self, prompt: str, **kw) -> dict | web.Response:
        """Generate (or echo) under the concurrency limit and the configured latency."""
        if self._in_flight >= self.max_concurrent_requests:
            return self._answer(_error(429, "Model is overloaded", "overloaded"))
        self._in_flight += 1
        with self._lock:
            self._stats["max_in_flight"] = max(self._stats["max_in_flight"], self._in_flight)
        try:
            if self.faults.latency:
                await asyncio.sleep(self.faults.latency)
            if self.faults.text is not None:
                out = _canned(self.faults.text, prompt)
            elif self.echo:
                out = _echo(prompt, kw["max_new_tokens"])
            else:
                loop = asyncio.get_running_loop()
                out = await loop.run_in_executor(self._executor, lambda: self._generate(prompt, **kw))
        finally:
            self._in_flight -= 1
        with self._lock:
            self._stats["generated_tokens"] += out["generated_tokens"]
        return out

    # ---------------------------------------------------------------- the model

    def _load(self, model_dir) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir)
        self.model.eval()
        eos = self.model.generation_config.eos_token_id
        self._eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])

    def _generate(self, prompt, *, max_new_tokens, sample, temperature, top_p, top_k, seed, stop, cut_stop) -> dict:
        import torch

        tok = self.tokenizer
        # TGI tokenizes the raw prompt with special tokens on (a BOS-adding
        # tokenizer adds its BOS here); the clients account for that.
        enc = tok(prompt, add_special_tokens=True, return_tensors="pt")
        n_prompt = enc["input_ids"].shape[1]
        if n_prompt > self.max_input_tokens:
            raise _Invalid(f"`inputs` must have less than {self.max_input_tokens} tokens. Given: {n_prompt}")
        if n_prompt + max_new_tokens > self.max_total_tokens:
            raise _Invalid(
                f"`inputs` tokens + `max_new_tokens` must be <= {self.max_total_tokens}. "
                f"Given: {n_prompt} `inputs` tokens and {max_new_tokens} `max_new_tokens`"
            )
        kwargs = {"do_sample": False, "max_new_tokens": max_new_tokens}
        if sample:
            seed = seed if seed is not None else random.getrandbits(63)
            torch.manual_seed(seed)
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k or 0)
        with torch.no_grad():
            out = self.model.generate(**enc, **kwargs)
        new = out[0, n_prompt:].tolist()
        finish = "eos_token" if new and new[-1] in self._eos else "length"
        text = tok.decode(new, skip_special_tokens=True)
        stop_reason = None
        if stop:
            # The first token at which a stop string appears ends the generation.
            for k in range(1, len(new) + 1):
                partial = tok.decode(new[:k], skip_special_tokens=True)
                hits = [(partial.find(s), s) for s in stop if s and s in partial]
                if hits:
                    at, stop_reason = min(hits)
                    new, finish = new[:k], "stop_sequence"
                    # TGI's text ends with the stop string; vLLM's ends before it.
                    text = partial[:at] if cut_stop else partial[: at + len(stop_reason)]
                    break
        tokens = [{"id": t, "text": tok.decode([t]), "logprob": None, "special": t in tok.all_special_ids}
                  for t in new]
        return {"text": text, "finish_reason": finish, "generated_tokens": len(new), "prompt_tokens": n_prompt,
                "tokens": tokens, "seed": seed if sample else None, "stop_reason": stop_reason}


def _check_tgi_parameters(p: dict, max_stop: int) -> None:
    """TGI's validation of GenerateParameters, the parts a client can get wrong."""
    t, top_p, n = p.get("temperature"), p.get("top_p"), p.get("max_new_tokens")
    if t is not None and t <= 0:
        raise _Invalid("`temperature` must be strictly positive")
    if top_p is not None and not 0 < top_p < 1:
        raise _Invalid("`top_p` must be > 0.0 and < 1.0")
    if n is not None and n < 1:
        raise _Invalid("`max_new_tokens` must be strictly positive")
    stop = p.get("stop") or []
    if len(stop) > max_stop:
        raise _Invalid(f"`stop` supports up to {max_stop} stop sequences. Given: {len(stop)}")
    seed = p.get("seed")
    if seed is not None and not 0 <= seed < 2**64:
        raise _Invalid("`seed` must be an unsigned 64-bit integer")


def _echo(prompt: str, max_new_tokens: int) -> dict:
    """Canned text, no model: for measuring the client."""
    words = ECHO_TEXT.split(" ")
    n = min(max_new_tokens, len(words))
    return {"text": " ".join(words[:n]), "finish_reason": "length" if n == max_new_tokens else "eos_token",
            "generated_tokens": n, "prompt_tokens": max(1, len(prompt) // 4),
            "tokens": [{"id": i, "text": w, "logprob": None, "special": False} for i, w in enumerate(words[:n])],
            "seed": None, "stop_reason": None}


def _canned(text: str, prompt: str) -> dict:
    """The `text` fault's answer: that text, whatever was asked (a hostile or broken server)."""
    return {"text": text, "finish_reason": "eos_token", "generated_tokens": 1, "prompt_tokens": max(1, len(prompt) // 4),
            "tokens": [{"id": 0, "text": text[:16], "logprob": None, "special": False}], "seed": None,
            "stop_reason": None}


def _error(status: int, message: str, error_type: str, headers: dict | None = None) -> web.Response:
    """TGI's ErrorResponse."""
    return web.json_response({"error": message, "error_type": error_type}, status=status, headers=headers)


# ---------------------------------------------------------------- as a process


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python tests/helpers/engine_server.py", description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="model folder (e.g. from `sdft-data tiny-model`); not needed with --echo")
    ap.add_argument("--model-id", help="the id /info reports (default: --model as given)")
    ap.add_argument("--model-sha", help="the sha /info reports")
    ap.add_argument("--served-name", help="the name /v1/models lists (default: the model id)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080, help="0 picks a free port; the URL is printed")
    ap.add_argument("--echo", action="store_true", help="canned text, no model: for benchmarks")
    ap.add_argument("--max-concurrent", type=int, default=128, help="more than this at once get 429, as in TGI")
    ap.add_argument("--max-input-tokens", type=int, default=1024)
    ap.add_argument("--max-total-tokens", type=int, default=2048)
    ap.add_argument("--token-file", help="require this bearer token (file holding it)")
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before every generation answer")
    for code in ("429", "503", "424", "500"):
        ap.add_argument(f"--rate-{code}", type=float, default=0.0, help=f"fraction of requests answered {code}")
    ap.add_argument("--rate-drop", type=float, default=0.0, help="fraction of connections dropped unanswered")
    ap.add_argument("--retry-after", type=float, help="Retry-After seconds on 429/503")
    ap.add_argument("--reject", help="regex: matching prompts get 422")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    args = ap.parse_args(argv)
    token = Path(args.token_file).read_text().strip() if args.token_file else None
    faults = Faults(rate_429=args.rate_429, rate_503=args.rate_503, rate_424=args.rate_424, rate_500=args.rate_500,
                    rate_drop=args.rate_drop, retry_after=args.retry_after, reject=args.reject,
                    latency=args.latency, seed=args.seed)
    server = EngineServer(
        args.model, model_id=args.model_id, model_sha=args.model_sha, served_name=args.served_name,
        host=args.host, port=args.port, echo=args.echo, max_concurrent_requests=args.max_concurrent,
        max_input_tokens=args.max_input_tokens, max_total_tokens=args.max_total_tokens, token=token, faults=faults,
    ).start()
    print(f"engine server listening on {server.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    server.stop()


if __name__ == "__main__":
    sys.exit(main())
