"""sdft_data: turn a task dataset into a checked, versioned SDFT-distilled dataset.

    from sdft_data import distill, check_run, diff_run, push, load
    run = distill(recipe="gsm8k", source="openai/gsm8k", model="meta-llama/Meta-Llama-3-8B-Instruct", out="runs/gsm8k")
    push("runs/gsm8k", "my-org/gsm8k-sdft")
    ds = load("my-org/gsm8k-sdft@v1")

Names are imported on first use, so `import sdft_data` (and `sdft-data --help`) stays instant.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "distill": "run",
    "check_run": "check",
    "check_frame": "check",
    "diff_run": "diff",
    "diff_files": "diff",
    "push": "publish",
    "pull": "publish",
    "load": "publish",
    "versions": "publish",
    "get_recipe": "recipes",
    "GenerationParams": "backends",
}


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'sdft_data' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
