"""The local backend: batched output equals one-at-a-time output, seeds make sampling reproducible."""

import pytest

from sdft_data.backends import GenerationParams, Request
from sdft_data.backends.local import LocalBackend, folder_revision

PROMPTS = [
    "Tom has 3 apples.",
    "Write a long and winding story about a fox who jumps over the lazy dog, then another one.",
    "Hi",
    "Below is an instruction that describes a task.\n\n### Instruction:\nName a color.\n\n### Response:\n",
    "What is 12 * 5?",
]
GREEDY = GenerationParams(max_new_tokens=12, temperature=0)


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return LocalBackend(str(tiny_model_dir), batch_size=4)


def _on(backend, path, **changes):
    """The same loaded model, through the decode loop ("loop") or model.generate in fixed batches ("generate")."""
    other = LocalBackend.__new__(LocalBackend)
    other.__dict__.update(backend.__dict__, **{"continuous": path == "loop", **changes})
    return other


PATHS = ["loop", "generate"]


def _requests(prompts, seed_base=0):
    return [Request(row_id=i, prompt=p, seed=seed_base + i) for i, p in enumerate(prompts)]


def _one_at_a_time(backend, prompt, max_new_tokens, **kw):
    """The authors' way: one prompt through generate, no padding."""
    import torch

    ids = backend.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = backend.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=backend.tokenizer.pad_token_id, **kw)
    return backend.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def _texts(backend, requests, params):
    return {r.row_id: r.text for r in backend.generate(requests, params)}


def test_the_tiny_model_runs_through_the_decode_loop(tiny_model_dir):
    fresh = LocalBackend(str(tiny_model_dir))
    list(fresh.generate(_requests(PROMPTS[:1]), GREEDY))
    assert fresh.continuous is True


@pytest.mark.parametrize("path", PATHS)
def test_batched_greedy_equals_one_at_a_time(backend, path):
    results = {r.row_id: r for r in _on(backend, path).generate(_requests(PROMPTS), GREEDY)}
    assert sorted(results) == list(range(len(PROMPTS)))
    for i, prompt in enumerate(PROMPTS):
        assert results[i].text == _one_at_a_time(backend, prompt, 12), f"row {i} differs"
        assert results[i].status == "ok"
        assert results[i].prompt_tokens == len(backend.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert 1 <= results[i].generated_tokens <= 12
        assert results[i].finish_reason in ("length", "eos_token")


def _early_stop(backend, prompts, params):
    """A stop string that one row writes within its first few tokens and no other row writes at all."""
    texts = _texts(_on(backend, "generate"), _requests(prompts), params)
    for i, text in texts.items():
        others = [t for j, t in texts.items() if j != i]
        for k in range(3, 8):
            piece = text[1:k]
            if "\ufffd" not in piece and piece.strip() and not any(piece in t for t in others):
                return piece
    raise AssertionError("no stop string singles out one row")


def test_a_finished_rows_slot_is_refilled_mid_batch_and_texts_stay_those_of_one_at_a_time(backend, monkeypatch):
    # Batch size 2 with 5 rows, one of which stops within a few tokens: its slot takes the
    # next row while the other row is still mid-generation, at another position.
    params = GenerationParams(max_new_tokens=16, temperature=0)
    stop = _early_stop(backend, PROMPTS, params)
    small = _on(backend, "loop", batch_size=2)
    calls = []
    real_prefill, real_step = small._prefill, small._step
    monkeypatch.setattr(small, "_prefill", lambda cache, row, slot: calls.append(("prefill", slot)) or
                        real_prefill(cache, row, slot))
    monkeypatch.setattr(small, "_step", lambda cache, live: calls.append(("step", len(live))) or real_step(cache, live))
    stopping = GenerationParams(max_new_tokens=16, temperature=0, top_p=1.0, stop=(stop,))
    got = {r.row_id: r for r in small.generate(_requests(PROMPTS), stopping)}
    first_step = calls.index(("step", 2))
    assert any(c == ("prefill", 1) for c in calls[first_step:]), "no row joined a running batch"
    for i, prompt in enumerate(PROMPTS):
        alone = _one_at_a_time(backend, prompt, 16, stop_strings=[stop], tokenizer=backend.tokenizer)
        cut = alone.find(stop)
        assert got[i].text == (alone[: cut + len(stop)] if cut >= 0 else alone), f"row {i} differs"
    assert sum(r.finish_reason == "stop_sequence" for r in got.values()) >= 1


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("top_k", [0, 5])
def test_sampling_is_per_row_seeded_whatever_the_batch(backend, path, top_k):
    params = GenerationParams(max_new_tokens=10, temperature=0.95, top_p=0.7, top_k=top_k)
    one = _on(backend, path)
    together = _texts(one, _requests(PROMPTS), params)
    # Same rows, same seeds, other batches: row 3 alone, then in reverse order with batch size 2.
    alone = _texts(one, [_requests(PROMPTS)[3]], params)
    reordered = _texts(_on(backend, path, batch_size=2), list(reversed(_requests(PROMPTS))), params)
    assert alone[3] == together[3]
    assert reordered == together
    other_seed = _texts(one, _requests(PROMPTS, seed_base=100), params)
    assert other_seed != together


def test_a_sampled_row_is_the_same_through_the_loop_refilled_or_through_generate(backend):
    params = GenerationParams(max_new_tokens=12, temperature=1.0, top_p=0.9)
    stop = _early_stop(backend, PROMPTS, GenerationParams(max_new_tokens=12, temperature=0))
    for stopping in (params, GenerationParams(max_new_tokens=12, temperature=1.0, top_p=0.9, stop=(stop,))):
        fixed = _texts(_on(backend, "generate"), _requests(PROMPTS), stopping)
        assert _texts(_on(backend, "loop", batch_size=2), _requests(PROMPTS), stopping) == fixed


@pytest.mark.parametrize("path", PATHS)
def test_stop_sequence_cuts_and_says_so(backend, path):
    pair = _requests([PROMPTS[2], PROMPTS[1]])
    texts = _texts(_on(backend, path), pair, GREEDY)
    # The shortest piece of row 0's text (past its first character) that row 1 never writes
    # (and no half-decoded byte, which generate's token-level stop matching can't see).
    pieces = (texts[0][1:k] for k in range(3, len(texts[0])))
    stop = next(p for p in pieces if p not in texts[1] and "\ufffd" not in p)
    # Row 0 stops early inside a batch whose row 1 runs on: its count must stop with it.
    results = {r.row_id: r for r in _on(backend, path).generate(
        pair, GenerationParams(max_new_tokens=12, temperature=0, top_p=1.0, stop=(stop,)))}
    assert results[0].finish_reason == "stop_sequence"
    assert results[0].text.endswith(stop) and texts[0].startswith(results[0].text)
    assert results[0].generated_tokens < results[1].generated_tokens
    assert results[1].text == texts[1]


@pytest.mark.parametrize("path", PATHS)
def test_ignore_eos_generates_exactly_max_new_tokens(backend, path):
    fixed = _on(backend, path, batch_size=8, ignore_eos=True)
    results = list(fixed.generate(_requests(PROMPTS), GREEDY))
    assert [r.generated_tokens for r in results] == [12] * len(PROMPTS)
    assert {r.finish_reason for r in results} == {"length"}
    texts = {r.row_id: r.text for r in results}
    for i, prompt in enumerate(PROMPTS):
        assert texts[i] == _one_at_a_time(backend, prompt, 12, min_new_tokens=12), f"row {i} differs"


@pytest.mark.parametrize("path", PATHS)
def test_tokens_are_reported_as_they_are_generated(backend, path):
    counted, seen_before_first_row = [], []
    engine = _on(backend, path)
    engine.on_tokens = counted.append
    results = []
    for r in engine.generate(_requests(PROMPTS), GREEDY):
        if not results:
            seen_before_first_row.append(sum(counted))
        results.append(r)
    assert seen_before_first_row[0] > 0
    if path == "loop":  # every token exactly once
        assert sum(counted) == sum(r.generated_tokens for r in results)


def test_folder_revision_is_a_content_hash(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    first = folder_revision(tmp_path)
    assert first.startswith("sha256:") and folder_revision(tmp_path) == first
    (tmp_path / "config.json").write_text('{"a": 1}')
    assert folder_revision(tmp_path) != first


def test_not_a_model_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is not a model folder"):
        LocalBackend(str(tmp_path))


def test_falls_back_to_the_default_cache_where_static_is_refused(backend):
    expected = [r.text for r in backend.generate(_requests(PROMPTS[:2]), GREEDY)]
    refusing = _on(backend, "generate", cache_implementation="no-such-cache")
    assert [r.text for r in refusing.generate(_requests(PROMPTS[:2]), GREEDY)] == expected
    assert refusing.cache_implementation is None


def test_a_model_the_loop_gets_wrong_goes_through_generate(backend, monkeypatch):
    import torch

    fresh = _on(backend, "loop", continuous=None)
    real = fresh._step
    # As a model that ignored the positions and masks given would answer.
    monkeypatch.setattr(fresh, "_step", lambda cache, live: real(cache, live) + torch.randn(1).abs() * 10)
    expected = _texts(backend, _requests(PROMPTS[:2]), GREEDY)
    assert _texts(fresh, _requests(PROMPTS[:2]), GREEDY) == expected
    assert fresh.continuous is False


def test_a_prompt_over_the_context_fails_its_row_and_the_rest_generate(backend):
    prompts = [PROMPTS[0], "fox " * 3000, PROMPTS[2]]
    got = {r.row_id: r for r in backend.generate(_requests(prompts), GREEDY)}
    assert [got[i].status for i in range(3)] == ["ok", "failed", "ok"]
    assert got[1].error.startswith("prompt too long: ") and got[1].text is None
    assert "more than 2036 (the model's context of 2048 tokens less --max-new-tokens 12)" in got[1].error
    with pytest.raises(ValueError, match="--max-new-tokens 2048 does not fit the model's context of 2048"):
        list(backend.generate(_requests(prompts[:1]), GenerationParams(max_new_tokens=2048)))


LONG = ["word " * 100, "word " * 90] + PROMPTS[2:]  # two long prompts, three short


def test_long_prompts_go_in_smaller_batches_through_generate(backend, monkeypatch):
    small = _on(backend, "generate", batch_size=4, batch_tokens=4 * 64)
    sizes = []
    real = small._batch
    monkeypatch.setattr(small, "_batch", lambda reqs, ids, params: sizes.append(len(reqs)) or real(reqs, ids, params))
    got = list(small.generate(_requests(LONG), GREEDY))
    assert len(got) == len(LONG) and {r.status for r in got} == {"ok"}
    assert sizes[0] == 1 and sum(sizes) == len(LONG) and max(sizes) <= 4


def test_long_prompts_run_with_fewer_rows_in_the_loop(backend, monkeypatch):
    budget = 4 * 64
    small = _on(backend, "loop", batch_size=4, batch_tokens=budget)
    steps = []
    real = small._step
    monkeypatch.setattr(small, "_step", lambda cache, live: steps.append((len(live), cache.slots * cache.width))
                        or real(cache, live))
    got = {r.row_id: r for r in small.generate(_requests(LONG), GREEDY)}
    assert {r.status for r in got.values()} == {"ok"}
    # The long rows ran alone (their cache alone is over the budget); the short ones together, within it.
    assert steps[0][0] == 1 and max(n for n, _ in steps) > 1
    assert all(n == 1 or positions <= budget for n, positions in steps)
    assert [got[i].text for i in range(len(LONG))] == [_one_at_a_time(backend, p, 12) for p in LONG]


def _huge_fails(real):
    """What a GPU does when one row's cache does not fit: everything running with it fails."""
    import torch

    def call(*args):
        rows = args[-1] if isinstance(args[-1], list) else [args[-2]]
        if any("HUGE" in r.request.prompt for r in rows):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 176.00 GiB")
        return real(*args)

    return call


def test_running_out_of_memory_splits_the_batch_and_fails_only_the_row_that_does_not_fit(backend, monkeypatch):
    import torch

    engine = _on(backend, "generate")
    real = engine._batch

    def batch(reqs, ids, params):
        if any("HUGE" in r.prompt for r in reqs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 176.00 GiB")
        return real(reqs, ids, params)

    monkeypatch.setattr(engine, "_batch", batch)
    prompts = [PROMPTS[0], PROMPTS[1] + " HUGE", PROMPTS[2], PROMPTS[4]]
    got = {r.row_id: r for r in engine.generate(_requests(prompts), GREEDY)}
    assert [got[i].status for i in range(4)] == ["ok", "failed", "ok", "ok"]
    assert got[1].error.startswith("out of memory generating this row") and "--max-new-tokens" in got[1].error


@pytest.mark.parametrize("where", ["_step", "_prefill"])
def test_the_loop_out_of_memory_halves_the_batch_starts_rows_over_and_fails_only_the_row_that_does_not_fit(
        backend, monkeypatch, where):
    params = GenerationParams(max_new_tokens=10, temperature=0.95, top_p=0.7)
    prompts = [PROMPTS[0], PROMPTS[1] + " HUGE", PROMPTS[2], PROMPTS[4], PROMPTS[3]]
    expected = _texts(_on(backend, "loop"), _requests(prompts), params)
    engine = _on(backend, "loop", retries=0)
    monkeypatch.setattr(engine, where, _huge_fails(getattr(engine, where)))
    got = {r.row_id: r for r in engine.generate(_requests(prompts), params)}
    assert [got[i].status for i in range(5)] == ["ok", "failed", "ok", "ok", "ok"]
    assert got[1].error.startswith("out of memory generating this row") and "--max-new-tokens" in got[1].error
    # Rows that ran beside the huge one started over with fewer rows: same text as undisturbed.
    assert {i: got[i].text for i in (0, 2, 3, 4)} == {i: expected[i] for i in (0, 2, 3, 4)}
    assert engine.retries == (2 if where == "_step" else 0)


# ---------------------------------------------------------------- the sampler


def _reference_choice(logits, params, draw):
    """One row by the book: sort the whole vocabulary, temperature, top-k, top-p, inverse CDF at the draw."""
    import torch

    x = logits.double() / params.temperature
    # Sorted, most likely first; plain sampling (no top-k or top-p) needs no order: the vocabulary's own.
    vals, idx = x.sort(descending=True) if params.top_k or params.top_p < 1 else (x, torch.arange(len(x)))
    if params.top_k:
        vals, idx = vals[: params.top_k], idx[: params.top_k]
    probs = vals.softmax(-1) if params.top_k else (vals - x.logsumexp(-1)).exp()
    keep = (probs.cumsum(-1) - probs) < params.top_p
    keep[0] = True
    weights = probs * keep
    cdf = weights.cumsum(-1) / weights.sum()
    return int(idx[int((cdf <= draw).sum().clamp(max=int(keep.sum()) - 1))])


@pytest.mark.parametrize("top_k,top_p", [(0, 0.7), (0, 0.999), (50, 0.7), (3, 1.0), (0, 1.0)])
def test_the_sampler_picks_what_sorting_the_whole_vocabulary_picks_row_by_row(top_k, top_p):
    import torch

    from sdft_data.backends.local import NUCLEUS_CANDIDATES, _choose

    gen = torch.Generator().manual_seed(0)
    # Peaked rows (nucleus among the first candidates) and flat ones (nucleus past them).
    logits = torch.randn(24, 1000, generator=gen) * torch.tensor([8.0] * 12 + [0.5] * 12)[:, None]
    draws = torch.rand(24, generator=gen)
    params = GenerationParams(temperature=0.9, top_p=top_p, top_k=top_k)
    chosen = _choose(logits, params, draws)
    if top_p < 1:
        assert ((chosen != logits.argmax(-1)).sum()) > 0
    for i in range(24):
        assert int(chosen[i]) == _reference_choice(logits[i], params, float(draws[i])), f"row {i}"
        # A row alone picks what it picks in the batch.
        assert int(_choose(logits[i : i + 1], params, draws[i : i + 1])[0]) == int(chosen[i])
    assert NUCLEUS_CANDIDATES < 1000


def test_the_sampler_draws_in_proportion_to_the_nucleus():
    import torch

    from sdft_data.backends.local import _choose

    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(10000, 1)
    draws = (torch.arange(10000) + 0.5) / 10000  # evenly over [0, 1)
    chosen = _choose(logits, GenerationParams(temperature=1.0, top_p=0.7), draws)
    # top_p 0.7 keeps 0.5 and 0.3 (the mass before 0.15 is 0.8): 5/8 and 3/8 of the draws.
    assert torch.bincount(chosen, minlength=4).tolist() == [6250, 3750, 0, 0]
    assert _choose(logits[:5], GenerationParams(temperature=1.0, top_k=1), draws[:5]).tolist() == [0] * 5
