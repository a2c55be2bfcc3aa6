"""Local backend: a transformers model in this process, GPU (bf16) when present, else CPU.

Prompts are taken from the run engine in windows, sorted by length inside
each window and cut into batches, so that a batch pads little. Padding is on
the left, so every row of a batch ends at the same position and greedy output
is the same batched or alone. Sampling uses one torch.Generator per row seeded
with the row's own seed: a row draws the same random numbers whichever batch
it lands in, so a resumed or re-ordered run regenerates the same text.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Iterable, Iterator

from . import GenerationParams, ModelInfo, Request, Result

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
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1 (got {batch_size})")
        path = Path(model)
        if path.exists():
            if not (path / "config.json").is_file():
                raise ValueError(f"{model} is not a model folder (no config.json); build one with `sdft-data tiny-model DIR`")
            model_id, rev = path.name, folder_revision(path)
        else:
            model_id, rev = model, revision
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision, padding_side="left")
            self.model = AutoModelForCausalLM.from_pretrained(model, revision=revision, dtype=dtype)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"cannot load model {model}: {first}") from None
        self.model.to(self.device).eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if rev is None:
            rev = getattr(self.model.config, "_commit_hash", None)
        self.info = ModelInfo(
            backend="local",
            model_id=model_id,
            revision=rev,
            extra={"device": self.device, "dtype": str(dtype).removeprefix("torch.")},
        )
        self.batch_size = batch_size
        self.window = window
        self.ignore_eos = ignore_eos
        self.cache_implementation: str | None = "static"
        self.retries = 0

    def generate(self, requests: Iterable[Request], params: GenerationParams) -> Iterator[Result]:
        it = iter(requests)
        while True:
            chunk = list(itertools.islice(it, self.batch_size * self.window))
            if not chunk:
                return
            encoded = [self.tokenizer(r.prompt, add_special_tokens=False)["input_ids"] for r in chunk]
            order = sorted(range(len(chunk)), key=lambda i: len(encoded[i]), reverse=True)
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                yield from self._batch([chunk[i] for i in idx], [encoded[i] for i in idx], params)

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


def _eos_ids(generation_config, tokenizer) -> set[int]:
    eos = generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids


class _SeededSampler:
    """A logits processor that samples each row with its own generator.

    generate() runs greedy; this processor does the sampling (temperature,
    top-p) and leaves only the chosen token finite, so greedy picks it. One
    generator per row makes each row's draws independent of its batch.
    """

    def __init__(self, seeds: list[int], params: GenerationParams, device: str):
        import torch

        self.generators = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]
        self.temperature = params.temperature
        self.top_p = params.top_p

    def __call__(self, input_ids, scores):
        import torch

        logits = scores.float() / self.temperature
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
