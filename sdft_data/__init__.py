"""sdft_data: turn a task dataset into a checked, versioned SDFT-distilled dataset.

    from sdft_data import distill
    run = distill(recipe="gsm8k", source="openai/gsm8k", model="meta-llama/Meta-Llama-3-8B-Instruct", out="runs/gsm8k")
"""

__version__ = "0.1.0"
