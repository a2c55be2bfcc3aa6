"""Local backend: a transformers model in this process, GPU (bf16) when present, else CPU.

Prompts are taken from the run engine in windows and sorted by length inside
each window. They run through our own decode loop (continuous batching): each
row is prefilled alone into a free slot of a preallocated KV cache and joins
the running batch, which decodes one token per live row per step, every row at
its own positions under its own mask; a row that finishes hands its slot to
the next at once, instead of idling until the batch's longest row ends, as it
does in model.generate. Models the loop cannot drive (sliding-window or
non-attention layers, other attention kernels) go through model.generate in
fixed batches, padded on the left. Either way greedy output is the same batched
or alone. Sampling draws each row's uniforms from the row's own seed, one per
new token: a row draws the same numbers whichever batch, slot or step it lands
in, so a resumed or re-ordered run regenerates the same text (on either path).

Bounds, so that one bad row cannot hang or crash a run:

- A prompt that does not fit (its tokens plus max_new_tokens over the model's
  context, `max_position_embeddings`, or its tokens over `max_prompt_tokens`)
  is recorded as a failed row with that reason and never reaches the model, as
  a TGI server answers such a prompt with 422.
- A batch holds at most `batch_size` rows and at most `batch_tokens` cache
  positions (rows x (longest prompt + max_new_tokens)): long prompts go in
  smaller batches rather than one giant allocation.
- A batch that runs out of memory is split in halves and retried (the decode
  loop halves its rows and starts them over: same text); a row that runs out
  of memory alone is recorded as failed, and the run goes on.

What a real chat model brings along is handled here, not left to chance:
`--model` (a Hub id, a folder or a .gguf file) is loaded and identified by
sdft_data.models; an answer ends at the model's EOS or its chat template's
end-of-turn token (<|im_end|>, <|eot_id|>), which decoding then drops; a
tokenizer without a pad token pads with its EOS (on the left, masked); and the
model's generation_config.json (temperature, top_p, repetition_penalty,
max_length...) never fills in what the run did not set: every batch gets a
whole explicit generation config, and what the model's file set is recorded in
the manifest as ignored (`info.extra["generation_config"]`).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from . import GenerationParams, ModelInfo, Request, Result
# Where a --model value loads from and what identifies it (kept importable from here for older callers).
from ..models import FULL_HASH_LIMIT, folder_revision, looks_like_path  # noqa: F401


class LocalBackend:
    """Generate with a transformers causal LM. See the module docstring."""

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 16,
        revision: str | None = None,
        model_id: str | None = None,
        device: str | None = None,
        ignore_eos: bool = False,
        window: int = 8,
        max_prompt_tokens: int | None = None,
        batch_tokens: int | None = None,
    ):
        import torch

        from ..models import (load_causal_lm, load_tokenizer, model_decoding_defaults, neutral_generation_config,
                              resolve_model, stop_token_ids)

        if batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1 (got {batch_size})")
        if max_prompt_tokens is not None and max_prompt_tokens < 1:
            raise ValueError(f"--max-prompt-tokens must be at least 1 (got {max_prompt_tokens})")
        resolved = resolve_model(model, revision=revision, model_id=model_id)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        self.tokenizer = load_tokenizer(resolved, padding_side="left")
        self.model = load_causal_lm(resolved, dtype=dtype)
        self.model.to(self.device).eval()
        config = self.model.config
        # The positions the model was built for; None when the config does not say.
        self.context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        self.max_prompt_tokens = max_prompt_tokens
        self.batch_tokens = batch_tokens or batch_size * 2048
        if self.tokenizer.pad_token_id is None:
            if self.tokenizer.eos_token is None:
                raise ValueError(f"the tokenizer of {model} has neither a pad nor an EOS token: batched generation "
                                 "cannot pad")
            self.tokenizer.pad_token = self.tokenizer.eos_token  # left padding, masked: never seen
        # An answer ends at any of these: the model's EOS ids, the tokenizer's, the chat template's end of turn.
        self.stop_ids = stop_token_ids(self.model.generation_config, self.tokenizer)
        # The model's generation_config.json (temperature, top_p, repetition_penalty, max_length...) must not
        # fill in what a run did not ask for: generate() merges it into any config it is given, so it is
        # replaced by one holding token ids only, and what it set is recorded as ignored.
        ignored = model_decoding_defaults(self.model.generation_config)
        self.model.generation_config = neutral_generation_config(
            bos_token_id=self.tokenizer.bos_token_id, eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id)
        # A Hub model's revision is the commit it resolved to; a local one's, its content hash.
        rev = (getattr(config, "_commit_hash", None) or revision) if resolved.kind == "hub" else resolved.revision
        source = resolved.describe()
        source["revision"] = rev
        self.info = ModelInfo(
            backend="local",
            model_id=resolved.model_id,
            revision=rev,
            extra={"device": self.device, "dtype": str(dtype).removeprefix("torch."), "context": self.context,
                   "max_prompt_tokens": max_prompt_tokens, "source": source,
                   "generation_config": {
                       "passed": "explicit: the run's parameters, greedy or per-row seeded sampling",
                       "stop_tokens": self.tokenizer.convert_ids_to_tokens(self.stop_ids),
                       "stop_token_ids": self.stop_ids,
                       "pad_token_id": self.tokenizer.pad_token_id,
                       "model_defaults_ignored": ignored,
                   }},
        )
        self.batch_size = batch_size
        self.window = window
        self.ignore_eos = ignore_eos
        self.cache_implementation: str | None = "static"
        self.retries = 0

    def generation_config(self, params: GenerationParams):
        """The whole generation config of a batch: the run's parameters and nothing from the model's own file.

        Sampling is done by _SeededSampler on top of greedy decoding, so the config itself is always greedy.
        """
        from transformers import GenerationConfig

        return GenerationConfig(
            max_new_tokens=params.max_new_tokens,
            min_new_tokens=params.max_new_tokens if self.ignore_eos else None,
            do_sample=False,
            num_beams=1,
            bos_token_id=self.tokenizer.bos_token_id,
            eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            stop_strings=list(params.stop) or None,
            cache_implementation=self.cache_implementation,
        )

    def prompt_limit(self, params: GenerationParams) -> tuple[int | None, str]:
        """The most prompt tokens a row may have, and why (for the failed row's error)."""
        limit, why = None, ""
        if self.context:
            if params.max_new_tokens >= self.context:
                raise ValueError(
                    f"--max-new-tokens {params.max_new_tokens} does not fit the model's context of {self.context} "
                    "tokens (prompt and generation together); lower it"
                )
            limit = self.context - params.max_new_tokens
            why = f"the model's context of {self.context} tokens less --max-new-tokens {params.max_new_tokens}"
        if self.max_prompt_tokens is not None and (limit is None or self.max_prompt_tokens < limit):
            limit, why = self.max_prompt_tokens, f"--max-prompt-tokens {self.max_prompt_tokens}"
        return limit, why

    def check_params(self, params: GenerationParams) -> None:
        """ValueError (one line) when `params` cannot work with this model, before any row is generated."""
        self.prompt_limit(params)

    # Optional for a backend: the run engine sets it to a callable taking a number of
    # tokens, and generation calls it as tokens come, so progress moves inside a batch.
    on_tokens = None
    # Whether rows go through our own decode loop (_continuous) or through
    # model.generate in fixed batches (_static); None until the first generate.
    continuous: bool | None = None

    def generate(self, requests: Iterable[Request], params: GenerationParams) -> Iterator[Result]:
        limit, why = self.prompt_limit(params)
        windows = self._windows(requests, limit, why)
        if self.continuous is None:
            self.continuous = _loop_fits(self.model) and self._loop_works()
        if self.continuous:
            yield from self._continuous(windows, params)
        else:
            for failed, rows in windows:
                yield from failed
                yield from self._static(rows, params)

    def _windows(self, requests: Iterable[Request], limit: int | None, why: str):
        """The requests a window at a time, tokenized: (results of the prompts too long, rows longest first)."""
        it = iter(requests)
        while chunk := list(itertools.islice(it, self.batch_size * self.window)):
            encoded = self.tokenizer([r.prompt for r in chunk], add_special_tokens=False)["input_ids"]
            failed, rows = [], []
            for request, ids in zip(chunk, encoded):
                if limit is not None and len(ids) > limit:
                    failed.append(Result(request.row_id, None, status="failed", prompt_tokens=len(ids), attempts=0,
                                         error=f"prompt too long: {len(ids)} tokens, more than {limit} ({why})"))
                else:
                    rows.append(_Row(request, ids))
            # Longest first: rows of a like length run together (little padding, or attention over
            # little more than each row's own context), and the first sets the width of the cache.
            rows.sort(key=lambda r: len(r.ids), reverse=True)
            yield failed, rows

    def _fits(self, slots: int, width: int) -> int:
        """How many rows of `width` positions (prompt + new tokens) may run together: batch size and token budget."""
        return max(1, min(slots, self.batch_tokens // max(width, 1)))

    # ------------------------------------------------------------------ continuous batching

    def _continuous(self, windows, params: GenerationParams) -> Iterator[Result]:
        """Generate with our own decode loop: a row that finishes hands its slot to the next one at once.

        model.generate runs a batch until its longest row ends, so rows that end early
        idle in it (on GSM8K rewrites, half the batch's steps). Here each row is prefilled
        alone (no padding) into a free slot of a preallocated KV cache and joins the
        running batch, which decodes one token for every live row per step, each at its
        own position with its own attention mask. Greedy text is the same as alone; a
        sampled row draws its uniforms from its own seed, whichever slot or step it runs in.
        """
        from collections import deque

        eos = set(self.stop_ids)
        pending: deque[_Row] = deque()
        live: list[_Row] = []  # live[i] is in the cache's slot i
        cache = None
        slots = self.batch_size  # halved when the batch runs out of memory
        more = True
        while True:
            row = None
            try:
                # Refill: admit waiting rows while the batch size and token budget allow.
                while True:
                    if not pending and more:
                        window = next(windows, None)
                        if window is None:
                            more = False
                        else:
                            yield from window[0]
                            pending.extend(window[1])
                        continue
                    if not pending:
                        break
                    width = max(r.width(params) for r in live + [pending[0]])
                    fits = self._fits(slots, width)
                    if len(live) >= fits:
                        break
                    # A new cache when this row needs more positions, or when narrower rows let more in.
                    if cache is None or width > cache.width or fits > cache.slots:
                        cache = _resize(cache, fits, width, live)
                    row = pending.popleft()
                    if params.do_sample and row.draws is None:
                        row.draws = _draws(row.request.seed, params.max_new_tokens)
                    logits = self._prefill(cache, row, len(live))
                    self._count(1)
                    live.append(row)
                    row = None
                    done = self._advance(live[-1:], logits, params, eos)
                    if done:
                        live.pop()
                        yield self._finish(done[0], eos, params)
                if not live:
                    return
                logits = self._step(cache, live)
                self._count(len(live))
                done = self._advance(live, logits, params, eos)
            except (MemoryError, RuntimeError) as e:
                if not _is_out_of_memory(e):
                    raise
                cache = None
                _free_memory()
                involved = live + ([row] if row is not None else [])
                if not involved:  # making the cache for the next row alone did not fit
                    involved = [pending.popleft()]
                live = []
                if len(involved) == 1:
                    slots = self.batch_size
                    yield Result(involved[0].request.row_id, None, status="failed",
                                 prompt_tokens=len(involved[0].ids),
                                 error=f"out of memory generating this row ({len(involved[0].ids)} prompt tokens + "
                                       f"{params.max_new_tokens} new); lower --max-new-tokens or --max-prompt-tokens")
                else:
                    # Fewer rows at once; the rows start over (same tokens: greedy, or the same draws).
                    self.retries += 1
                    slots = max(1, len(involved) // 2)
                    for r in reversed(involved):
                        r.tokens.clear()
                        pending.appendleft(r)
                continue
            if done:
                # Keep the live rows in slots 0..n-1: the last ones move into the slots freed.
                n = len(live) - len(done)
                holes = [i for i in range(n) if live[i] in done]
                movers = [i for i in range(n, len(live)) if live[i] not in done]
                for hole, mover in zip(holes, movers):
                    cache.move(mover, hole, live[mover].context())
                    live[hole] = live[mover]
                del live[n:]
                for r in done:
                    yield self._finish(r, eos, params)

    def _loop_works(self) -> bool:
        """Whether the decode loop gives the model's own logits: two rows of other lengths through
        it against plain forwards (a model that ignores the positions or masks given would fail)."""
        import torch

        rows = [_Row(Request(-1, "", 0), [1, 2]), _Row(Request(-2, "", 0), [3, 4, 5])]
        try:
            cache = _resize(None, len(rows), 4, [])
            for slot, row in enumerate(rows):
                self._prefill(cache, row, slot)
                row.tokens.append(6)
            got = self._step(cache, rows).float()
            with torch.inference_mode():
                want = torch.cat([self.model(input_ids=torch.tensor([r.ids + r.tokens], device=self.device)).logits[:, -1]
                                  for r in rows]).float()
        except (TypeError, ValueError, AttributeError, IndexError, KeyError, NotImplementedError):
            return False
        # Loose enough for bf16 kernels that differ; a wrong position or mask is far off.
        return torch.allclose(got, want, rtol=0.05, atol=0.05 * float(want.abs().max()))

    def _prefill(self, cache, row: "_Row", slot: int):
        """Run the row's prompt alone into `slot`: the logits of its first new token."""
        import torch

        ids = torch.tensor([row.ids], device=self.device)
        cache.prefill(slot, len(row.ids))
        with torch.inference_mode():
            # No mask: the model's own causal one, exactly as for one prompt through generate.
            name, last = _forward_args(self.model)
            out = self.model(input_ids=ids, position_ids=torch.arange(len(row.ids), device=self.device)[None],
                             use_cache=True, **{name: cache}, **last)
        return out.logits[:, -1]

    def _step(self, cache, live: list["_Row"]):
        """One decode step for every live row: the logits of each row's next token."""
        import torch

        context = [r.context() for r in live]
        positions = torch.tensor(context, device=self.device)
        length = max(context) + 1
        dtype = self.model.dtype
        # Row i sees its own positions 0..positions[i] (prompt, tokens so far, this token) and none beyond.
        beyond = torch.arange(length, device=self.device)[None, :] > positions[:, None]
        mask = torch.zeros(len(live), 1, 1, length, dtype=dtype, device=self.device)
        mask.masked_fill_(beyond[:, None, None, :], torch.finfo(dtype).min)
        ids = torch.tensor([[r.tokens[-1]] for r in live], device=self.device)
        cache.decode(positions, length)
        with torch.inference_mode():
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions[:, None], use_cache=True,
                             **{_forward_args(self.model)[0]: cache})
        return out.logits[:, -1]

    def _advance(self, rows: list["_Row"], logits, params: GenerationParams, eos: set[int]) -> list["_Row"]:
        """Append each row's next token; return the rows that are now finished."""
        import torch

        draws = None
        if params.do_sample:
            draws = torch.tensor([r.draws[len(r.tokens)] for r in rows], dtype=torch.float32, device=logits.device)
        with torch.inference_mode():
            logits = logits.float()
            if self.ignore_eos and eos:
                logits[:, sorted(eos)] = float("-inf")
            chosen = _choose(logits, params, draws).tolist()
        done = []
        for r, token in zip(rows, chosen):
            r.tokens.append(token)
            if (token in eos and not self.ignore_eos) or len(r.tokens) >= params.max_new_tokens or self._stopped(r, params):
                done.append(r)
        return done

    def _stopped(self, row: "_Row", params: GenerationParams) -> bool:
        """Whether the row's text now holds a stop string (checked on its last few tokens)."""
        if not params.stop:
            return False
        # A character is at most 4 byte-level tokens: this tail holds any stop string that just ended.
        tail = self.tokenizer.decode(row.tokens[-(4 * max(map(len, params.stop)) + 2):], skip_special_tokens=True)
        return any(s in tail for s in params.stop)

    def _finish(self, row: "_Row", eos: set[int], params: GenerationParams) -> Result:
        return self._result(row.request, len(row.ids), row.tokens, eos, params)

    def _count(self, tokens: int) -> None:
        if self.on_tokens is not None:
            self.on_tokens(tokens)

    # ------------------------------------------------------------------ fixed batches through generate

    def _static(self, rows: list["_Row"], params: GenerationParams) -> Iterator[Result]:
        """Rows (longest first) in batches through model.generate, for models our decode loop does not drive."""
        start = 0
        while start < len(rows):
            # The first row is the longest: it sets the width, and so how many rows fit the token budget.
            n = self._fits(self.batch_size, rows[start].width(params))
            batch = rows[start : start + n]
            start += n
            yield from self._safe_batch([r.request for r in batch], [r.ids for r in batch], params)

    def _safe_batch(self, reqs: list[Request], ids: list[list[int]], params: GenerationParams) -> list[Result]:
        """_batch, split in halves on running out of memory; a single row that does not fit fails alone."""
        try:
            return self._batch(reqs, ids, params)
        except (MemoryError, RuntimeError) as e:
            if not _is_out_of_memory(e):
                raise
            _free_memory()
        if len(reqs) > 1:
            half = len(reqs) // 2
            return self._safe_batch(reqs[:half], ids[:half], params) + self._safe_batch(reqs[half:], ids[half:], params)
        return [Result(reqs[0].row_id, None, status="failed", prompt_tokens=len(ids[0]),
                       error=f"out of memory generating this row ({len(ids[0])} prompt tokens + "
                             f"{params.max_new_tokens} new); lower --max-new-tokens or --max-prompt-tokens")]

    def _batch(self, reqs: list[Request], ids: list[list[int]], params: GenerationParams) -> list[Result]:
        import torch

        pad = self.tokenizer.pad_token_id
        width = max(len(x) for x in ids)
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids], device=self.device)
        attention = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids], device=self.device)
        kwargs = self._generate_kwargs(reqs, params)
        with torch.inference_mode():
            try:
                out = self.model.generate(input_ids=input_ids, attention_mask=attention,
                                          generation_config=self.generation_config(params), **kwargs)
            except (ValueError, NotImplementedError):
                if self.cache_implementation is None:
                    raise
                # Some architectures have no static cache: use the default one from now on.
                self.cache_implementation = None
                out = self.model.generate(input_ids=input_ids, attention_mask=attention,
                                          generation_config=self.generation_config(params), **kwargs)
        eos_ids = set(self.stop_ids)
        results = []
        for r, prompt_ids, row in zip(reqs, ids, out[:, width:].tolist()):
            results.append(self._result(r, len(prompt_ids), row, eos_ids, params))
        return results

    def _generate_kwargs(self, reqs: list[Request], params: GenerationParams) -> dict:
        """What model.generate is called with for a batch of `reqs`, besides the inputs and the generation config
        (see generation_config: explicit and whole, nothing from the model's own file)."""
        kwargs = {}
        if params.do_sample:
            kwargs["logits_processor"] = [_SeededSampler([r.seed for r in reqs], params, self.device)]
        if params.stop:
            kwargs["tokenizer"] = self.tokenizer  # generate matches stop strings through it
        if self.on_tokens is not None:
            kwargs["streamer"] = _TokenCounter(self.on_tokens)
        return kwargs

    def _result(self, req: Request, n_prompt: int, row: list[int], eos_ids: set[int], params) -> Result:
        finish = "length"
        pad = self.tokenizer.pad_token_id
        for i, tok in enumerate(row):
            if tok in eos_ids and not self.ignore_eos:
                row, finish = row[: i + 1], "eos_token"  # TGI counts the EOS token as generated
                break
            if tok == pad:  # the row stopped (on a stop string) while others went on
                row = row[:i]
                break
        text = self.tokenizer.decode(row, skip_special_tokens=True)
        for stop in params.stop:
            cut = text.find(stop)
            if cut >= 0:
                text, finish = text[: cut + len(stop)], "stop_sequence"
        return Result(
            row_id=req.row_id,
            text=text,
            finish_reason=finish,
            prompt_tokens=n_prompt,
            generated_tokens=len(row),
        )

    def close(self) -> None:
        self.model = None

    # --- Scoring: token log-probabilities of given texts (sdft_data.gap, the drift task), apart from
    # generation: nothing above calls it, and it calls nothing above.

    def score(self, sequences: list[tuple[list[int], int]], *, other: "LocalBackend | None" = None) -> list[dict]:
        """Log-probabilities of each (token ids, start) sequence's tokens from `start` on under this model;
        with `other` (a second LocalBackend on the same vocabulary), its log-probabilities and the KL
        divergence from this model's distribution to its at each position (sdft_data.gap.token_scores).
        Batched like generation: `batch_size` rows and `batch_tokens` padded positions at most."""
        from ..gap import token_scores

        if self.model is None:
            raise ValueError("this backend is closed")
        return token_scores(self.model, sequences, other=other.model if other is not None else None,
                            batch_size=self.batch_size, batch_tokens=self.batch_tokens, device=self.device)


def _is_out_of_memory(e: BaseException) -> bool:
    import torch

    if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(e).lower()
    return "out of memory" in text or "can't allocate memory" in text or "failed to allocate" in text


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(eq=False)
class _Row:
    """One request on its way through the decode loop."""

    request: Request
    ids: list[int]  # the prompt's tokens
    tokens: list[int] = field(default_factory=list)  # generated so far
    draws: list[float] | None = None  # sampling: the row's uniforms, one per new token

    def width(self, params: GenerationParams) -> int:
        """The cache positions the row may need: its prompt and every new token."""
        return len(self.ids) + params.max_new_tokens

    def context(self) -> int:
        """Positions in the cache so far, which is also the position of the next input token."""
        return len(self.ids) + len(self.tokens) - 1


def _loop_fits(model) -> bool:
    """Whether our decode loop can drive `model`.

    It passes its own positions and attention masks and its own cache, so it
    takes a decoder-only model whose every layer attends to the whole context
    (a sliding-window layer would need its own mask) through sdpa or eager
    attention. Anything else goes through model.generate in fixed batches.
    """
    import transformers

    config = model.config
    if int(transformers.__version__.split(".")[0]) < 5 or getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    types = getattr(config, "layer_types", None)
    if types:
        return all(t == "full_attention" for t in types)
    return getattr(config, "sliding_window", None) is None or getattr(config, "use_sliding_window", None) is False


_FORWARD_ARGS: dict[type, tuple[str, dict]] = {}


def _forward_args(model) -> tuple[str, dict]:
    """The name of the forward's cache argument (`cache`, earlier `past_key_values`) and the kwargs for last-position logits only."""
    import inspect

    kind = type(model)
    if kind not in _FORWARD_ARGS:
        names = inspect.signature(model.forward).parameters
        last = {"logits_to_keep": 1} if "logits_to_keep" in names else {}
        _FORWARD_ARGS[kind] = ("cache" if "cache" in names else "past_key_values", last)
    return _FORWARD_ARGS[kind]


@functools.cache
def _slot_cache_class():
    from transformers import DynamicCache

    class SlotCache(DynamicCache):
        """The decode loop's KV cache: per layer, keys and values of shape [slots, kv heads, width, head dim].

        Row i of the running batch lives in slot i from position 0. Before each
        forward the loop says what it writes: a prompt into one slot (prefill), or
        one token for each live row at that row's own position (decode). update()
        writes there and returns views of only the positions attended to. The model
        gets positions and masks from the loop, so update() and get_seq_length() are
        all of the cache interface it uses.
        """

        def __init__(self, slots: int, width: int):
            super().__init__()
            self.slots, self.width = slots, width
            self.kv: list = []  # per layer: (keys, values), made at the layer's first update
            self._write: tuple = (0, 0)
            self._seen = 0

        def prefill(self, slot: int, length: int) -> None:
            self._write, self._seen = (slot, length), 0

        def decode(self, positions, length: int) -> None:
            import torch

            rows = torch.arange(len(positions), device=positions.device)
            self._write, self._seen = (rows, positions, length), length - 1

        def update(self, key_states, value_states, layer_idx, *args, **kwargs):
            if layer_idx == len(self.kv):
                k, v = key_states.shape, value_states.shape
                self.kv.append((key_states.new_zeros(self.slots, k[1], self.width, k[3]),
                                value_states.new_zeros(self.slots, v[1], self.width, v[3])))
            keys, values = self.kv[layer_idx]
            if len(self._write) == 2:  # a prompt into one slot
                slot, length = self._write
                keys[slot, :, :length] = key_states[0]
                values[slot, :, :length] = value_states[0]
                return keys[slot : slot + 1, :, :length], values[slot : slot + 1, :, :length]
            rows, positions, length = self._write  # one token per live row, each at its own position
            keys[rows, :, positions] = key_states[:, :, 0]
            values[rows, :, positions] = value_states[:, :, 0]
            return keys[: len(rows), :, :length], values[: len(rows), :, :length]

        def get_seq_length(self, layer_idx: int = 0) -> int:
            return self._seen

        def move(self, src: int, dst: int, length: int) -> None:
            """Copy the first `length` positions of slot `src` into slot `dst`."""
            import torch

            with torch.inference_mode():  # the buffers were made inside the forward
                for keys, values in self.kv:
                    keys[dst, :, :length] = keys[src, :, :length]
                    values[dst, :, :length] = values[src, :, :length]

    return SlotCache


def _resize(cache, slots: int, width: int, live: list[_Row]):
    """A cache of `slots` x `width` holding the live rows of `cache` (None: an empty one)."""
    import torch

    new = _slot_cache_class()(slots, width)
    if cache is not None and live:
        n = len(live)
        with torch.inference_mode():
            for keys, values in cache.kv:
                pair = []
                for old in (keys, values):
                    grown = old.new_zeros(slots, old.shape[1], width, old.shape[3])
                    kept = min(width, old.shape[2])  # the live rows' positions all fit in `width`
                    grown[:n, :, :kept] = old[:n, :, :kept]
                    pair.append(grown)
                new.kv.append(tuple(pair))
    return new


def _draws(seed: int, n: int) -> list[float]:
    """A row's `n` uniforms in [0, 1), one per new token, from its own seed: the same in any batch, on any device."""
    import torch

    return torch.rand(n, generator=torch.Generator().manual_seed(int(seed))).tolist()


# The nucleus (top-p) is looked for among this many most likely tokens first; a row
# whose nucleus reaches past them (a flat distribution) sorts its whole vocabulary.
NUCLEUS_CANDIDATES = 64


def _choose(logits, params: GenerationParams, draws):
    """Each row's next token: the argmax (greedy), or sampled with the row's own draw in [0, 1).

    Sampling is transformers' order: temperature, then top-k, then top-p (the
    smallest set of most likely tokens whose mass before the last reaches
    top_p), then the inverse of the set's cumulative distribution at the row's
    draw. Every step is row by row, so a row's token does not depend on its batch.
    """
    import torch

    if not params.do_sample:
        return logits.argmax(-1)
    x = logits.float() / params.temperature
    vocab = x.shape[-1]
    k = params.top_k if 0 < params.top_k < vocab else 0
    if not k and params.top_p >= 1:
        return _draw(x.softmax(-1), None, draws)
    vals, idx = x.topk(k or min(NUCLEUS_CANDIDATES, vocab), dim=-1)  # sorted, most likely first
    # Top-k renormalises over the k tokens; without it, the mass is of the whole vocabulary.
    total = vals.logsumexp(-1, keepdim=True) if k else x.logsumexp(-1, keepdim=True)
    probs, short = _nucleus((vals - total).exp(), params.top_p)
    chosen = _draw(probs, idx, draws)
    if not k and short.any():
        rows = short.nonzero()[:, 0]
        vals, idx = x[rows].sort(-1, descending=True)
        chosen[rows] = _draw(_nucleus((vals - total[rows]).exp(), params.top_p)[0], idx, draws[rows])
    return chosen


def _nucleus(probs, top_p: float):
    """`probs` (sorted, most likely first) with the tokens past the top-p nucleus zeroed, and which
    rows' nucleus may go on past the last token given."""
    import torch

    if top_p >= 1:
        return probs, torch.zeros(probs.shape[0], dtype=torch.bool, device=probs.device)
    before = probs.cumsum(-1) - probs
    keep = before < top_p
    keep[:, 0] = True
    short = before[:, -1] + probs[:, -1] < top_p
    return probs * keep, short


def _draw(weights, idx, draws):
    """The token at each row's draw (in [0, 1)) along the cumulative `weights`; `idx` maps back to token ids."""
    import torch

    cdf = weights.cumsum(-1)
    pick = torch.searchsorted(cdf, draws[:, None] * cdf[:, -1:], right=True)
    # Rounding can put a draw at the very top: take the last token with any weight.
    pick = torch.minimum(pick, (weights > 0).cumsum(-1).argmax(-1, keepdim=True))
    return (pick if idx is None else idx.gather(-1, pick))[:, 0]


class _TokenCounter:
    """A generate() streamer that only counts: its first put() is the prompts, then one per step."""

    def __init__(self, on_tokens):
        self.on_tokens, self.prompt = on_tokens, True

    def put(self, value) -> None:
        if self.prompt:
            self.prompt = False
        else:
            self.on_tokens(int(value.shape[0]))

    def end(self) -> None:
        pass


class _SeededSampler:
    """A logits processor that samples each row with its own draws, for the model.generate path.

    generate() runs greedy; this processor picks each row's token with _choose
    (the decode loop's sampler, with the row's own draws) and leaves only that
    token finite, so greedy picks it. A row's text is the same on either path.
    """

    def __init__(self, seeds: list[int], params: GenerationParams, device: str):
        import torch

        self.draws = torch.tensor([_draws(s, params.max_new_tokens) for s in seeds], device=device)
        self.params = params
        self.step = 0

    def __call__(self, input_ids, scores):
        import torch

        chosen = _choose(scores, self.params, self.draws[:, self.step])
        self.step += 1
        return torch.full_like(scores, float("-inf")).scatter(-1, chosen[:, None], 0.0)
