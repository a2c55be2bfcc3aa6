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


def _requests(prompts, seed_base=0):
    return [Request(row_id=i, prompt=p, seed=seed_base + i) for i, p in enumerate(prompts)]


def _one_at_a_time(backend, prompt, max_new_tokens):
    """The authors' way: one prompt through generate, no padding."""
    import torch

    ids = backend.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        out = backend.model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=backend.tokenizer.pad_token_id)
    return backend.tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_batched_greedy_equals_one_at_a_time(backend):
    results = {r.row_id: r for r in backend.generate(_requests(PROMPTS), GREEDY)}
    assert sorted(results) == list(range(len(PROMPTS)))
    for i, prompt in enumerate(PROMPTS):
        assert results[i].text == _one_at_a_time(backend, prompt, 12), f"row {i} differs"
        assert results[i].status == "ok"
        assert results[i].prompt_tokens == len(backend.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert 1 <= results[i].generated_tokens <= 12
        assert results[i].finish_reason in ("length", "eos_token")


def test_sampling_is_per_row_seeded_whatever_the_batch(backend):
    params = GenerationParams(max_new_tokens=10, temperature=0.95, top_p=0.7)
    together = {r.row_id: r.text for r in backend.generate(_requests(PROMPTS), params)}
    # Same rows, same seeds, other batches: row 3 alone, then in reverse order with batch size 2.
    alone = {r.row_id: r.text for r in backend.generate([_requests(PROMPTS)[3]], params)}
    small = LocalBackend.__new__(LocalBackend)
    small.__dict__.update(backend.__dict__, batch_size=2)
    reordered = {r.row_id: r.text for r in small.generate(list(reversed(_requests(PROMPTS))), params)}
    assert alone[3] == together[3]
    assert reordered == together
    other_seed = {r.row_id: r.text for r in backend.generate(_requests(PROMPTS, seed_base=100), params)}
    assert other_seed != together


def test_stop_sequence_cuts_and_says_so(backend):
    pair = _requests([PROMPTS[2], PROMPTS[1]])
    texts = {r.row_id: r.text for r in backend.generate(pair, GREEDY)}
    # The shortest piece of row 0's text (past its first character) that row 1 never writes
    # (and no half-decoded byte, which generate's token-level stop matching can't see).
    pieces = (texts[0][1:k] for k in range(3, len(texts[0])))
    stop = next(p for p in pieces if p not in texts[1] and "\ufffd" not in p)
    # Row 0 stops early inside a batch whose row 1 runs on: its count must stop with it.
    results = {r.row_id: r for r in backend.generate(pair, GenerationParams(max_new_tokens=12, temperature=0, top_p=1.0, stop=(stop,)))}
    assert results[0].finish_reason == "stop_sequence"
    assert results[0].text.endswith(stop) and texts[0].startswith(results[0].text)
    assert results[0].generated_tokens < results[1].generated_tokens
    assert results[1].text == texts[1]


def test_ignore_eos_generates_exactly_max_new_tokens(tiny_model_dir):
    fixed = LocalBackend(str(tiny_model_dir), batch_size=8, ignore_eos=True)
    results = list(fixed.generate(_requests(PROMPTS), GREEDY))
    assert [r.generated_tokens for r in results] == [12] * len(PROMPTS)
    assert {r.finish_reason for r in results} == {"length"}


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
    refusing = LocalBackend.__new__(LocalBackend)
    refusing.__dict__.update(backend.__dict__, cache_implementation="no-such-cache")
    assert [r.text for r in refusing.generate(_requests(PROMPTS[:2]), GREEDY)] == expected
    assert refusing.cache_implementation is None


def test_a_prompt_over_the_context_fails_its_row_and_the_rest_generate(backend):
    prompts = [PROMPTS[0], "fox " * 3000, PROMPTS[2]]
    got = {r.row_id: r for r in backend.generate(_requests(prompts), GREEDY)}
    assert [got[i].status for i in range(3)] == ["ok", "failed", "ok"]
    assert got[1].error.startswith("prompt too long: ") and got[1].text is None
    assert "more than 2036 (the model's context of 2048 tokens less --max-new-tokens 12)" in got[1].error
    with pytest.raises(ValueError, match="--max-new-tokens 2048 does not fit the model's context of 2048"):
        list(backend.generate(_requests(prompts[:1]), GenerationParams(max_new_tokens=2048)))


def test_long_prompts_go_in_smaller_batches(tiny_model_dir, monkeypatch):
    small = LocalBackend(str(tiny_model_dir), batch_size=4, batch_tokens=4 * 64)
    sizes = []
    real = small._batch
    monkeypatch.setattr(small, "_batch", lambda reqs, ids, params: sizes.append(len(reqs)) or real(reqs, ids, params))
    prompts = ["word " * 100, "word " * 90] + PROMPTS[2:]  # two long prompts, three short
    got = list(small.generate(_requests(prompts), GREEDY))
    assert len(got) == len(prompts) and {r.status for r in got} == {"ok"}
    assert sizes[0] == 1 and sum(sizes) == len(prompts) and max(sizes) <= 4


def test_running_out_of_memory_splits_the_batch_and_fails_only_the_row_that_does_not_fit(backend, monkeypatch):
    import torch

    real = backend._batch

    def batch(reqs, ids, params):
        # What a GPU does when one row's cache does not fit: the whole batch fails.
        if any("HUGE" in r.prompt for r in reqs):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 176.00 GiB")
        return real(reqs, ids, params)

    monkeypatch.setattr(backend, "_batch", batch)
    prompts = [PROMPTS[0], PROMPTS[1] + " HUGE", PROMPTS[2], PROMPTS[4]]
    got = {r.row_id: r for r in backend.generate(_requests(prompts), GREEDY)}
    assert [got[i].status for i in range(4)] == ["ok", "failed", "ok", "ok"]
    assert got[1].error.startswith("out of memory generating this row") and "--max-new-tokens" in got[1].error
