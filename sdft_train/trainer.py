"""TRL's SFTTrainer, computing the LM head only where the loss needs it when training on CPU.

TRL's fused LM head projects only the positions that have a label on CUDA and
XPU (its Triton path). On other devices it projects every position (prompt and
padding too), with an online log-sum-exp in torch tiles, and masks the unwanted
ones afterwards. On CPU that head was about 45% of a training step of a small
Llama on GSM8K rows (a third to a half of whose tokens are prompt), so there
this trainer asks the model for the logits of the trained positions only,
through its own `logits_to_keep`: the same loss and gradients (a test compares
them with TRL's), the same metrics, less work. Everything else is TRL's.
"""

from __future__ import annotations

import inspect

import torch
from trl import SFTTrainer

IGNORE_INDEX = -100


class Trainer(SFTTrainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        # Decoder models of transformers take `logits_to_keep` (1-D tensor: the positions to project); others
        # keep TRL's path.
        self.trained_positions_only = "logits_to_keep" in inspect.signature(type(base).forward).parameters

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
