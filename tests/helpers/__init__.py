"""Test doubles that speak real protocols, for the test suite and the benchmarks (not part of the package).

    from helpers.hub_server import LoopbackHub, hub_env        # the Hub's HTTP API, for huggingface_hub and datasets
    from helpers.engine_server import EngineServer, Faults     # TGI's and OpenAI's completion APIs

    with LoopbackHub(tokens={"hf_write": "write"}) as hub, hub_env(hub.url, cache_dir=tmp):
        HfApi(endpoint=hub.url, token="hf_write").create_repo("org/name", repo_type="dataset")

The tests import them as `helpers` (pytest puts tests/ on sys.path); a
benchmark or a shell runs either as a script: `python tests/helpers/hub_server.py
--token T` or `python tests/helpers/engine_server.py --echo --port 0`.
"""
