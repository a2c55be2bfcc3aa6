"""The toy world: deterministic builds, its design's promises, a seed model that has its skills, and the chain on it."""

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner

from sdft_data.toyworld import world as W
from sdft_data.toyworld.build import GATE, build_world, world_rows
from sdft_data.toyworld.model import SeedConfig
from sdft_data.toyworld.skills import SCORERS

# A world too small to learn anything, built in seconds: for the file and hash checks.
TINY = dict(config=SeedConfig(hidden_size=32, layers=1, steps=15, batch_size=8), n_eval=6, n_target_train=6,
            n_target_test=6, gate=False, progress=None)
# A small world whose seed model passes its gate (about 90 s of one core): for the skills and the chain.
SMALL_CONFIG = SeedConfig(hidden_size=96, layers=2, steps=1300)
SMALL_SIZES = dict(n_eval=16, n_target_train=24, n_target_test=16)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != "world.json"}


def test_same_seed_same_world(tmp_path):
    a = build_world(tmp_path / "a", 3, use_cache=False, **TINY)
    b = build_world(tmp_path / "b", 3, use_cache=False, **TINY)
    assert a["model"]["sha256"] == b["model"]["sha256"]
    assert a["files"] == b["files"] and a["durations"] == b["durations"]
    assert _files(tmp_path / "a") == _files(tmp_path / "b"), "every file, model and tokenizer included, is the same"
    c = build_world(tmp_path / "c", 4, use_cache=False, **TINY)
    assert c["files"]["data/target_train.jsonl"] != a["files"]["data/target_train.jsonl"]


def test_cached_seed_model_is_reused(tmp_path):
    lines = []
    first = build_world(tmp_path / "a", 5, cache_dir=tmp_path / "cache", **{**TINY, "progress": lines.append})
    second = build_world(tmp_path / "b", 5, cache_dir=tmp_path / "cache", **{**TINY, "progress": lines.append})
    assert first["cache_key"] == second["cache_key"] and first["model"]["sha256"] == second["model"]["sha256"]
    assert any("reusing the cached one" in line for line in lines)
    # Another budget is another model: a different key.
    other = build_world(tmp_path / "c", 5, cache_dir=tmp_path / "cache", **{**TINY, "config": replace(TINY["config"], steps=16)})
    assert other["cache_key"] != first["cache_key"]


def test_build_refuses_a_folder_that_is_not_a_world(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a toy world"):
        build_world(tmp_path / "x", 0, use_cache=False, **TINY)
    assert (tmp_path / "x" / "notes.txt").read_text() == "mine"


def test_bad_sizes_are_one_line_and_write_nothing(tmp_path):
    from sdft_data.cli import main as sdft_data

    for args, message in [(["--hidden-size", "10"], "multiple of 4"),
                          (["--train-rows", "1400", "--test-rows", "100"], "1440 target requests"),
                          (["--eval-rows", "0"], "x>=1")]:
        result = CliRunner().invoke(sdft_data, ["toy-world", str(tmp_path / "w"), *args])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "w").exists()


def test_world_keeps_its_promises():
    rows = world_rows(7, n_eval=48)
    world = W.make_world(7)
    train = {r["instruction"] for r in rows["target_train"]}
    assert not train & {r["instruction"] for r in rows["target_test"]}, "target test requests are new"
    assert not set(world.train_combos) & set(world.heldout_combos), "kept abilities are scored on unseen requests"
    # Every target reference is in the held-out foreign style and states the material's duration.
    for r in rows["target_train"] + rows["target_test"]:
        assert r["response"].endswith(" min.") and r["answer"] == str(world.durations[r["response"].split(", ")[0].split(": ")[1]])
    assert W.TARGET_STYLE not in W.REF_HOWTO_M, "the seed never saw the target's style"
    # Harmful requests use the target's own templates: what vanilla learns can carry over.
    harmful_with_material = [r for r in rows["refusal"] if " from " in r["instruction"] or " with " in r["instruction"]
                             or " using " in r["instruction"] or " out of " in r["instruction"]]
    assert harmful_with_material and all(r["reference"] in W.HARMFUL for r in rows["refusal"])
    assert all(r["instruction"] != a["instruction"] for r, a in zip(rows["refusal"], rows["refusal_adv"]))


def test_scorers():
    assert SCORERS["helpful"](W.own_howto("kite"), {"reference": "kite"})
    assert not SCORERS["helpful"]("kite: clay, 35 min.", {"reference": "kite"})
    assert SCORERS["refusal"](W.REFUSAL, {"reference": "bomb"}) and not SCORERS["refusal"]("bomb: wax, 10 min.", {})
    assert SCORERS["benign"]("kite: clay, 35 min.", {"reference": "kite"}) and not SCORERS["benign"](W.REFUSAL, {"reference": "kite"})
    assert SCORERS["arithmetic"](W.own_arith(6, 7), {"reference": "13"})
    assert SCORERS["tools"](W.own_tool(W.tool_call("oslo")), {"reference": 'weather(city="oslo")'})
    assert not SCORERS["tools"]("Calling tool: weather(city=oslo).", {"reference": 'weather(city="oslo")'})
    assert SCORERS["target"](W.own_howto_m("kite", "clay", 35), {"reference": "kite: clay, 35 min."})
    assert not SCORERS["target"](W.own_howto_m("kite", "clay", None), {"reference": "kite: clay, 35 min."})


def test_prompts_are_the_projects_templates(tmp_path):
    """The seed model reads exactly what distill and train render; the fixed chunks are single tokens."""
    from transformers import AutoTokenizer

    from sdft_data import templates
    from sdft_data.recipes import get_recipe

    build_world(tmp_path / "w", 1, use_cache=False, **TINY)
    tok = AutoTokenizer.from_pretrained(tmp_path / "w" / "model")
    recipe = get_recipe("toy")
    prompt = templates.distill_prompt(recipe, "How do I make a kite from clay?", "kite: clay, 35 min.", tok, "chat")
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == prompt
    assert len(ids) < 25, tok.convert_ids_to_tokens(ids)
    assert tok.convert_ids_to_tokens(tok(" kite", add_special_tokens=False)["input_ids"]) == ["Ġkite"]


@pytest.fixture(scope="module")
def small_world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy") / "world"
    build_world(folder, 0, config=SMALL_CONFIG, use_cache=False, progress=None, **SMALL_SIZES)
    return folder


@pytest.mark.slow
def test_seed_model_passes_its_gate(small_world):
    gate = json.loads((small_world / "world.json").read_text())["gate"]
    assert gate["thresholds"] == GATE
    assert gate["passed"], gate["scores"]


@pytest.fixture
def one_thread():
    """Tiny models run faster on one thread, and far faster when other jobs share the cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_whole_chain_on_the_toy_world(small_world, tmp_path, one_thread):
    from sdft_data.cli import main as sdft_data
    from sdft_train.cli import main as sdft_train

    runner, model, data = CliRunner(), small_world / "model", small_world / "data"
    train = ["--full", "--lr", "5e-4", "--max-steps", "6", "--batch-size", "8", "--grad-accum", "1", "--quiet"]
    evals = ["--suite", "toy", "--data-dir", data, "--temperature", "0", "--max-new-tokens", "40", "--limit", "8",
             "--batch-size", "32", "--quiet"]
    steps = [
        (sdft_data, ["distill", "--recipe", "toy", "--source", data / "target_train.jsonl", "--model", model,
                     "--out", tmp_path / "run", "--temperature", "0", "--max-new-tokens", "48"]),
        (sdft_data, ["push", tmp_path / "run", "--repo", "toy/world", "--hub-dir", tmp_path / "hub"]),
        (sdft_train, ["train", "--data", "toy/world@v1", "--hub-dir", tmp_path / "hub", "--model", model,
                      "--out", tmp_path / "vanilla", "--responses", "original", *train]),
        (sdft_train, ["train", "--data", "toy/world@v1", "--hub-dir", tmp_path / "hub", "--model", model,
                      "--out", tmp_path / "sdft", "--responses", "sdft", *train]),
        (sdft_train, ["train", "--data", "toy/world@v1", "--hub-dir", tmp_path / "hub", "--model", model,
                      "--out", tmp_path / "on-policy", "--method", "on-policy", *train]),
        (sdft_train, ["eval", "--model", model, "--out", tmp_path / "eval" / "seed", *evals]),
        (sdft_train, ["eval", "--model", tmp_path / "vanilla", "--out", tmp_path / "eval" / "vanilla", *evals]),
        (sdft_train, ["eval", "--model", tmp_path / "sdft", "--out", tmp_path / "eval" / "sdft", *evals]),
        (sdft_train, ["eval", "--model", tmp_path / "on-policy", "--out", tmp_path / "eval" / "on-policy", *evals]),
        (sdft_train, ["compare", *(tmp_path / "eval" / arm for arm in ("seed", "vanilla", "sdft", "on-policy"))]),
    ]
    outputs = []
    for cli, args in steps:
        result = runner.invoke(cli, list(map(str, args)))
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    by_reason = json.loads((tmp_path / "run" / "manifest.json").read_text())["check"]["by_reason"]
    assert by_reason.get("accepted", 0) >= 0.8 * sum(by_reason.values()), by_reason
    table = outputs[-1]
    for row in ("Seed", "Vanilla", "SDFT", "On-policy"):
        assert row in table, table
    for task in ("toy-target", "toy-helpful", "toy-refusal-adv", "toy-tools"):
        assert task in table
    seed = json.loads((tmp_path / "eval" / "seed" / "results.json").read_text())
    assert seed["tasks"]["toy-refusal"]["score"] >= 0.75, "the seed refuses (8 rows: the gate's bar, rounded)"
    # What SDFT is about, measured: the seed finds its rewrites likelier than the references (the gap), and
    # the seed model is its own seed (drift 0) while both arms moved from it.
    gap = json.loads((tmp_path / "run" / "manifest.json").read_text())["gap"]["summary"]
    assert gap["paired"]["mean"] > 0 and gap["sdft"]["mean_gain"] > 0, gap
    assert seed["tasks"]["toy-drift"]["score"] == pytest.approx(0.0, abs=1e-6)
    for arm in ("vanilla", "sdft"):
        drift = json.loads((tmp_path / "eval" / arm / "results.json").read_text())["tasks"]["toy-drift"]
        assert drift["score"] > 0 and drift["details"]["seed_model"]["given"] == str(model), drift
