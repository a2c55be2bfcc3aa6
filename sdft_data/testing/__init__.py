"""Test doubles that speak real protocols, for the test suite, benchmarks and `make demo`.

    from sdft_data.testing import LoopbackHub, hub_env

    with LoopbackHub(tokens={"hf_write": "write"}) as hub, hub_env(hub.url, cache_dir=tmp):
        HfApi(endpoint=hub.url, token="hf_write").create_repo("org/name", repo_type="dataset")
"""

__all__ = ["LoopbackHub", "hub_env"]


def __getattr__(name):
    # Imported on first use, so that `python -m sdft_data.testing.hub_server` runs the module only once.
    if name in __all__:
        from . import hub_server

        return getattr(hub_server, name)
    raise AttributeError(name)
