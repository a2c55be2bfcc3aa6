"""What the endpoint backends (tgi, openai) share: the request pump, retries, adaptive concurrency.

Both backends are the same machine with a different wire format: they hand
`HTTPPump` the endpoint URLs, a function that turns a Request into a JSON body
and a function that turns a 200 answer into a Result. The pump does the rest:

- An asyncio loop in its own thread sends requests with aiohttp; the engine's
  thread iterates a plain generator of Results, in finishing order.
- Requests are pulled from the engine's iterable lazily: at most about twice
  the total concurrency is pulled and not yet handed back, so a source of
  millions of rows is never held in memory.
- Each endpoint has its own concurrency limit, which adapts: a 429 or 503
  halves it (once per round trip, like TCP), successes grow it back, and a
  `Retry-After` pauses that endpoint. Requests go to the least loaded
  endpoint with room.
- Transient failures (connection refused or reset, timeouts, 5xx, 408, 424) are
  retried with exponential backoff and jitter. A permanent answer for one row
  (400, 413, 422: e.g. a prompt too long) fails that row only, with the
  server's reason. 401/403/404 fail the run at once: every row would fail.
- An endpoint failing several times in a row is put on probation: one request
  at a time, with exponential pauses. After `max_attempts` failed probes it is
  down; when every endpoint is down the generator raises EndpointDown, after
  handing back every result finished so far. With the default policy that is
  about three minutes of an endpoint answering nothing.
- Every request has a time limit (`request_timeout`, --request-timeout), a total
  deadline from connect to last byte (a server sending a byte at a time cannot
  stretch it), and the run has a budget (`retry_budget`, --retry-budget): once every endpoint has
  been failing, with no success, for that long (counted from the first failed
  request's sending), they are down. So an endpoint that accepts connections
  and never answers stops the run within about request_timeout + retry_budget.
- An answer that is not the expected JSON (wrong types, missing fields), or is
  larger than the new tokens asked allow (ANSWER_*_BYTES, MAX_CHARS_PER_TOKEN;
  a larger body is not read), is a transient failure of that row: retried,
  then recorded as failed.
- Redirects are not followed: a 3xx fails the run, naming where it pointed.
- A row the backend refuses before sending (`PromptRejected`, e.g. a prompt
  over --max-prompt-tokens) is recorded as failed with its reason at once.

Why aiohttp: the client's own CPU per request decides how many requests a
second one process can drive. On a 2-core machine this backend costs about
0.13 ms of CPU a request (a bare aiohttp loop 0.12 ms), huggingface_hub's
AsyncInferenceClient (httpx) about 1.2 ms; benchmarks/bench_endpoint.py
measures all three.

The bearer token lives only in the session's headers, and goes only to the
origin (scheme, host, port) of the --endpoint it was given with: nothing here
follows a redirect to another origin (fetch() follows same-origin redirects of
a GET and refuses the rest; the pump follows none). Every error text that
leaves this module is one line with the token and URL credentials removed.
Start-up answers (/info, /v1/models) are type-checked field by field
(check_fields): they end up in manifests and dataset cards.
"""

from __future__ import annotations

import asyncio
import email.utils
import gc
import json
import logging
import queue
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator
from urllib.parse import urljoin, urlsplit, urlunsplit

from . import EndpointDown, EndpointError, GenerationParams, Request, Result
from ..errors import first_line

log = logging.getLogger("sdft_data.backends")

# Statuses that say "this endpoint is busy": slow down (and honour Retry-After).
OVERLOADED = {429, 503}
# 4xx statuses that are worth retrying: a timeout, and TGI's 424 "Request failed
# during generation" (a shard crashed mid-batch; the same request usually succeeds).
RETRIED_4XX = {408, 424}
# Statuses that fail the whole run at once: every row would get the same answer.
# Any other 4xx says "this request can never succeed as sent": fail the row, go on.
FATAL = {401, 403, 404, 405}
# A Retry-After longer than this is clipped: a server asking for an hour would
# otherwise stall the run silently; the retry budget still bounds the wait.
MAX_RETRY_AFTER = 300.0
# Redirects are never followed by the pump: a token goes to the --endpoint it was given for and
# nowhere else, and a generation request has no business elsewhere. They fail the run, saying where.
REDIRECTS = {301, 302, 303, 307, 308}
# The most an answer may weigh: a base for the envelope, and per new token asked (TGI's details list
# each token with its text; JSON may escape a character into 6 bytes). A 50 MB answer to a 32-token
# request is not read.
ANSWER_BASE_BYTES = 1 << 20
ANSWER_BYTES_PER_TOKEN = 8 << 10
# The longest text a token decodes to, generously (long runs of spaces or punctuation); a generated
# text longer than this per token asked, plus the stop string, is not this request's answer.
MAX_CHARS_PER_TOKEN = 256
# Consecutive failures (no success between) after which an endpoint is put on
# probation. Random faults rarely chain this long (20% faults: 0.2**5 = 3e-4).
SUSPECT_AFTER = 5


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. Defaults suit a real server; tests shrink them."""

    max_attempts: int = 10  # tries per row, and failed probes before an endpoint is down
    backoff_base: float = 1.0  # seconds; try n waits about base * 2**(n-1), jittered
    backoff_cap: float = 60.0
    request_timeout: float = 600.0  # one request, connect to last byte (long generations queue)
    connect_timeout: float = 10.0
    # Seconds every endpoint may keep failing, without a single success, before
    # the run stops (EndpointDown): what bounds a run against a stalled server.
    retry_budget: float = 900.0

    def __post_init__(self):
        for name in ("request_timeout", "retry_budget", "connect_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be more than 0 seconds, not {getattr(self, name)}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")

    def backoff(self, n: int) -> float:
        """Pause before retry n (1-based): exponential, capped, with equal jitter."""
        d = min(self.backoff_cap, self.backoff_base * 2 ** max(0, n - 1))
        # Equal jitter: half fixed, so the budget has a floor; half random, so
        # many rows failing together do not come back together.
        return d / 2 + random.uniform(0, d / 2)


class Stats:
    """Live counters for the progress line. Written by the pump thread, read by anyone."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.started = time.monotonic()
        self.done = 0  # rows answered ok
        self.failed = 0  # rows recorded as failed
        self.retries = 0  # requests sent again after a failure
        self.in_flight = 0
        self.prompt_tokens = 0
        self.generated_tokens = 0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rows_per_s(self) -> float:
        return (self.done + self.failed) / max(self.elapsed, 1e-9)

    @property
    def tokens_per_s(self) -> float:
        """Generated tokens a second."""
        return self.generated_tokens / max(self.elapsed, 1e-9)

    def snapshot(self) -> dict:
        return {
            "done": self.done,
            "failed": self.failed,
            "retries": self.retries,
            "in_flight": self.in_flight,
            "rows_per_s": round(self.rows_per_s, 2),
            "generated_tokens_per_s": round(self.tokens_per_s, 1),
            "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens,
        }

    def __repr__(self) -> str:
        return f"Stats({self.snapshot()})"


# ---------------------------------------------------------------- URLs, secrets, errors


def normalize_endpoint(url: str) -> str:
    """A base URL without trailing slash; ValueError with one line when it is not http(s)."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        raise ValueError(f"--endpoint {redact_url(url)!r} is not a valid URL, e.g. http://localhost:8080") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--endpoint {redact_url(url)!r} is not an http(s) URL, e.g. http://localhost:8080")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL end up in shell history, logs and process lists; and
        # the servers want a bearer token, not basic auth. Never echo them back.
        raise ValueError(
            f"--endpoint {redact_url(url)!r} has a user:password in it: remove it and put the token in a file "
            "given with --token-file (or in HF_TOKEN)"
        )
    return url.rstrip("/")


def redact_url(url: str) -> str:
    """The URL without user:password and query string, for logs, errors and manifests."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    if port:
        host = f"{host}:{port}"
    return urlunsplit((parts.scheme, host, parts.path, "", "")).rstrip("/")


def secrets_of(token: str | None, urls: Iterable[str]) -> tuple[str, ...]:
    """The strings that must never be shown: the token and any password in the URLs."""
    found = [token] if token else []
    for u in urls:
        p = urlsplit(u)
        found += [s for s in (p.password, p.query) if s]
    # Longest first so a secret containing another is removed whole.
    return tuple(sorted({s for s in found if len(s) >= 4}, key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """One line, secrets replaced by ***, at most 500 characters."""
    for s in secrets:
        text = text.replace(s, "***")
    text = " ".join(text.split())
    return text if len(text) <= 500 else text[:497] + "..."


def error_text(status: int, body: bytes) -> str:
    """The server's reason for a non-200 answer, from TGI, OpenAI or vLLM error bodies."""
    reason = ""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):  # OpenAI: {"error": {"message", "type"}}
            reason = " ".join(str(x) for x in (err.get("type"), err.get("message")) if x)
        elif isinstance(err, str):  # TGI: {"error", "error_type"}
            reason = " ".join(str(x) for x in (data.get("error_type"), err) if x)
        elif "message" in data:  # vLLM: {"object": "error", "message", "type"}
            reason = " ".join(str(x) for x in (data.get("type"), data.get("message")) if x)
        elif "detail" in data:  # FastAPI-style
            reason = str(data["detail"])
    if not reason:
        reason = body[:300].decode("utf-8", "replace").strip() or "(empty body)"
    return f"HTTP {status}: {reason}"


def describe_exception(e: BaseException) -> str:
    """A short, credential-free description of a client-side failure."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def strict_int(value, name: str) -> int | None:
    """An optional token count from an answer body: None, or an int; ValueError for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} is {type(value).__name__} {str(value)[:40]!r}, not an integer")
    return value


# What a server's start-up answer may hold, per field: "text" (one printable line), "count" (an
# integer >= 1), "size" (an integer >= 0), each optional (None) unless the name is in `required`.
TGI_INFO_FIELDS = {"model_id": "text", "model_sha": "text", "max_concurrent_requests": "count",
                   "max_stop_sequences": "size", "max_input_tokens": "count", "max_total_tokens": "count",
                   "version": "text"}


def check_fields(data: dict, kinds: dict[str, str], where: str, required: tuple[str, ...] = ()) -> None:
    """ValueError (one line, naming the field) when a field of a server's answer has the wrong type.

    These values end up in manifests, dataset cards and training records; a wrong type there
    would crash later, far from its cause.
    """
    for name, kind in kinds.items():
        value = data.get(name)
        if value is None and name not in required:
            continue
        if kind == "text":
            ok = isinstance(value, str) and 0 < len(value) <= 500 and value.isprintable()
            want = "a one-line string"
        else:
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= (1 if kind == "count" else 0)
            want = "a positive integer" if kind == "count" else "an integer >= 0"
        if not ok:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise ValueError(f"{where}: {name} is {type(value).__name__} {shown}, not {want}; is this the "
                             "server it should be?")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), clipped; None when absent."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class RequestFailed(Exception):
    """fetch() got no complete answer: `reason` is one line, credential-free ("no complete answer within 5 s")."""

    def __init__(self, reason: str, *, timed_out: bool = False, retry: bool = False):
        super().__init__(reason)
        self.reason, self.timed_out, self.retry = reason, timed_out, retry


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port: what a credential is bound to."""
    p = urlsplit(url)
    return p.scheme.lower(), (p.hostname or "").lower(), p.port or {"http": 80, "https": 443}.get(p.scheme.lower())


class _Deadline:
    """A total time limit for one request: when it passes, the request's sockets are shut, so a
    server that sends one byte at a time cannot keep a read alive (socket timeouts are per read)."""

    def __init__(self, seconds: float):
        self.seconds, self.expired, self._socks, self._lock = seconds, False, [], threading.Lock()
        self._end = time.monotonic() + seconds
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return max(0.001, self._end - time.monotonic())

    def watch(self, sock) -> None:
        with self._lock:
            self._socks.append(sock)
            expired = self.expired
        if expired:
            self._shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            socks = list(self._socks)
        for sock in socks:
            self._shut(sock)

    @staticmethod
    def _shut(sock) -> None:
        import socket

        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, also under TLS
        except OSError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


def fetch(url: str, *, token: str | None, timeout: float, data: dict | None = None, max_bytes: int = 1 << 20,
          follow: bool = True) -> tuple[int, bytes]:
    """One HTTP request: GET `url`, or POST `data` as JSON. Returns (status, body).

    What every plain request of the toolkit goes through (an endpoint's /info and /v1/models, the
    AlpacaEval judge); the generation requests go through the pump, under the same rules:
    - `timeout` is the total deadline, connect to last byte;
    - a body over `max_bytes` is refused, unread;
    - the token goes only to the origin (scheme, host, port) of `url`: a redirect to another origin
      is refused (`follow=False`: every redirect is), never followed with or without the token.
    RequestFailed with one credential-free line when no complete answer came.
    """
    import http.client
    import urllib.error
    import urllib.request

    deadline = _Deadline(timeout)
    first = origin(url)

    class Connection(http.client.HTTPConnection):
        def connect(self):
            super().connect()
            deadline.watch(self.sock)

    class TLSConnection(http.client.HTTPSConnection):
        def connect(self):
            super().connect()
            deadline.watch(self.sock)

    class Plain(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(Connection, req)

    class TLS(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(TLSConnection, req, context=self._context)

    class SameOrigin(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            if origin(newurl) != first:
                raise RequestFailed(f"answered {code}, a redirect to another origin ({redact_url(newurl)}): not "
                                    "followed, so the token goes nowhere else; give that URL if you trust it")
            if not follow:
                raise RequestFailed(f"answered {code}, a redirect to {redact_url(newurl)}: not followed; give "
                                    "that URL instead")
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    headers = {"Accept": "application/json"}
    body = None
    if data is not None:
        headers["Content-Type"] = "application/json"
        body = json.dumps(data).encode()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    opener = urllib.request.build_opener(Plain, TLS, SameOrigin)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body is not None else "GET")
    too_big = RequestFailed(f"answer larger than {max_bytes} bytes: not what this server should send")
    try:
        try:
            with opener.open(request, timeout=deadline.remaining()) as resp:
                if int(resp.headers.get("Content-Length") or 0) > max_bytes:
                    raise too_big
                content, status = resp.read(max_bytes + 1), resp.status
        except urllib.error.HTTPError as e:
            content, status = e.read(max_bytes + 1), e.code
        if deadline.expired:
            raise RequestFailed(f"no complete answer within {timeout:g} s", timed_out=True)
        if len(content) > max_bytes:
            raise too_big
        return status, content
    except RequestFailed:
        raise
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        if deadline.expired or isinstance(getattr(e, "reason", e), TimeoutError):
            raise RequestFailed(f"no complete answer within {timeout:g} s", timed_out=True) from None
        reason = e.reason if isinstance(e, urllib.error.URLError) else e
        raise RequestFailed(reason if isinstance(reason, str) else describe_exception(reason), retry=True) from None
    finally:
        deadline.cancel()


def get_json(url: str, *, token: str | None, timeout: float = 30.0, tries: int = 3) -> tuple[int, object]:
    """GET a JSON document at start-up (the /info or /v1/models of an endpoint), through fetch().

    Returns (status, parsed body or None). Connection failures are retried a few
    times (a server may be restarting); if it stays unreachable, ValueError with one
    line, since a wrong --endpoint is the usual cause. A server that takes the
    connection and does not answer in full within `timeout` (the total deadline)
    is not retried: it would only hang again. A redirect to another origin is
    refused (the token would go there), and so is an answer over 1 MB.
    """
    secrets = secrets_of(token, [url])
    last = ""
    for attempt in range(1, tries + 1):
        try:
            status, body = fetch(url, token=token, timeout=timeout)
        except RequestFailed as e:
            if e.timed_out:
                raise ValueError(scrub(
                    f"no answer from {redact_url(url)} within {timeout:g} s (connect to last byte): the server takes "
                    "connections but does not answer in full; check that it is up and serving (or raise "
                    "--request-timeout)", secrets)) from None
            if not e.retry:
                raise ValueError(scrub(f"{redact_url(url)} {e.reason}", secrets)) from None
            last = e.reason
            if attempt < tries:
                time.sleep(0.5 * 2 ** (attempt - 1))
            continue
        if status >= 500 and attempt < tries:
            last = error_text(status, body)
            time.sleep(0.5 * 2 ** (attempt - 1))
            continue
        try:
            return status, json.loads(body) if body else None
        except (ValueError, RecursionError):
            return status, None
    raise ValueError(scrub(f"cannot reach {redact_url(url)} ({last}); is the server up? check --endpoint", secrets))


# ---------------------------------------------------------------- tokenizer helpers


def load_tokenizer(name: str, *, revision: str | None = None):
    """The served model's tokenizer (trust_remote_code off); ValueError telling to pass --tokenizer."""
    import os

    from transformers import AutoTokenizer

    # A commit sha only makes sense for a Hub id, not for a folder on this machine.
    rev = None if os.path.isdir(name) else revision
    files = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    if os.path.isdir(name) and not any(os.path.isfile(os.path.join(name, f)) for f in files):
        # transformers' own words here are cut mid-sentence ("Couldn't instantiate the backend tokenizer from one of:").
        raise ValueError(f"{name} holds no tokenizer (no {', '.join(files)}); pass --tokenizer with a model folder "
                         "or Hub id that has one")
    try:
        return AutoTokenizer.from_pretrained(name, revision=rev, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - any load failure means the same to the user
        why = first_line(e)
        raise ValueError(
            f"cannot load the tokenizer {name!r} here ({why[:200]}); pass --tokenizer with the served "
            "model's Hub id or a local folder holding its tokenizer"
        ) from None


def bos_added_by_server(tokenizer) -> str | None:
    """The BOS text a server adds by itself when it tokenizes a raw prompt, or None.

    Servers tokenize raw prompts with the tokenizer's special tokens on (TGI's
    /generate, vLLM, SGLang, llama.cpp completions). The served tokenizer is the
    one we load, so asking it tells what the server will do.
    """
    bos, bos_id = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "bos_token_id", None)
    if not bos or bos_id is None:
        return None
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bos if ids[:1] == [bos_id] else None


# ---------------------------------------------------------------- endpoints


class Endpoint:
    """One server: its URL and its adaptive concurrency state (touched only in the pump thread)."""

    def __init__(self, url: str, limit: int):
        self.url = url
        self.name = redact_url(url)
        self.max_limit = max(1, int(limit))
        self.limit = float(self.max_limit)  # the server's own figure: start there
        self.ssthresh = float(self.max_limit)
        self.in_flight = 0
        self.paused_until = 0.0
        # Bumped at each reaction (halving, probation step); answers to requests
        # sent before it do not trigger another, so 128 requests failing together
        # count as one signal, not 128.
        self.epoch = 0
        self.fails = 0  # failures since the last success
        self.level = 0  # failed probes while on probation; 0 = healthy
        self.last_error = ""
        self.failing_since: float | None = None

    @property
    def on_probation(self) -> bool:
        return self.level > 0

    def room(self, now: float) -> int:
        if now < self.paused_until:
            return 0
        return max(1, int(self.limit)) - self.in_flight

    def on_success(self) -> None:
        if self.level:
            log.warning("endpoint %s answers again", self.name)
            # Come back gently: slow start from 1 to half the old limit.
            self.limit, self.ssthresh = 1.0, max(1.0, self.max_limit / 2)
        self.fails = self.level = 0
        self.failing_since = None
        if self.limit < self.max_limit:
            # Slow start (+1 per success doubles per round trip), then +1 per round trip.
            self.limit = min(self.max_limit, self.limit + (1.0 if self.limit < self.ssthresh else 1.0 / self.limit))

    def on_overload(self, epoch: int, retry_after: float | None, now: float) -> None:
        if epoch == self.epoch and self.limit > 1:
            old = int(self.limit)
            self.limit = max(1.0, self.limit / 2)
            self.ssthresh = self.limit
            self.epoch += 1
            log.info("endpoint %s overloaded: concurrency %d -> %d", self.name, old, int(self.limit))
        if retry_after:
            self.paused_until = max(self.paused_until, now + retry_after)

    def on_failure(self, epoch: int, why: str, policy: RetryPolicy, now: float, sent_at: float | None = None) -> None:
        """A failure that says nothing about the request itself: maybe the endpoint is down.

        `sent_at`: when the failed request left. The endpoint has been failing
        since then, not since its timeout ran out.
        """
        self.fails += 1
        self.last_error = why
        since = now if sent_at is None else sent_at
        if self.failing_since is None or since < self.failing_since:
            self.failing_since = since
        if not self.level:
            # Never later than a row's own budget, so that a row cannot give up
            # on an endpoint that is in fact down (that must fail the run instead).
            if self.fails < min(SUSPECT_AFTER, policy.max_attempts):
                return
            log.warning("endpoint %s failing (%d in a row, last: %s); probing it", self.name, self.fails, why)
        elif epoch != self.epoch:
            return  # sent before the last probation step: already counted
        self.level += 1
        self.epoch += 1
        self.limit = 1.0
        self.paused_until = now + policy.backoff(self.level)

    def is_down(self, policy: RetryPolicy, now: float | None = None) -> bool:
        if self.level >= policy.max_attempts:
            return True
        # Failing, with no success in between, for longer than the run's budget.
        return (self.fails > 0 and self.failing_since is not None and now is not None
                and now - self.failing_since >= policy.retry_budget)


class PromptRejected(ValueError):
    """Raised by a backend's build(request): this row cannot be sent (its reason); it is recorded as failed."""


class _Row:
    __slots__ = ("req", "body", "attempts")

    def __init__(self, req: Request, body: bytes):
        self.req, self.body, self.attempts = req, body, 0


_DONE = object()


class HTTPPump:
    """Sends one POST per request to a pool of endpoints and yields Results as they finish.

    build(request) -> JSON-able body (raise PromptRejected to fail the row unsent);
    parse(request, answer, headers) -> Result for a 200 answer (raise
    KeyError/ValueError/TypeError when the answer is malformed).
    """

    def __init__(
        self,
        endpoints: list[str],
        *,
        limits: list[int],
        path: str,
        token: str | None,
        policy: RetryPolicy,
        stats: Stats,
    ):
        self.urls = list(endpoints)
        self.limits = list(limits)
        self.path = path
        self.policy = policy
        self.stats = stats
        self._secrets = secrets_of(token, self.urls)
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:  # never the headers: they hold the token
        return f"HTTPPump({[redact_url(u) for u in self.urls]}, limits={self.limits})"

    def run(
        self,
        requests: Iterable[Request],
        build: Callable[[Request], dict],
        parse: Callable[[Request, object, dict], Result],
        max_bytes: int = ANSWER_BASE_BYTES,
    ) -> Iterator[Result]:
        """Yield one Result per request, in finishing order; see the module docstring.

        max_bytes: the largest answer body read; a larger one is a malformed answer.
        """
        run = _Run(self, iter(requests), build, parse, max_bytes)
        thread = threading.Thread(target=run.thread_main, name="sdft-http-pump", daemon=True)
        # A full garbage collection rescans every object the process holds: with
        # transformers and a tokenizer loaded that is ~300k objects and ~150 ms,
        # during which no answer is read and no request sent. Objects that
        # existed before the run are left out of collections while it lasts,
        # and put back at its end.
        gc.freeze()
        thread.start()
        try:
            yield from run.results()
        finally:
            run.stop()
            thread.join()
            gc.unfreeze()


class _Run:
    """One generate() call: the dispatcher and its attempts, living in the pump thread."""

    def __init__(self, pump: HTTPPump, source: Iterator[Request], build, parse, max_bytes: int):
        self.pump, self.policy, self.stats = pump, pump.policy, pump.stats
        self.source, self.build, self.parse, self.max_bytes = source, build, parse, max_bytes
        self.endpoints = [Endpoint(u, n) for u, n in zip(pump.urls, pump.limits)]
        # Pull no further ahead than this many rows not yet handed to the engine.
        self.max_outstanding = 2 * sum(e.max_limit for e in self.endpoints) + 16
        self.out: queue.SimpleQueue = queue.SimpleQueue()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = threading.Event()
        self.stopping = False
        self.main_task: asyncio.Task | None = None

    # ---- engine thread

    def results(self) -> Iterator[Result]:
        self.started.wait()
        consumed = 0
        while True:
            try:
                item = self.out.get_nowait()
            except queue.Empty:
                # About to block: tell the pump how far we got so it can pull more.
                if consumed:
                    self._notify_consumed(consumed)
                    consumed = 0
                item = self._wait()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            consumed += 1
            if consumed >= 64:
                self._notify_consumed(consumed)
                consumed = 0
            yield item

    def _wait(self):
        """The next item, blocking. In slices: a blocking get() without a timeout is not
        interrupted by Ctrl-C (the main thread would sit there while every request stalls)."""
        while True:
            try:
                return self.out.get(timeout=0.25)
            except queue.Empty:
                continue

    def _notify_consumed(self, n: int) -> None:
        try:
            self.loop.call_soon_threadsafe(self._consumed, n)
        except RuntimeError:  # loop already closed: the run is over
            pass

    def stop(self) -> None:
        """Called when the engine stops iterating (done, error or interrupt): cancel what is in flight."""
        self.stopping = True
        if self.loop is not None and self.main_task is not None:
            try:
                self.loop.call_soon_threadsafe(self.main_task.cancel)
            except RuntimeError:
                pass

    # ---- pump thread

    def thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - anything that escapes must reach the engine
            self.started.set()
            self.out.put(e)
            self.out.put(_DONE)

    async def _main(self) -> None:
        import aiohttp

        self.loop = asyncio.get_running_loop()
        self.main_task = asyncio.current_task()
        self.wake = asyncio.Event()
        self.ready: deque[_Row] = deque()  # rows due for a retry
        self.tasks: set[asyncio.Task] = set()
        self.active = 0  # rows pulled and not finished
        self.unconsumed = 0  # results queued, not yet taken by the engine
        self.exhausted = False
        self.fatal: BaseException | None = None
        self.started.set()
        if self.stopping:
            return
        timeout = aiohttp.ClientTimeout(total=self.policy.request_timeout, sock_connect=self.policy.connect_timeout)
        # limit=0: the endpoints' own limits bound the connections, not aiohttp's default of 100.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
        error: BaseException | None = None
        try:
            async with aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers=self.pump._headers
            ) as session:
                self.session = session
                try:
                    await self._dispatch()
                finally:
                    for t in list(self.tasks):
                        t.cancel()
                    await asyncio.gather(*self.tasks, return_exceptions=True)
        except asyncio.CancelledError:
            pass  # the engine stopped iterating
        except BaseException as e:  # noqa: BLE001 - e.g. the engine's own iterator raised
            error = e
        if self.fatal is not None:
            error = self.fatal
        if error is not None:
            self.out.put(error)
        self.out.put(_DONE)

    def _consumed(self, n: int) -> None:
        self.unconsumed -= n
        self.wake.set()

    def _next_row(self) -> _Row | None:
        if self.ready:
            return self.ready.popleft()
        while not self.exhausted and self.active + self.unconsumed < self.max_outstanding:
            try:
                req = next(self.source)
            except StopIteration:
                self.exhausted = True
                return None
            self.active += 1
            try:
                return _Row(req, json.dumps(self.build(req)).encode())
            except PromptRejected as e:
                # Refused before sending (e.g. too long): a failed row, not a failed run.
                self.stats.failed += 1
                self._finish(Result(req.row_id, None, status="failed", error=scrub(str(e), self.pump._secrets),
                                    attempts=0))
        return None

    def _pick(self, now: float) -> Endpoint | None:
        """The endpoint with the most spare room, relative to its limit."""
        best, best_load = None, 2.0
        for ep in self.endpoints:
            room = ep.room(now)
            if room <= 0:
                continue
            load = ep.in_flight / max(1, int(ep.limit))
            if load < best_load:
                best, best_load = ep, load
        return best

    async def _dispatch(self) -> None:
        while self.fatal is None:
            now = time.monotonic()
            ep = self._pick(now)
            if ep is not None:
                row = self._next_row()
                if row is not None:
                    ep.in_flight += 1
                    self.stats.in_flight += 1
                    task = asyncio.create_task(self._attempt(ep, row))
                    self.tasks.add(task)
                    task.add_done_callback(self.tasks.discard)
                    continue
            if self.exhausted and self.active == 0:
                return
            # Sleep until an attempt ends, a retry is due, the engine took
            # results, or a paused endpoint resumes.
            self.wake.clear()
            pauses = [e.paused_until - now for e in self.endpoints if e.paused_until > now]
            try:
                await asyncio.wait_for(self.wake.wait(), timeout=min(pauses) if pauses else None)
            except TimeoutError:
                pass

    async def _attempt(self, ep: Endpoint, row: _Row | None) -> None:
        """Send rows to `ep` one after another while it has room; the dispatcher starts the rest."""
        import aiohttp

        url = ep.url + self.pump.path
        while row is not None:
            row.attempts += 1
            epoch = ep.epoch
            sent_at = time.monotonic()
            status, body, headers, failure = 0, b"", {}, None
            try:
                # The session's total timeout covers connect to last byte of the body.
                async with self.session.post(url, data=row.body, allow_redirects=False) as resp:
                    status, headers = resp.status, resp.headers
                    if (resp.content_length or 0) > self.max_bytes:
                        failure = f"malformed answer ({resp.content_length} bytes, more than {self.max_bytes})"  # unread
                    else:
                        body = await resp.content.read(self.max_bytes + 1)
                        while len(body) <= self.max_bytes and not resp.content.at_eof():
                            body += await resp.content.read(self.max_bytes + 1 - len(body))
                        if len(body) > self.max_bytes:
                            failure = f"malformed answer (more than {self.max_bytes} bytes)"
            except TimeoutError:
                failure = f"no answer within {self.policy.request_timeout:g} s"
            except aiohttp.ClientError as e:
                failure = describe_exception(e)
            finally:
                ep.in_flight -= 1
                self.stats.in_flight -= 1
                self.wake.set()
            try:
                self._handle(ep, row, epoch, status, body, headers, failure, sent_at)
            except Exception as e:  # noqa: BLE001 - a bug in parse must stop the run, not hang it
                self.fatal = e
                self.wake.set()
                return
            # The slot this row just freed goes straight to the next row: at hundreds
            # of answers a second, a trip through the dispatcher and a new task per
            # request is a measurable share of the client's time.
            row = None
            if self.fatal is None and ep.room(time.monotonic()) > 0:
                row = self._next_row()
                if row is not None:
                    ep.in_flight += 1
                    self.stats.in_flight += 1

    def _handle(self, ep, row, epoch, status, body, headers, failure, sent_at=None) -> None:
        now = time.monotonic()
        secrets = self.pump._secrets
        if failure is None and status == 200:
            try:
                result = self.parse(row.req, json.loads(body), headers)
            except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as e:
                # Not the answer this protocol gives (another server on that port, a
                # proxy's page, a server bug): retried like any transient failure.
                failure = f"malformed answer ({describe_exception(e)})"
            else:
                ep.on_success()
                result.attempts = row.attempts
                self.stats.done += 1
                self.stats.prompt_tokens += result.prompt_tokens or 0
                self.stats.generated_tokens += result.generated_tokens or 0
                self._finish(result)
                return
        if failure is None:
            failure = error_text(status, body)
        failure = scrub(failure, secrets)

        if status in REDIRECTS:
            where = redact_url(urljoin(ep.url + self.pump.path, headers.get("Location", "")))
            self.fatal = EndpointError(f"{ep.name}{self.pump.path} answered {status}, a redirect to {where}: not "
                                       "followed (the token goes only to the --endpoint given); give the final URL "
                                       "as --endpoint if you trust it")
            self.wake.set()
            return
        if status in FATAL:
            hint = "; check HF_TOKEN or --token-file" if status in (401, 403) else ""
            self.fatal = EndpointError(f"{ep.name}{self.pump.path} refused the request ({failure}){hint}")
            self.wake.set()
            return
        if 400 <= status < 500 and status not in OVERLOADED and status not in RETRIED_4XX:
            # The server looked at this request and said no: retrying cannot help.
            ep.on_success()  # it is alive and answering
            self.stats.failed += 1
            self._finish(Result(row.req.row_id, None, status="failed", error=failure, attempts=row.attempts))
            return

        # Transient: retry. Overload first adapts the endpoint's concurrency; any
        # failure counts towards probation once the endpoint cannot slow down further.
        if status in OVERLOADED:
            ep.on_overload(epoch, parse_retry_after(headers.get("Retry-After")), now)
        if status not in OVERLOADED or ep.limit <= 1:
            ep.on_failure(epoch, failure, self.policy, now, sent_at)
        else:
            ep.last_error = failure

        if all(e.is_down(self.policy, now) for e in self.endpoints):
            self.fatal = EndpointDown(self._down_message(now))
            self.wake.set()
            return
        if row.attempts >= self.policy.max_attempts and not ep.on_probation:
            # The endpoint is answering others: something about this row. Record it, go on.
            self.stats.failed += 1
            self._finish(
                Result(row.req.row_id, None, status="failed", attempts=row.attempts,
                       error=f"gave up after {row.attempts} attempts: {failure}")
            )
            return
        self.stats.retries += 1
        self.loop.call_later(self.policy.backoff(row.attempts), self._requeue, row)

    def _requeue(self, row: _Row) -> None:
        self.ready.append(row)
        self.wake.set()

    def _finish(self, result: Result) -> None:
        self.active -= 1
        self.unconsumed += 1
        self.out.put(result)
        self.wake.set()

    def _down_message(self, now: float) -> str:
        parts = []
        for e in self.endpoints:
            since = now - (e.failing_since or now)
            parts.append(f"{e.name} ({e.fails} failures in a row over {since:.0f} s, last: {e.last_error})")
        what = "endpoint" if len(parts) == 1 else f"all {len(parts)} endpoints"
        p = self.policy
        return scrub(
            f"{what} down: {'; '.join(parts)} (--request-timeout {p.request_timeout:g} s, --retry-budget "
            f"{p.retry_budget:g} s). Rows finished so far are kept; run the same command again to resume",
            self.pump._secrets,
        )


class EndpointBackend:
    """What the TGI and OpenAI backends share: argument checks, one pump over the endpoints, retry stats.

    A subclass sets `info` and `concurrency`, calls `_start_pump`, and builds
    and parses its own requests in `generate` through `_run`.
    """

    max_prompt_tokens: int | None = None

    @staticmethod
    def _check_endpoints(urls: list[str], concurrency: int | None, max_prompt_tokens: int | None = None) -> None:
        if len(set(urls)) != len(urls):
            raise ValueError("the same --endpoint is given twice; give each server once")
        if concurrency is not None and concurrency < 1:
            raise ValueError(f"--concurrency must be at least 1, not {concurrency}")
        if max_prompt_tokens is not None and max_prompt_tokens < 1:
            raise ValueError(f"--max-prompt-tokens must be at least 1, not {max_prompt_tokens}")

    def _check_prompt(self, prompt: str) -> None:
        """PromptRejected when the prompt is over --max-prompt-tokens (counted with the served tokenizer)."""
        limit = self.max_prompt_tokens
        # A token is at least one character: a prompt this short cannot be over the limit.
        if limit is None or len(prompt) <= limit:
            return
        n = len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        if n > limit:
            raise PromptRejected(f"prompt too long: {n} tokens, more than --max-prompt-tokens {limit}")

    def _start_pump(self, urls: list[str], path: str, token: str | None, policy: RetryPolicy | None) -> None:
        self.stats = Stats()
        self._pump = HTTPPump(urls, limits=self.concurrency, path=path, token=token,
                              policy=policy or RetryPolicy(), stats=self.stats)

    def _run(self, requests: Iterable[Request], build, parse, params: GenerationParams) -> Iterator[Result]:
        """The pump over `requests`; answers too large for `params.max_new_tokens` are malformed."""
        self.stats.reset()
        n = params.max_new_tokens
        longest = n * MAX_CHARS_PER_TOKEN + max((len(s) for s in params.stop), default=0)

        def checked(req: Request, data, headers) -> Result:
            result = parse(req, data, headers)
            if len(result.text) > longest:
                raise ValueError(f"{len(result.text)} characters of text for at most {n} new tokens")
            if result.generated_tokens is not None and not 0 <= result.generated_tokens <= n:
                raise ValueError(f"{result.generated_tokens} tokens generated for at most {n} new tokens")
            return result

        return self._pump.run(requests, build, checked, max_bytes=ANSWER_BASE_BYTES + ANSWER_BYTES_PER_TOKEN * n)

    @property
    def retries(self) -> int:
        return self.stats.retries

    def close(self) -> None:
        """Nothing held between generate() calls: each opens and closes its own connections."""

    def __repr__(self) -> str:  # never the token: it lives only in the pump's request headers
        return f"{type(self).__name__}({self.info.extra['endpoints']}, model={self.info.model_id!r})"
