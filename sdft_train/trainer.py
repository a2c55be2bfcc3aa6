"""TRL's SFTTrainer, with three ways to do the same training in less time; everything else is TRL's.

- The LM head only where the loss needs it, on CPU. TRL's fused LM head
  projects only the positions that have a label on CUDA and XPU (its Triton
  path). On other devices it projects every position (prompt and padding too),
  with an online log-sum-exp in torch tiles, and masks the unwanted ones
  afterwards. On CPU that head was about 45% of a training step of a small
  Llama on GSM8K rows (a third to a half of whose tokens are prompt), so there
  this trainer asks the model for the logits of the trained positions only,
  through its own `logits_to_keep`: the same loss and gradients (a test
  compares them with TRL's), the same metrics, less work.
- Attention within each row of a padding-free micro-batch (sdft_train.attention's
  `sdpa_rows`) instead of sdpa's dense block-diagonal mask, when the model runs
  sdpa: the same attention.
- Packed optimizer steps (`pack_tokens`, opt-in): with padding-free micro-batches and an
  attention that keeps to each row (sdpa_rows, flash attention), the rows of
  one optimizer step are loaded together and cut, in order, into micro-batches
  of at most `pack_tokens` tokens (train.py: batch size x max length, the most a
  micro-batch of the paper's could hold) instead of `batch_size` rows each.
  The same rows in each step, the same loss (normalised, as TRL's, over the
  trained tokens of the whole step) and gradients (a test compares them); fewer,
  fuller forward passes. On CPU that was no faster than micro-batches of rows
  and took more memory, so it is off by default; on GPU, where a small
  micro-batch leaves the device idle, it may pay (untried), also under flash
  attention's varlen kernel (`--attn-implementation flash_attention_2`), which
  reads the row boundaries of each packed micro-batch.
"""

from __future__ import annotations

import inspect

import torch
from trl import SFTTrainer

IGNORE_INDEX = -100


class Trainer(SFTTrainer):
    def __init__(self, *args, rows_attention: bool = True, pack_tokens: int | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        base = self._base_model()
        # Decoder models of transformers take `logits_to_keep` (1-D tensor: the positions to project); others
        # keep TRL's path.
        self.trained_positions_only = "logits_to_keep" in inspect.signature(type(base).forward).parameters
        # Set for training only, put back after it.
        self.attention = base.config._attn_implementation
        self._attention_before = None
        if rows_attention and self.args.padding_free and self.attention == "sdpa":
            from .attention import register

            self._attention_before = self.attention
            base.set_attn_implementation(register())
            self.attention = base.config._attn_implementation
        # Packing needs attention that keeps to each row without a mask (a dense mask grows with the square of
        # the packed length): sdpa_rows or flash attention.
        packs = self.args.padding_free and (self._attention_before is not None or "flash" in str(self.attention))
        self.pack_tokens = pack_tokens if pack_tokens and packs else None

    def _base_model(self):
        return self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model

    def train(self, *args, **kwargs):
        try:
            return super().train(*args, **kwargs)
        finally:
            if self._attention_before is not None:
                self._base_model().set_attn_implementation(self._attention_before)

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        """The step's micro-batches, as TRL's loop fetches them (the same rows on each process, the loss
        normalised over all their trained tokens), repacked: the same rows, in order, cut into as few micro-batches
        of at most `pack_tokens` tokens as they fit in. The loop still counts `num_batches` of them: empty ones
        (no forward pass) come first, so the last, which synchronises processes, is a real one."""
        batches, num_items = super().get_batch_samples(epoch_iterator, num_batches, device)
        if self.pack_tokens is None or len(batches) < 2 or not all("cu_seq_lens_q" in b for b in batches):
            return batches, num_items
        pieces = pack_rows(join_rows(batches), self.pack_tokens)
        if len(pieces) > len(batches):  # only if a micro-batch held more than pack_tokens tokens
            return batches, num_items
        empty = {"input_ids": batches[0]["input_ids"][:, :0]}
        return [empty] * (len(batches) - len(pieces)) + pieces, num_items

    def training_step(self, model, inputs, num_items_in_batch=None):
        if inputs["input_ids"].numel() == 0:  # a packed step's empty micro-batch
            return torch.zeros((), device=self.args.device)
        return super().training_step(model, inputs, num_items_in_batch)

    def _ours(self, inputs) -> bool:
        labels = inputs.get("labels")
        return (self.trained_positions_only and labels is not None and labels.device.type == "cpu"
                and self.compute_loss_func is None and self.label_smoother is None and not self.aux_loss_enabled
                and self.args.loss_type == "nll")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not self._ours(inputs):
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        # Position t predicts token t + 1. A padded micro-batch projects the positions any of its rows trains on;
        # a padding-free one (a single flat row) exactly the trained ones.
        targets = inputs["labels"][:, 1:]
        keep = (targets != IGNORE_INDEX).any(0).nonzero().squeeze(-1)
        features = {k: v for k, v in inputs.items() if k != "labels"}
        outputs = model(**features, use_cache=False, logits_to_keep=keep)
        targets = targets[:, keep]
        mask = targets != IGNORE_INDEX
        log_probs = torch.log_softmax(outputs.logits.float(), dim=-1)
        token_log_probs = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        num_tokens = mask.sum() if num_items_in_batch is None else num_items_in_batch
        # As TRL's: summed over the trained tokens of the whole (accumulated, all-process) batch, clamped so that
        # a batch without any is a finite zero.
        loss = -(token_log_probs * mask).sum() / torch.as_tensor(num_tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())

        # TRL's metrics, from the logits at hand: entropy and top-1 accuracy over the trained tokens.
        with torch.no_grad():
            entropy = -(log_probs.exp() * log_probs).sum(-1)
            correct = log_probs.argmax(-1) == targets
        gather = self.accelerator.gather_for_metrics
        num_valid = gather(mask.sum()).sum()
        entropy_sum = gather((entropy * mask).sum()).sum()
        num_correct = gather((correct & mask).sum()).sum()
        self._metrics[mode]["entropy"].append((entropy_sum / num_valid).item() if num_valid > 0 else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append((num_correct / num_valid).item() if num_valid > 0 else 0.0)
        if mode == "train":
            if "attention_mask" in inputs:
                seen = gather(inputs["attention_mask"].sum()).sum().item()
            else:  # padding-free: one flat row
                seen = gather(torch.tensor(inputs["position_ids"].size(1))).sum().item()
            self._total_train_tokens += seen // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss


def join_rows(batches: list[dict]) -> dict:
    """Padding-free micro-batches (TRL's collator) joined into one, their rows in order."""
    out, offset, rows = {}, 0, 0
    edges, ids = [], []
    for b in batches:
        edges.append(b["cu_seq_lens_q"][:-1] + offset)
        ids.append(b["seq_idx"] + rows)
        offset += b["input_ids"].size(1)
        rows += b["cu_seq_lens_q"].numel() - 1
    edges.append(batches[-1]["cu_seq_lens_q"].new_tensor([offset]))
    for key, value in batches[0].items():
        if key in ("cu_seq_lens_q", "cu_seq_lens_k"):
            out[key] = torch.cat(edges)
        elif key in ("max_length_q", "max_length_k"):
            out[key] = max(b[key] for b in batches)
        elif key == "seq_idx":
            out[key] = torch.cat(ids, dim=1)
        elif torch.is_tensor(value) and value.dim() == 2:
            out[key] = torch.cat([b[key] for b in batches], dim=1)  # input_ids, labels, position_ids
        else:
            raise ValueError(f"cannot pack the micro-batch field {key!r}")
    return out


def pack_rows(batch: dict, max_tokens: int) -> list[dict]:
    """Cut a padding-free batch (TRL's collator: one flat row of several rows) into consecutive pieces of whole
    rows, each of at most `max_tokens` tokens (a longer row is a piece by itself)."""
    edges = batch["cu_seq_lens_q"].tolist()  # row i is edges[i]:edges[i + 1]
    rows = len(edges) - 1
    pieces, first = [], 0
    for row in range(1, rows):
        if edges[row + 1] - edges[first] > max_tokens:  # row `row` does not fit with rows first..row-1
            pieces.append((first, row))
            first = row
    pieces.append((first, rows))
    out = []
    for first, last in pieces:
        lo, hi = edges[first], edges[last]
        cuts = batch["cu_seq_lens_q"][first:last + 1] - lo
        piece = {}
        for key, value in batch.items():
            if key in ("cu_seq_lens_q", "cu_seq_lens_k"):
                piece[key] = cuts
            elif key in ("max_length_q", "max_length_k"):
                piece[key] = max(b - a for a, b in zip(edges[first:last], edges[first + 1:last + 1]))
            elif key == "seq_idx":
                piece[key] = value[:, lo:hi] - value[0, lo]
            elif torch.is_tensor(value) and value.dim() == 2 and value.size(1) == edges[-1]:
                piece[key] = value[:, lo:hi]  # input_ids, labels, position_ids
            else:
                raise ValueError(f"cannot pack the micro-batch field {key!r}")
        out.append(piece)
    return out
