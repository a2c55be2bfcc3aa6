"""OpenAI-compatible backend: the /v1/completions API of vLLM, SGLang, llama.cpp or TGI.

    backend = OpenAIBackend(["http://gpu1:8000"], model="meta-llama/Llama-3.1-8B-Instruct")

The prompt goes as raw text to /v1/completions (not chat completions): the
engine has already rendered the chat template and any prefill. `--model` names
the served model; at start each endpoint's /v1/models must list it when the
server lists models. The revision is recorded as far as the server tells it:
TGI's /info gives the model sha; vLLM, SGLang and llama.cpp do not say, and the
revision is then None (vLLM's `root`, the weights' path or id, is kept in
`info.extra`).

Like the tgi backend, one leading BOS text is stripped when the served
tokenizer adds a BOS itself, since these servers tokenize raw prompts with
special tokens on (see tgi.py for why). Greedy is temperature 0.

Finish reasons are mapped to TGI's names. "stop" is "stop_sequence" when the
server says which stop string matched (vLLM's `stop_reason`), and the stop
string, which these servers cut from the text, is put back so the text ends
as TGI's does; "stop" without a stop string is "eos_token".
"""

from __future__ import annotations

from typing import Iterable, Iterator

from . import GenerationParams, ModelInfo, Request, Result
from ._http import (
    TGI_INFO_FIELDS,
    EndpointBackend,
    RetryPolicy,
    check_fields,
    bos_added_by_server,
    get_json,
    load_tokenizer,
    normalize_endpoint,
    redact_url,
    strict_int,
)

# Enough to keep a vLLM or SGLang server's batch full without queueing far ahead
# of it; a TGI behind /v1 reports its own figure in /info.
DEFAULT_CONCURRENCY = 64


def completion_body(params: GenerationParams, model: str) -> dict:
    """The request fields shared by every row (prompt and seed are added per row)."""
    body: dict = {"model": model, "max_tokens": params.max_new_tokens, "n": 1, "stream": False}
    if params.do_sample:
        body["temperature"] = params.temperature
        if params.top_p < 1:
            body["top_p"] = params.top_p
        if params.top_k:
            body["top_k"] = params.top_k  # an extra field: vLLM, SGLang, llama.cpp and TGI read it
    else:
        body["temperature"] = 0.0
    if params.stop:
        body["stop"] = list(params.stop)
    return body


def parse_completion(req: Request, data, headers, stop: tuple[str, ...] = ()) -> Result:
    """A Result from a /v1/completions answer, finish reason in TGI's names.

    ValueError when the answer does not have the completions shape and types:
    the pump then retries the row, and records it as failed if that goes on.
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object with choices, got {type(data).__name__}")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("choices is not a non-empty list of objects")
    choice = choices[0]
    text = choice.get("text")
    if not isinstance(text, str):
        raise ValueError(f"choices[0].text is {type(text).__name__}, not a string")
    reason = choice.get("finish_reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError(f"choices[0].finish_reason is {type(reason).__name__}, not a string")
    finish = None
    if reason in ("length", "eos_token", "stop_sequence"):  # TGI's /v1 already uses its own names
        finish = reason
    elif reason == "stop":
        matched = choice.get("stop_reason")
        if isinstance(matched, str):
            finish = "stop_sequence"
            if not text.endswith(matched):
                text += matched
        elif matched is not None or "stop_reason" in choice or not stop:
            # vLLM: None means the EOS token, an int a stop token id. Without stop
            # strings in the request, "stop" can only be the end of sequence.
            finish = "eos_token"
        # else: stop strings were asked for and the server does not say which
        # ended it; leave the reason unknown rather than guess.
    usage = data.get("usage") or {}
    if not isinstance(usage, dict):
        raise ValueError(f"usage is {type(usage).__name__}, not an object")
    return Result(
        row_id=req.row_id,
        text=text,
        finish_reason=finish,
        prompt_tokens=strict_int(usage.get("prompt_tokens"), "usage.prompt_tokens"),
        generated_tokens=strict_int(usage.get("completion_tokens"), "usage.completion_tokens"),
    )


class OpenAIBackend(EndpointBackend):
    """Generate through one or more OpenAI-compatible completions endpoints serving `model`.

    Arguments as for TGIBackend; `model` is required (servers route by it).
    """

    def __init__(
        self,
        endpoints: Iterable[str],
        *,
        model: str,
        tokenizer: str | None = None,
        concurrency: int | None = None,
        token: str | None = None,
        policy: RetryPolicy | None = None,
        max_prompt_tokens: int | None = None,
    ):
        # Users copy base URLs with or without the /v1 the OpenAI clients want.
        urls = [_strip_v1(normalize_endpoint(u)) for u in endpoints]
        if not urls or not model:
            raise ValueError("--backend openai needs --endpoint URL and --model NAME")
        self._check_endpoints(urls, concurrency, max_prompt_tokens)
        policy = policy or RetryPolicy()
        self.max_prompt_tokens = max_prompt_tokens
        served = [_served_model(u, model, token, min(30.0, policy.request_timeout)) for u in urls]
        revisions = {s["revision"] for s in served}
        if len(revisions) > 1:
            raise ValueError(
                f"endpoints serve different revisions of {model!r} ({', '.join(sorted(map(str, revisions)))}); "
                "point every --endpoint at the same model"
            )
        root = next((s["root"] for s in served if s["root"]), None)
        self.tokenizer = _load_first([tokenizer] if tokenizer else [model, root])
        self._bos = bos_added_by_server(self.tokenizer)
        self.model = model
        self.concurrency = [concurrency or s["max_concurrent_requests"] or DEFAULT_CONCURRENCY for s in served]
        self.info = ModelInfo(
            backend="openai",
            model_id=model,
            revision=served[0]["revision"],
            extra={
                "endpoints": [redact_url(u) for u in urls],
                "root": root,
                "tokenizer": tokenizer or model,
                "strips_leading_bos": self._bos is not None,
                "max_prompt_tokens": max_prompt_tokens,
                "request_timeout": policy.request_timeout,
                "retry_budget": policy.retry_budget,
            },
        )
        self._start_pump(urls, "/v1/completions", token, policy)

    def generate(self, requests: Iterable[Request], params: GenerationParams) -> Iterator[Result]:
        """Yield one Result per request as each finishes; raises EndpointDown if every endpoint stays down."""
        base = completion_body(params, self.model)
        bos, sample, stop = self._bos, params.do_sample, tuple(params.stop)

        def build(req: Request) -> dict:
            self._check_prompt(req.prompt)
            prompt = req.prompt[len(bos):] if bos and req.prompt.startswith(bos) else req.prompt
            # vLLM takes a signed 64-bit seed.
            return {**base, "prompt": prompt, "seed": req.seed % 2**63} if sample else {**base, "prompt": prompt}

        def parse(req: Request, data, headers) -> Result:
            return parse_completion(req, data, headers, stop)

        return self._run(requests, build, parse, params)


def _strip_v1(url: str) -> str:
    return url[: -len("/v1")] if url.endswith("/v1") else url


def _served_model(url: str, model: str, token: str | None, timeout: float = 30.0) -> dict:
    """What the endpoint says about `model`: revision, root, concurrency. ValueError when it serves another."""
    where = redact_url(url)
    status, data = get_json(url + "/v1/models", token=token, timeout=timeout)
    if status in (401, 403):
        raise ValueError(f"{where}/v1/models refused the request (HTTP {status}); check HF_TOKEN or --token-file")
    entries: list[dict] = []
    if status == 200 and isinstance(data, dict):
        # OpenAI and vLLM list models under "data"; TGI answers with a single model object.
        raw = data.get("data") if isinstance(data.get("data"), list) else [data] if "id" in data else []
        entries = [e for e in raw if isinstance(e, dict) and "id" in e]
    for e in entries:
        check_fields(e, {"id": "text", "revision": "text", "root": "text"}, f"{where}/v1/models", required=("id",))
    ids = [e["id"] for e in entries]
    if ids and model not in ids:
        raise ValueError(f"{where} serves {', '.join(map(repr, ids))}, not --model {model!r}")
    entry = next((e for e in entries if e["id"] == model), {})
    found = {
        "revision": entry.get("revision"),
        "root": entry.get("root") if entry.get("root") != model else None,
        "max_concurrent_requests": None,
    }
    # A TGI behind /v1 also answers /info: the model sha and its concurrency.
    # Other servers answer 404 there, which simply tells us nothing.
    status, info = get_json(url + "/info", token=token, tries=1, timeout=timeout)
    if status == 200 and isinstance(info, dict) and info.get("model_id") == model:
        check_fields(info, TGI_INFO_FIELDS, f"{where}/info")
        found["revision"] = found["revision"] or info.get("model_sha")
        found["max_concurrent_requests"] = info.get("max_concurrent_requests")
    return found


def _load_first(names: list[str | None]):
    """The first of the names that loads as a tokenizer; the first name's error otherwise."""
    error = None
    for name in names:
        if not name:
            continue
        try:
            return load_tokenizer(name)
        except ValueError as e:
            error = error or e
    raise error
