"""Local backend: a transformers model in this process, GPU (bf16) when present, else CPU.

Prompts are taken from the run engine in windows, sorted by length inside
each window and cut into batches, so that a batch pads little. Padding is on
the left, so every row of a batch ends at the same position and greedy output
is the same batched or alone. Sampling uses one torch.Generator per row seeded
with the row's own seed: a row draws the same random numbers whichever batch
it lands in, so a resumed or re-ordered run regenerates the same text.

Bounds, so that one bad row cannot hang or crash a run:

- A prompt that does not fit (its tokens plus max_new_tokens over the model's
  context, `max_position_embeddings`, or its tokens over `max_prompt_tokens`)
  is recorded as a failed row with that reason and never reaches the model, as
  a TGI server answers such a prompt with 422.
- A batch holds at most `batch_size` rows and at most `batch_tokens` padded
  positions (rows x (longest prompt + max_new_tokens)): long prompts go in
  smaller batches rather than one giant allocation.
- A batch that runs out of memory is split in halves and retried; a row that
  runs out of memory alone is recorded as failed, and the run goes on.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Iterable, Iterator

from . import GenerationParams, ModelInfo, Request, Result
from ..errors import first_line

# Above this size a local folder's revision hashes names, sizes and the first
# and last 8 MiB of each file, not every byte (an 8B model is 16 GB).
FULL_HASH_LIMIT = 2 << 30


def folder_revision(path: Path) -> str:
    """A content hash of a local model folder: its stand-in for a Hub commit sha."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts)
    total = sum(p.stat().st_size for p in files)
    quick = total > FULL_HASH_LIMIT
    h = hashlib.sha256()
    for p in files:
        size = p.stat().st_size
        h.update(f"{p.relative_to(path).as_posix()}\0{size}\0".encode())
        with open(p, "rb") as f:
            if quick and size > 16 << 20:
                h.update(f.read(8 << 20))
                f.seek(-(8 << 20), 2)
                h.update(f.read())
            else:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return ("quick-sha256:" if quick else "sha256:") + h.hexdigest()


class LocalBackend:
    """Generate with a transformers causal LM. See the module docstring."""

    def __init__(
        self,
        model: str,
        *,
        batch_size: int = 16,
        revision: str | None = None,
        device: str | None = None,
        ignore_eos: bool = False,
        window: int = 8,
        max_prompt_tokens: int | None = None,
        batch_tokens: int | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1 (got {batch_size})")
        if max_prompt_tokens is not None and max_prompt_tokens < 1:
            raise ValueError(f"--max-prompt-tokens must be at least 1 (got {max_prompt_tokens})")
        path = Path(model).expanduser()
        if path.exists():
            if not path.is_dir():
                raise ValueError(f"--model {model} is a file; give a model folder (with config.json) or a Hub id")
            if not (path / "config.json").is_file():
                raise ValueError(f"{model} is not a model folder (no config.json); build one with `sdft-data tiny-model DIR`")
            model_id, rev = path.name, folder_revision(path)
            model = str(path)
        elif looks_like_path(model):
            raise ValueError(f"model folder {model} does not exist (a Hub model id is ORG/NAME)")
        else:
            model_id, rev = model, revision
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision, padding_side="left")
        except Exception as e:
            if path.exists():
                raise ValueError(f"cannot load a tokenizer from the folder {model}: {first_line(e)[:300]}") from None
            raise ValueError(f"cannot load model {model}: there is no folder of that name here, and as a Hub id: "
                             f"{first_line(e)[:300]}") from None
        try:
            self.model = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=dtype)
        except Exception as e:
            raise ValueError(f"cannot load model {model}: {first_line(e)[:300]}") from None
        self.model.to(self.device).eval()
        config = self.model.config
        # The positions the model was built for; None when the config does not say.
        self.context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        self.max_prompt_tokens = max_prompt_tokens
        self.batch_tokens = batch_tokens or batch_size * 2048
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if rev is None:
            rev = getattr(self.model.config, "_commit_hash", None)
        self.info = ModelInfo(
            backend="local",
            model_id=model_id,
            revision=rev,
            extra={"device": self.device, "dtype": str(dtype).removeprefix("torch."), "context": self.context,
                   "max_prompt_tokens": max_prompt_tokens},
        )
        self.batch_size = batch_size
        self.window = window
        self.ignore_eos = ignore_eos
        self.cache_implementation: str | None = "static"
        self.retries = 0

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

    def generate(self, requests: Iterable[Request], params: GenerationParams) -> Iterator[Result]:
        limit, why = self.prompt_limit(params)
        it = iter(requests)
        while True:
            chunk = list(itertools.islice(it, self.batch_size * self.window))
            if not chunk:
                return
            encoded = [self.tokenizer(r.prompt, add_special_tokens=False)["input_ids"] for r in chunk]
            keep = []
            for i, ids in enumerate(encoded):
                if limit is not None and len(ids) > limit:
                    yield Result(chunk[i].row_id, None, status="failed", prompt_tokens=len(ids), attempts=0,
                                 error=f"prompt too long: {len(ids)} tokens, more than {limit} ({why})")
                else:
                    keep.append(i)
            order = sorted(keep, key=lambda i: len(encoded[i]), reverse=True)
            start = 0
            while start < len(order):
                # Longest first: the first row sets the width, and so how many rows fit the token budget.
                width = len(encoded[order[start]]) + params.max_new_tokens
                n = max(1, min(self.batch_size, self.batch_tokens // max(width, 1)))
                idx = order[start : start + n]
                start += n
                yield from self._safe_batch([chunk[i] for i in idx], [encoded[i] for i in idx], params)

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
        # A static (preallocated) KV cache: the default dynamic cache concatenates
        # every layer's keys and values at every step, which at batch 64 on a CPU
        # costs more than the model itself (measured: 101 ms vs 25 ms a step).
        kwargs = dict(max_new_tokens=params.max_new_tokens, pad_token_id=pad, do_sample=False)
        if self.cache_implementation:
            kwargs["cache_implementation"] = self.cache_implementation
        if self.ignore_eos:
            kwargs["min_new_tokens"] = params.max_new_tokens
        if params.do_sample:
            kwargs["logits_processor"] = [_SeededSampler([r.seed for r in reqs], params, self.device)]
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            try:
                out = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
            except (ValueError, NotImplementedError):
                if "cache_implementation" not in kwargs:
                    raise
                # Some architectures have no static cache: use the default one from now on.
                kwargs.pop("cache_implementation")
                self.cache_implementation = None
                out = self.model.generate(input_ids=input_ids, attention_mask=attention, **kwargs)
        eos_ids = _eos_ids(self.model.generation_config, self.tokenizer)
        results = []
        for r, prompt_ids, row in zip(reqs, ids, out[:, width:].tolist()):
            results.append(self._result(r, len(prompt_ids), row, eos_ids, params))
        return results

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


def looks_like_path(model: str) -> bool:
    """A --model that can only be a folder on this machine, never a Hub id (ORG/NAME or NAME)."""
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


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


def _eos_ids(generation_config, tokenizer) -> set[int]:
    eos = generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class _SeededSampler:
    """A logits processor that samples each row with its own generator.

    generate() runs greedy; this processor does the sampling (temperature,
    then top-k, then top-p: transformers' own order) and leaves only the
    chosen token finite, so greedy picks it. One
    generator per row makes each row's draws independent of its batch.
    """

    def __init__(self, seeds: list[int], params: GenerationParams, device: str):
        import torch

        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.temperature = params.temperature
        self.top_p = params.top_p
        self.top_k = params.top_k

    def __call__(self, input_ids, scores):
        import torch

        logits = scores.float() / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.top_k, dim=-1).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, sorted_idx = torch.sort(logits, descending=True, dim=-1)
            cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            # Drop tokens once the mass before them already reaches top_p (keep at least one).
            drop = (cumulative - sorted_logits.softmax(dim=-1)) >= self.top_p
            drop[..., 0] = False
            logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, sorted_idx, drop), float("-inf"))
        probs = logits.softmax(dim=-1)
        chosen = torch.stack(
            [torch.multinomial(probs[i], 1, generator=g) for i, g in enumerate(self.generators)]
        )
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(-1, chosen, 0.0)
