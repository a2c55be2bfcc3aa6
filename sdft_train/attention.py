"""Attention within each row of a padding-free micro-batch, without a dense mask: `sdpa_rows`.

A padding-free micro-batch is its rows laid end to end in one sequence, the
positions restarting at 0 for each row (TRL's collator also gives the row
boundaries, `cu_seq_lens_q`). Under transformers' `sdpa`, such a sequence gets
a dense block-diagonal mask: every position is scored against every other
position of the micro-batch, then the cross-row scores are masked away, and
with a mask PyTorch cannot use its causal kernel. `sdpa_rows` runs
scaled_dot_product_attention on each row by itself instead (causal, no mask):
the same attention, in the sum of the rows' squared lengths rather than the
square of their sum.

    register()   makes `sdpa_rows` a name transformers knows (AttentionInterface and the mask interface)

Everything else falls back to plain `sdpa`: a padded batch (2-D attention
mask) gets sdpa's own mask, a batch without row boundaries (generation, one
row) sdpa's causal path. On GPU the same code runs one kernel per row (and
reads the row boundaries back from the device once a layer); flash attention's
varlen kernel (`--attn-implementation flash_attention_2`, flash-attn
installed) takes the boundaries as they are and is the better choice there.
"""

from __future__ import annotations

NAME = "sdpa_rows"


def rows_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                   **kwargs):
    """transformers' attention signature: query/key/value (batch, heads, seq, head_dim) -> ((batch, seq, heads, dim), None)."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.pop("cu_seq_lens_q", None)
    if attention_mask is not None or bounds is None or query.shape[0] != 1 or key.shape[2] != query.shape[2]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    edges = bounds.tolist()
    outputs = [
        sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end], value[:, :, start:end], None,
                               dropout=dropout, scaling=scaling, is_causal=True)[0]
        for start, end in zip(edges[:-1], edges[1:])
        if end > start
    ]
    return torch.cat(outputs, dim=1), None


def rows_mask(*args, attention_mask=None, **kwargs):
    """The mask transformers builds for `sdpa_rows`: none for a padding-free batch, sdpa's for a padded one."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register() -> str:
    """Register `sdpa_rows` with transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, rows_attention)
    AttentionMaskInterface.register(NAME, rows_mask)
    return NAME
