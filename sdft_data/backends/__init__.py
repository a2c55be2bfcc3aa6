"""Generation backends: one small interface, one module per engine.

A backend takes rendered prompts (plain text, already through the template)
and yields results as they finish, in any order. The run engine does the rest
(resume, shards, checks), so a backend knows nothing about datasets.

    local   transformers model in this process (GPU when present, else CPU)
    tgi     Text Generation Inference's HTTP API
    openai  any OpenAI-compatible /v1/completions server (vLLM, SGLang, llama.cpp, TGI)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Iterator, Protocol

from ..spec import Decoding


# Decoding parameters are a run setting (sdft_data.spec.Decoding); backends take them as they are.
GenerationParams = Decoding

# The engines make_backend opens (the --backend choices).
BACKENDS = ("local", "tgi", "openai")


@dataclass(frozen=True)
class Request:
    """One row to generate: its source row id, rendered prompt and own seed."""

    row_id: int
    prompt: str
    seed: int


@dataclass
class Result:
    """What came back for one request.

    status is "ok" or "failed"; a failed row carries `error` (one line, never a
    secret) and is recorded, not dropped. finish_reason follows TGI's names:
    "eos_token", "length" or "stop_sequence".
    """

    row_id: int
    text: str | None
    status: str = "ok"
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    generated_tokens: int | None = None
    error: str | None = None
    attempts: int = 1


@dataclass
class ModelInfo:
    """Identifies what generated the text, for the fingerprint and the manifest."""

    backend: str
    model_id: str
    revision: str | None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class EndpointError(RuntimeError):
    """The endpoints cannot serve this run (auth refused, wrong URL or model). One line."""


class EndpointDown(EndpointError):
    """Every endpoint kept failing past the retry budget. Finished rows were handed back first."""


class Backend(Protocol):
    """What the run engine needs from an engine.

    Optional: an `on_tokens` attribute. Where a backend has one, the engine sets
    it to a callable for the run (None after), and the backend calls it with
    each number of tokens it generates, so progress shows inside a long batch.
    """

    info: ModelInfo
    tokenizer: object  # a transformers tokenizer, used to render chat templates

    def generate(self, requests: Iterable[Request], params: GenerationParams) -> Iterator[Result]:
        """Yield one Result per request, as each finishes (any order)."""
        ...

    def close(self) -> None: ...


def make_backend(
    backend: str,
    *,
    model: str | None = None,
    endpoints: tuple[str, ...] = (),
    tokenizer: str | None = None,
    concurrency: int | None = None,
    token: str | None = None,
    batch_size: int = 16,
    revision: str | None = None,
    max_prompt_tokens: int | None = None,
    request_timeout: float | None = None,
    retry_budget: float | None = None,
    model_id: str | None = None,
) -> Backend:
    """Open the named backend. Raises ValueError with one clear line on bad arguments.

    request_timeout and retry_budget (seconds) are for the endpoint backends
    (see _http.RetryPolicy); None takes the defaults. max_prompt_tokens: longer
    prompts become failed rows, unsent. model_id (--model-id) names a local model's Hub id.
    """
    if backend == "local":
        if not model:
            raise ValueError("--backend local needs --model (a Hub id, a local model folder or a .gguf file)")
        if endpoints:
            raise ValueError("--endpoint is for the tgi and openai backends, not local")
        for name, value in (("--request-timeout", request_timeout), ("--retry-budget", retry_budget),
                            ("--concurrency", concurrency), ("--tokenizer", tokenizer)):
            if value is not None:
                raise ValueError(f"{name} is for the tgi and openai backends, not local")
        from .local import LocalBackend

        return LocalBackend(model, batch_size=batch_size, revision=revision, max_prompt_tokens=max_prompt_tokens,
                            model_id=model_id)
    if model_id is not None:
        raise ValueError("--model-id names a local model (a folder or .gguf file); a server reports its own model id")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    from ._http import RetryPolicy

    policy_args = {k: v for k, v in (("request_timeout", request_timeout), ("retry_budget", retry_budget))
                   if v is not None}
    policy = RetryPolicy(**policy_args)
    if backend == "tgi":
        if not endpoints:
            raise ValueError("--backend tgi needs at least one --endpoint URL")
        from .tgi import TGIBackend

        return TGIBackend(endpoints, model=model, tokenizer=tokenizer, concurrency=concurrency, token=token,
                          policy=policy, max_prompt_tokens=max_prompt_tokens)
    if backend == "openai":
        if not endpoints or not model:
            raise ValueError("--backend openai needs --endpoint URL and --model NAME")
        from .openai import OpenAIBackend

        return OpenAIBackend(endpoints, model=model, tokenizer=tokenizer, concurrency=concurrency, token=token,
                             policy=policy, max_prompt_tokens=max_prompt_tokens)
    raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
