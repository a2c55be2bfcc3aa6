"""TGI backend: Text Generation Inference's /generate API on one or more endpoints.

    backend = TGIBackend(["http://gpu1:8080", "http://gpu2:8080"])
    backend.info        # model_id and model_sha from the endpoints' /info
    for result in backend.generate(requests, GenerationParams(temperature=0)):
        ...

Prompts arrive rendered by the engine with the served model's tokenizer (its
chat template, the GSM8K prefill) and go to /generate as raw text: no
server-side templating. Each row carries its own seed; greedy (temperature 0)
is sent as `do_sample: false` because TGI rejects a temperature of 0, and a
top_p of 1 or more is left out because TGI accepts only 0 < top_p < 1.

The leading BOS. TGI tokenizes `inputs` with the tokenizer's special tokens on,
so for models whose tokenizer adds a BOS itself (Llama 2 and 3, Mistral, ...)
a chat-template prompt, which already starts with the BOS text, would get two
BOS tokens: outputs drift, and they no longer match the local backend, which
tokenizes the prompt exactly as rendered (add_special_tokens=False). So when
the served tokenizer adds a BOS, one leading BOS text is stripped from the
prompt and the server puts the BOS token back: the server then sees exactly
the tokens the local backend sees. A prompt that does not start with the BOS
text is sent as it is (the server will still add its BOS there; render
prompts with the chat template, which starts with it).

Stop sequences: TGI's generated_text ends with the stop sequence that ended
it; the openai backend gives the same.
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

# TGI's own default for --max-concurrent-requests, used when /info does not say.
DEFAULT_CONCURRENCY = 128


def tgi_parameters(params: GenerationParams) -> dict:
    """The GenerateParameters shared by every row (the seed is added per row)."""
    p: dict = {
        "max_new_tokens": params.max_new_tokens,
        "details": True,  # finish_reason and generated_tokens
        "decoder_input_details": False,  # the prompt's tokens back: large and unused
        "return_full_text": False,
        "do_sample": params.do_sample,
    }
    if params.do_sample:
        p["temperature"] = params.temperature
        if 0 < params.top_p < 1:
            p["top_p"] = params.top_p
        if params.top_k:
            p["top_k"] = params.top_k
    if params.stop:
        p["stop"] = list(params.stop)
    return p


def parse_generate(req: Request, data, headers) -> Result:
    """A Result from a /generate answer (or the list that TGI's compat route `/` returns).

    ValueError when the answer does not have GenerateResponse's shape and types:
    the pump then retries the row, and records it as failed if that goes on.
    """
    if isinstance(data, list) and data:
        data = data[0]
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object with generated_text, got {type(data).__name__}")
    text = data.get("generated_text")
    if not isinstance(text, str):
        raise ValueError(f"generated_text is {type(text).__name__}, not a string")
    details = data.get("details")
    if details is None:
        details = {}
    if not isinstance(details, dict):
        raise ValueError(f"details is {type(details).__name__}, not an object")
    finish = details.get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise ValueError(f"details.finish_reason is {type(finish).__name__}, not a string")
    generated = strict_int(details.get("generated_tokens"), "details.generated_tokens")
    if generated is None:
        generated = _int(headers.get("x-generated-tokens"))
    return Result(
        row_id=req.row_id,
        text=text,
        finish_reason=finish,
        # TGI reports the prompt's length in a header; the body has it only with
        # decoder_input_details, which would send every prompt token back.
        prompt_tokens=_int(headers.get("x-prompt-tokens")),
        generated_tokens=generated,
    )


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class TGIBackend(EndpointBackend):
    """Generate through one or more TGI endpoints serving the same model.

    model: optional; when given it must equal the served model id.
    tokenizer: Hub id or folder for rendering prompts, when the served id cannot be loaded here.
    concurrency: requests in flight per endpoint (default: the endpoint's max_concurrent_requests).
    token: bearer token (HF_TOKEN); never stored anywhere but the request headers.
    policy: retries and timeouts (RetryPolicy).
    max_prompt_tokens: rows whose prompt is longer are recorded as failed, unsent
      (without it the server's own limit answers 422, which fails the row too).
    """

    def __init__(
        self,
        endpoints: Iterable[str],
        *,
        model: str | None = None,
        tokenizer: str | None = None,
        concurrency: int | None = None,
        token: str | None = None,
        policy: RetryPolicy | None = None,
        max_prompt_tokens: int | None = None,
    ):
        urls = [normalize_endpoint(u) for u in endpoints]
        if not urls:
            raise ValueError("--backend tgi needs at least one --endpoint URL")
        self._check_endpoints(urls, concurrency, max_prompt_tokens)
        policy = policy or RetryPolicy()
        self.max_prompt_tokens = max_prompt_tokens
        infos = [_read_info(u, token, policy.request_timeout) for u in urls]
        first = infos[0]
        for u, inf in zip(urls[1:], infos[1:]):
            if (inf["model_id"], inf.get("model_sha")) != (first["model_id"], first.get("model_sha")):
                raise ValueError(
                    f"endpoints serve different models: {redact_url(urls[0])} serves {_model_str(first)}, "
                    f"{redact_url(u)} serves {_model_str(inf)}; point every --endpoint at the same model"
                )
        model_id = first["model_id"]
        if model and model != model_id:
            raise ValueError(
                f"--model {model!r} does not match the model served at {redact_url(urls[0])} ({model_id!r}); "
                "leave --model out or give the served id"
            )
        self.tokenizer = load_tokenizer(tokenizer or model_id, revision=None if tokenizer else first.get("model_sha"))
        self._bos = bos_added_by_server(self.tokenizer)
        self.concurrency = [concurrency or inf.get("max_concurrent_requests") or DEFAULT_CONCURRENCY for inf in infos]
        self.max_stop_sequences = first.get("max_stop_sequences")
        self.max_total_tokens = first.get("max_total_tokens")
        self.info = ModelInfo(
            backend="tgi",
            model_id=model_id,
            revision=first.get("model_sha"),
            extra={
                "endpoints": [redact_url(u) for u in urls],
                "max_concurrent_requests": first.get("max_concurrent_requests"),
                "max_input_tokens": first.get("max_input_tokens"),
                "max_total_tokens": first.get("max_total_tokens"),
                "version": first.get("version"),
                "tokenizer": tokenizer or model_id,
                "strips_leading_bos": self._bos is not None,
                "max_prompt_tokens": max_prompt_tokens,
                "request_timeout": policy.request_timeout,
                "retry_budget": policy.retry_budget,
            },
        )
        self._start_pump(urls, "/generate", token, policy)

    def check_params(self, params: GenerationParams) -> None:
        """ValueError (one line) when the endpoint would refuse `params` for every row."""
        if self.max_stop_sequences is not None and len(params.stop) > self.max_stop_sequences:
            raise ValueError(
                f"{len(params.stop)} stop sequences given, the endpoint accepts at most {self.max_stop_sequences}"
            )
        if self.max_total_tokens and params.max_new_tokens >= self.max_total_tokens:
            raise ValueError(
                f"max_new_tokens {params.max_new_tokens} does not fit the endpoint's max_total_tokens "
                f"{self.max_total_tokens} (prompt and generation together); lower --max-new-tokens"
            )

    def generate(self, requests: Iterable[Request], params: GenerationParams) -> Iterator[Result]:
        """Yield one Result per request as each finishes; raises EndpointDown if every endpoint stays down."""
        self.check_params(params)
        base = tgi_parameters(params)
        bos, sample = self._bos, params.do_sample

        def build(req: Request) -> dict:
            self._check_prompt(req.prompt)
            prompt = req.prompt[len(bos):] if bos and req.prompt.startswith(bos) else req.prompt
            # The seed only matters when sampling; TGI takes an unsigned 64-bit one.
            parameters = {**base, "seed": req.seed % 2**64} if sample else base
            return {"inputs": prompt, "parameters": parameters}

        return self._run(requests, build, parse_generate, params)


def _read_info(url: str, token: str | None, timeout: float = 30.0) -> dict:
    status, data = get_json(url + "/info", token=token, timeout=min(30.0, timeout))
    where = redact_url(url)
    if status in (401, 403):
        raise ValueError(f"{where}/info refused the request (HTTP {status}); check HF_TOKEN or --token-file")
    if status != 200 or not isinstance(data, dict) or not data.get("model_id"):
        raise ValueError(
            f"{where} does not answer TGI's /info (HTTP {status}); for vLLM, SGLang or llama.cpp use --backend openai"
        )
    check_fields(data, TGI_INFO_FIELDS, f"{where}/info", required=("model_id",))
    return data


def _model_str(info: dict) -> str:
    sha = info.get("model_sha")
    return f"{info['model_id']}@{sha[:12]}" if sha else info["model_id"]
