"""sdft_train: fine-tune (LoRA or full) on a published distilled dataset, and evaluate."""

__version__ = "0.1.0"
