"""Endpoint backend throughput: 2000 requests to a loopback TGI that answers each after 200 ms.

The loopback engine server runs in its own process in echo mode (canned text,
no model), so what is measured is the client: how close the TGI backend gets
to the server's full speed, and what it costs per request.

    (a) wall time at concurrency 128 against the ideal, requests / concurrency x 200 ms
        (efficiency = ideal / wall; the target is at least 0.9);
    (b) the client's CPU milliseconds per request (this process, all its threads);
    (c) the speed-up over the authors' way, one request at a time (timed on a
        sample of requests and scaled to all of them: 2000 x 200 ms is 7 minutes).

The client library is chosen by (b): the same requests through huggingface_hub's
AsyncInferenceClient (httpx) are timed too, on a sample, at the same concurrency.
For reference, a bare aiohttp loop (128 coroutines posting, no backend) shows
the floor that Python and the loopback set on this machine. Medians over
--repeats runs. Prints one JSON line.

    python benchmarks/bench_endpoint.py
    python benchmarks/bench_endpoint.py --requests 500 --repeats 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sdft_data.backends import GenerationParams, Request
from sdft_data.backends.tgi import TGIBackend

# The loopback servers live with the tests (they are not part of the package).
HELPERS = Path(__file__).resolve().parents[1] / "tests" / "helpers"

QUESTION = "A baker makes 24 muffins in the morning and 18 in the afternoon. " \
           "How many muffins does she make in a day?"
PARAMS = GenerationParams(max_new_tokens=64, temperature=0)


def start_server(model_dir: str, latency: float) -> tuple[subprocess.Popen, str]:
    """The loopback server in its own process; returns it and its URL."""
    proc = subprocess.Popen(
        [sys.executable, str(HELPERS / "engine_server.py"), "--echo", "--model-id", model_dir,
         "--latency", str(latency), "--port", "0", "--max-concurrent", "100000"],
        stdout=subprocess.PIPE, text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("engine server listening on "):
        proc.kill()
        raise RuntimeError(f"the loopback server did not start: {line!r}")
    return proc, line.split()[-1]


def requests_for(tokenizer, n: int) -> list[Request]:
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": f"{QUESTION} ({i})"}], tokenize=False,
                                      add_generation_prompt=True) + "Great! Let's think step by step. "
        for i in range(n)
    ]
    return [Request(row_id=i, prompt=p, seed=i) for i, p in enumerate(prompts)]


def timed(backend: TGIBackend, reqs: list[Request]) -> tuple[float, float]:
    """(wall seconds, client CPU seconds) to get every result back, all ok."""
    wall, cpu = time.perf_counter(), time.process_time()
    results = list(backend.generate(reqs, PARAMS))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    bad = [r for r in results if r.status != "ok"]
    if len(results) != len(reqs) or bad:
        raise RuntimeError(f"{len(results)} results for {len(reqs)} requests, {len(bad)} failed")
    return wall, cpu


def bare_aiohttp(url: str, reqs: list[Request], concurrency: int) -> tuple[float, float]:
    """(wall, CPU) seconds for the same requests from a bare aiohttp loop: the library's floor."""
    import aiohttp

    from sdft_data.backends.tgi import tgi_parameters

    parameters = tgi_parameters(PARAMS)

    async def main():
        pending = iter(reqs)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            async def worker():
                for r in pending:
                    body = {"inputs": r.prompt, "parameters": parameters}
                    async with session.post(url + "/generate", json=body) as resp:
                        json.loads(await resp.read())

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(main())
    return time.perf_counter() - wall, time.process_time() - cpu


def hf_client_cpu(url: str, reqs: list[Request], concurrency: int) -> float:
    """Client CPU seconds for the same requests through huggingface_hub's AsyncInferenceClient."""
    from huggingface_hub import AsyncInferenceClient

    async def main():
        client = AsyncInferenceClient(base_url=url)
        gate = asyncio.Semaphore(concurrency)

        async def one(r: Request):
            async with gate:
                out = await client.text_generation(r.prompt, max_new_tokens=PARAMS.max_new_tokens, details=True)
                return out.details.finish_reason

        await asyncio.gather(*(one(r) for r in reqs))
        await client.close()

    cpu = time.process_time()
    asyncio.run(main())
    return time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--latency", type=float, default=0.2, help="seconds the server takes to answer")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sequential-sample", type=int, default=25, help="requests timed one at a time")
    ap.add_argument("--hf-sample", type=int, default=500, help="requests through AsyncInferenceClient (0: skip)")
    args = ap.parse_args()

    from sdft_data.tiny import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        # The server names this model, so the backend loads its tokenizer like a real one.
        model_dir = str(build_tiny_model(tmp))
        proc, url = start_server(model_dir, args.latency)
        try:
            concurrent = TGIBackend([url], concurrency=args.concurrency)
            reqs = requests_for(concurrent.tokenizer, args.requests)
            timed(concurrent, reqs[: args.concurrency])  # warm-up: connections, imports
            runs = [timed(concurrent, reqs) for _ in range(args.repeats)]
            wall = statistics.median(w for w, _ in runs)
            cpu_ms = statistics.median(c for _, c in runs) * 1000 / args.requests
            bare = [bare_aiohttp(url, reqs, args.concurrency) for _ in range(args.repeats)]
            bare_wall = statistics.median(w for w, _ in bare)
            bare_cpu_ms = statistics.median(c for _, c in bare) * 1000 / args.requests

            one_at_a_time = TGIBackend([url], concurrency=1)
            seq_wall, _ = timed(one_at_a_time, reqs[: args.sequential_sample])
            seq_per_request = seq_wall / args.sequential_sample

            hf_cpu_ms = None
            if args.hf_sample:
                sample = reqs[: args.hf_sample]
                hf_cpu_ms = hf_client_cpu(url, sample, args.concurrency) * 1000 / len(sample)
                ours_ms = timed(concurrent, sample)[1] * 1000 / len(sample)
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    ideal = args.requests / args.concurrency * args.latency
    print(json.dumps({
        "benchmark": "endpoint",
        "requests": args.requests,
        "concurrency": args.concurrency,
        "server_latency_s": args.latency,
        "ideal_s": round(ideal, 3),
        "wall_s": round(wall, 3),
        "efficiency": round(ideal / wall, 3),
        "target_efficiency": 0.9,
        "client_cpu_ms_per_request": round(cpu_ms, 3),
        "one_at_a_time_s_per_request": round(seq_per_request, 4),
        "one_at_a_time_estimate_s": round(seq_per_request * args.requests, 1),
        "speedup_vs_one_at_a_time": round(seq_per_request * args.requests / wall, 1),
        "bare_aiohttp_wall_s": round(bare_wall, 3),
        "bare_aiohttp_efficiency": round(ideal / bare_wall, 3),
        "bare_aiohttp_cpu_ms_per_request": round(bare_cpu_ms, 3),
        "client": "aiohttp",
        "hf_sample_requests": args.hf_sample,
        "client_cpu_ms_per_request_hf_sample": round(ours_ms, 3) if hf_cpu_ms is not None else None,
        "hf_async_inference_client_cpu_ms_per_request": round(hf_cpu_ms, 3) if hf_cpu_ms is not None else None,
        "repeats": args.repeats,
        "cpus": os.cpu_count(),
    }))


if __name__ == "__main__":
    main()
