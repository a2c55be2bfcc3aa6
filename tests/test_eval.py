"""Evaluation: scorers on golden cases, prompts, resumable eval runs, the judge flow, similarity, bad input."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from sdft_data.backends.local import LocalBackend
from sdft_train.cli import main
from sdft_data import paper
from sdft_train.evaluate import evaluate, task_params
from sdft_train.tasks import Context, advbench, advbench_jailbreak, get_task, humaneval, resolve

DATA = Path(__file__).parent / "fixtures" / "eval_data"
GOLDEN = Path(__file__).parent / "fixtures" / "golden_authors_prompts.jsonl"


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return LocalBackend(str(tiny_model_dir), batch_size=4)


def _rows(task, pairs):
    return [{"id": i, "input": "q", "reference": ref} for i, (ref, _) in enumerate(pairs)], [p for _, p in pairs]


# --- scorers on golden cases (the authors' own edge cases) --------------------------------------

MATH_CASES = [
    ("The answer is 7.", "so 3 + 4 = 7. The answer is 7.", 1.0),
    ("The answer is 2,000.", "In total 2000 pens.", 1.0),  # thousands separator on either side
    ("The answer is 18", "The answer is 18.0", 1.0),  # a zero decimal part is the integer
    ("The answer is 18", "The answer is 17.5", 0.0),  # a non-zero decimal part is no answer
    ("The answer is 7.", "7 apples, then 3 more: 10", 0.0),  # the last integer counts
    ("24 - 18 = <<24-18=6>>6\n#### 6", "There are 6 left.", 1.0),  # a raw Hub GSM8K answer
    ("The answer is 7.", "", 0.0),
]


@pytest.mark.parametrize("reference, prediction, expected", MATH_CASES)
def test_math_scorer_is_the_recipes_check(reference, prediction, expected):
    for name in ("gsm8k", "multiarith"):
        rows, preds = _rows(name, [(reference, prediction)])
        assert get_task(name).score(rows, preds, None)[0]["score"] == expected, name


def test_openfunctions_scorer():
    rows, preds = _rows("openfunctions", [
        ("weather.get(city='Paris', unit='celsius')", 'Sure: weather.get(city="Paris",unit="celsius")'),
        ("weather.get(city='Paris', unit='celsius')", 'weather.get(city="Paris")'),
        ("restaurant.book(people=2)", "my_restaurant.book(people=2)"),  # \b: another name is not the call
        ("not a call", "anything"),  # the authors' script raises on such a reference; here it scores 0
    ])
    assert [s["score"] for s in get_task("openfunctions").score(rows, preds, None)] == [1.0, 0.0, 0.0, 0.0]


def test_refusal_keywords_are_the_authors():
    assert len(advbench.SAFE_KEYWORDS) == 29
    assert advbench.is_safe("I'm sorry, but I cannot help with that.")
    assert advbench.is_safe("As an AI developed to help, no.")
    assert not advbench.is_safe("sorry, here it is")  # case-sensitive, as the authors
    assert not advbench.is_safe("Sure, here is how to do it.")
    rows, preds = _rows("advbench", [(None, "I cannot do that"), (None, "Sure"), (None, None)])
    assert [s["score"] for s in advbench.score(rows, preds, None)] == [1.0, 0.0, 0.0]


def test_prompts_are_the_authors_alpaca_gcg_alpaca_and_gsm8k_infer(engine):
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines() if '"alpaca_gcg"' in line]
    assert golden
    for case in golden:
        assert advbench_jailbreak.prompt({"input": case["instruction"]}, engine.tokenizer, "paper") == case["prompt"]
    raw = [json.loads(line) for line in GOLDEN.read_text().splitlines() if '"template": "alpaca"' in line][0]
    assert advbench.prompt({"input": raw["instruction"]}, engine.tokenizer, "paper") == raw["prompt"]
    infer = [json.loads(line) for line in GOLDEN.read_text().splitlines() if '"template": "gsm8k_infer"' in line][0]
    for name in ("gsm8k", "multiarith"):
        # The tiny model is ChatML, neither Llama-2 nor Llama-3: its Llama layout is named, not made up.
        with pytest.raises(ValueError, match="pass --paper-layout llama2 or llama3"):
            get_task(name).prompt({"input": infer["instruction"]}, engine.tokenizer, "paper")
        assert get_task(name).prompt({"input": infer["instruction"]}, engine.tokenizer, "paper", "llama2") == infer["prompt"]


def test_humaneval_cut_instruction_and_sandboxed_score(tmp_path):
    assert humaneval.cut("\n    return a + b\n\ndef other():\n    pass") == "\n    return a + b"
    assert humaneval.cut("\n    return 1\nprint(f(2))") == "\n    return 1"
    assert humaneval.cut("\n    x = 1\n    return x\n```\nThis works.") == "\n    x = 1\n    return x"
    data = humaneval.load(None, 2)
    assert data.source["kind"] == "package" and len(data.rows) == 2
    problem = data.rows[0]["reference"]
    assert humaneval.instruction(problem).startswith(
        "Write a Python function `has_close_elements(numbers: List[float], threshold: float) -> bool` to solve")
    good = "\n" + problem["canonical_solution"]
    ctx = Context(out=tmp_path)
    scored = humaneval.score(data.rows[:1] * 3, [good, "\n    return True\n", None], ctx)
    assert [s["score"] for s in scored] == [1.0, 0.0, 0.0]
    assert scored[1]["status"].startswith("failed")
    assert ctx.notes[0].startswith("humaneval: sandbox")  # what isolation the programs had


def test_suites_and_unknown_names():
    assert [t.name for t in resolve(None, "quick")] == ["gsm8k", "advbench", "advbench-jailbreak"]
    assert len(resolve(None, "paper")) == 8
    with pytest.raises(ValueError, match="unknown task 'gsm9k'; known tasks: gsm8k, multiarith"):
        resolve("gsm8k,gsm9k", None)
    with pytest.raises(ValueError, match="either --tasks"):
        resolve("gsm8k", "quick")


def test_paper_decoding_is_the_authors():
    from sdft_data import paper
    from sdft_data.spec import Decoding, EvalSpec

    p = paper.DECODING
    assert (p.temperature, p.top_p, p.top_k, p.max_new_tokens) == (0.95, 0.7, 50, 512)
    # The defaults of every command are the paper's decoding; HumanEval alone runs greedily, as their harness did.
    assert EvalSpec.make(model="m", suite="quick", out="o").decoding == Decoding() == p
    assert task_params(get_task("humaneval"), p).temperature == 0
    assert task_params(get_task("gsm8k"), p) == p


# --- the eval run -----------------------------------------------------------------------------

def _eval(engine, out, tasks="gsm8k,advbench", **kw):
    kw.setdefault("max_new_tokens", 6)
    return evaluate(model="tiny", tasks=tasks, out=out, data_dir=str(DATA), engine=engine,
                    progress=False, echo=lambda *_: None, **kw)


def test_eval_writes_results_and_resumes(engine, tmp_path):
    out = tmp_path / "seed"
    results = _eval(engine, out, tasks="gsm8k,advbench,advbench-jailbreak,multiarith", samples=2, limit=3)
    assert set(results) >= {"model", "arm", "dataset", "train", "decoding", "tasks", "limit", "notes"}
    assert results["arm"] == "seed" and results["decoding"]["params"]["temperature"] == 0.95
    gsm = results["tasks"]["gsm8k"]
    assert gsm["version"] == 1 and gsm["rows"] == 3 and gsm["decoding"]["samples"] == 2
    assert len(gsm["per_sample"]) == 2 and gsm["std"] is not None
    assert gsm["data"]["kind"] == "file" and len(gsm["data"]["sha256"]) == 64
    assert results["model"]["revision"].startswith("sha256:")
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["tasks"].keys() == results["tasks"].keys()
    lines = (out / "predictions" / "advbench-jailbreak.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    assert len(lines) == 3 and len(record["predictions"]) == 2 and record["input"]
    # The two samples used different seeds: a resumable run each, with per-row seeds.
    m0 = json.loads((out / "runs" / "gsm8k" / "sample-0" / "manifest.json").read_text())
    m1 = json.loads((out / "runs" / "gsm8k" / "sample-1" / "manifest.json").read_text())
    assert (m0["fingerprint_inputs"]["seed"], m1["fingerprint_inputs"]["seed"]) == (0, 1)
    # Run again: every row is on record, nothing is generated.
    _eval(engine, out, tasks="gsm8k,advbench,advbench-jailbreak,multiarith", samples=2, limit=3)
    m0 = json.loads((out / "runs" / "gsm8k" / "sample-0" / "manifest.json").read_text())
    assert [s["rows"] for s in m0["sessions"]] == [3, 0]
    # Other decoding into the same folder: refused, naming the option, before the model would load.
    with pytest.raises(ValueError, match=r"holds an eval made another way \(gsm8k, sample 0: differs in "
                                         r"--temperature \(0.95 there, 0.0 here\)\)"):
        _eval(engine, out, tasks="gsm8k", temperature=0.0, limit=3)


def test_greedy_is_repeatable_and_samples_need_sampling(engine, tmp_path):
    a = _eval(engine, tmp_path / "a", tasks="advbench", temperature=0.0, limit=2)
    b = _eval(engine, tmp_path / "b", tasks="advbench", temperature=0.0, limit=2)
    pa = (tmp_path / "a" / "predictions" / "advbench.jsonl").read_text()
    assert pa == (tmp_path / "b" / "predictions" / "advbench.jsonl").read_text()
    assert a["tasks"]["advbench"]["decoding"]["params"]["temperature"] == 0 == b["decoding"]["samples"] - 1
    with pytest.raises(ValueError, match=r"--samples > 1 needs sampling \(--temperature above 0\)"):
        _eval(engine, tmp_path / "c", temperature=0.0, samples=2)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--suite", "quick", "--limit", "0"], "'--limit': 0 is not in the range x>=1"),
        (["--tasks", "gsm9k"], "unknown --tasks 'gsm9k'; choose one of: gsm8k, multiarith"),
        (["--suite", "full"], "'full' is not one of 'paper', 'quick', 'small', 'toy'"),
        (["--tasks", "openfunctions"], "pass --data-dir DIR with openfunction/openfunction_test.json"),
        (["--tasks", "gsm8k", "--data-dir", "."], "no data file gsm8k/gsm8k_test.json"),
        (["--tasks", "gsm8k", "--samples", "2", "--temperature", "0"], "--samples > 1 needs sampling"),
        (["--tasks", "gsm8k", "--backend", "tgi", "--data-dir", str(DATA)], "--backend tgi needs at least one --endpoint"),
        (["--tasks", "gsm8k", "--paper", "--temperature", "0"], "--paper sets --temperature 0.95: drop --temperature 0"),
        (["--tasks", "gsm8k", "--paper", "--format", "chat"], "--paper sets --format paper: drop --format chat"),
        (["--tasks", "gsm8k", "--paper", "--max-new-tokens", "8"], "--paper sets --max-new-tokens 512"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tiny_model_dir, tmp_path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["eval", "--model", str(tiny_model_dir), "--out", str(out), *args])
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert "Traceback" not in result.output and not out.exists()


def test_paper_switch_evaluates_in_the_papers_format_and_decoding(tiny_model_dir, tiny_llama2_dir, tmp_path):
    out = tmp_path / "paper"
    args = ["--tasks", "gsm8k", "--limit", "1", "--data-dir", str(DATA), "--paper", "--quiet"]
    result = CliRunner().invoke(main, ["eval", "--model", str(tiny_llama2_dir), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["paper"] == {"mode": True, "matches": True, "differences": []}
    assert results["decoding"]["format"] == "paper" and results["decoding"]["params"] == {k: v for k, v in paper.DECODING.to_dict().items() if k != "stop"}
    assert results["tasks"]["gsm8k"]["prompt_example"].startswith("<<SYS>>\nYou are an expert in math.")
    # A ChatML model has no Llama layout of its own: refused in one line naming --paper-layout, which then
    # renders the layout and says it was forced.
    refused = CliRunner().invoke(main, ["eval", "--model", str(tiny_model_dir), "--out", str(tmp_path / "no"), *args])
    assert refused.exit_code == 1 and "pass --paper-layout llama2 or llama3" in refused.output, refused.output
    assert "Traceback" not in refused.output and not (tmp_path / "no" / "results.json").exists()
    forced = CliRunner().invoke(main, ["eval", "--model", str(tiny_model_dir), "--out", str(tmp_path / "forced"), *args,
                                       "--paper-layout", "llama2"])
    assert forced.exit_code == 0, forced.output
    record = json.loads((tmp_path / "forced" / "results.json").read_text())["paper"]
    assert record == {"mode": True, "matches": False, "differences": [
        "layout llama2 set by --paper-layout on a model that is neither Llama-2 nor Llama-3 (gsm8k)"]}
    # Without it, the results say where they left the paper.
    plain = _eval_cli_greedy(tiny_model_dir, tmp_path / "plain")
    assert plain["paper"]["differences"][0] == "format chat (paper: paper)"


def _eval_cli_greedy(tiny_model_dir, out):
    result = CliRunner().invoke(main, ["eval", "--model", str(tiny_model_dir), "--out", str(out), "--tasks", "gsm8k",
                                       "--limit", "1", "--data-dir", str(DATA), "--temperature", "0",
                                       "--max-new-tokens", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    return json.loads((out / "results.json").read_text())


def test_eval_cli_with_an_adapter_reads_its_train_record(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = tmp_path / "adapter"
    net = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                         LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))
    net.save_pretrained(adapter)
    (adapter / "train_manifest.json").write_text(json.dumps(
        {"responses": "original", "recipe": {"name": "gsm8k", "version": 1}, "data": "org/gsm8k-sdft@v1",
         "base_model": {"name": str(tiny_model_dir)}, "losses": [1.0]}))
    out = tmp_path / "eval"
    result = CliRunner().invoke(main, ["eval", "--model", str(tiny_model_dir), "--adapter", str(adapter), "--tasks",
                                       "gsm8k", "--limit", "2", "--max-new-tokens", "4", "--data-dir", str(DATA),
                                       "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert (results["arm"], results["dataset"]) == ("vanilla", "gsm8k")
    assert results["model"]["model_id"].endswith("+adapter") and "losses" not in results["train"]
    assert results["model"]["extra"]["base_model"]["revision"].startswith("sha256:")
    # Another model into the same folder is refused.
    other = CliRunner().invoke(main, ["eval", "--model", str(tiny_model_dir), "--tasks", "gsm8k", "--limit", "2",
                                      "--data-dir", str(DATA), "--out", str(out)])
    assert other.exit_code != 0 and "holds results of another model" in other.output


# --- AlpacaEval with a loopback OpenAI-compatible judge ------------------------------------------

class _Judge(BaseHTTPRequestHandler):
    """Prefers the output that is not the reference; says nothing useful for "Paris."."""

    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, self.headers.get("Authorization"), body))
        text = body["messages"][1]["content"]
        a = text.split("## Output (a)\n")[1].split("\n\n## Output (b)")[0]
        references = [r["output"] for r in json.loads((DATA / "alpaca_eval.json").read_text())]
        verdict = "I cannot tell." if "Paris." in text else ("Output (b)" if a in references else "Output (a)")
        answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": verdict}}]}
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_alpacaeval_outputs_and_judge_win_rate(engine, tmp_path):
    from sdft_train.tasks.alpacaeval import JUDGE_PROMPT, Judge

    no_judge = _eval(engine, tmp_path / "plain", tasks="alpacaeval")
    assert no_judge["tasks"]["alpacaeval"]["score"] is None
    assert any("no judge given" in n for n in no_judge["notes"])
    outputs = json.loads((tmp_path / "plain" / "alpacaeval" / "outputs.json").read_text())
    assert [set(o) for o in outputs] == [{"instruction", "output", "generator", "dataset"}] * 3

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        judge = Judge(f"http://127.0.0.1:{server.server_port}", "judge-model", token="sk-judge-secret")
        results = _eval(engine, tmp_path / "judged", tasks="alpacaeval", judge=judge)
    finally:
        server.shutdown()
    entry = results["tasks"]["alpacaeval"]
    # The judge always prefers the model's output: every readable verdict is a win, whatever the order.
    assert entry["score"] == 1.0 and entry["scored"] == 2 and entry["judge"]["unreadable"] == 1
    assert entry["judge"]["prompt"] == JUDGE_PROMPT and entry["judge"]["model"] == "judge-model"
    paths = {p for p, _, _ in _Judge.seen}
    assert paths == {"/v1/chat/completions"} and {a for _, a, _ in _Judge.seen} == {"Bearer sk-judge-secret"}
    firsts = {b["messages"][1]["content"].split("## Output (a)\n")[1][:5] for _, _, b in _Judge.seen}
    assert len(firsts) > 1, "the model's output is shown in both positions"
    assert "sk-judge-secret" not in (tmp_path / "judged" / "results.json").read_text()


# --- similarity with a tiny local embedding model ------------------------------------------------

@pytest.mark.slow
def test_similarity_against_the_seed_models_answers(engine, tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoTokenizer, BertConfig, BertModel

    base = tmp_path / "emb-base"
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(base)
    tok.save_pretrained(base)
    SentenceTransformer(modules=[models.Transformer(str(base)), models.Pooling(32, "mean")], device="cpu").save(
        str(tmp_path / "emb"))

    seed = _eval(engine, tmp_path / "seed", tasks="advbench,similarity", limit=3)
    assert seed["tasks"]["similarity"]["score"] is None  # the seed itself: kept for comparison
    same = _eval(engine, tmp_path / "same", tasks="similarity", limit=3, seed_results=tmp_path / "seed",
                 embedding_model=str(tmp_path / "emb"))
    assert same["tasks"]["similarity"]["score"] == pytest.approx(1.0, abs=1e-5)  # same model, same seeds
    other = _eval(engine, tmp_path / "other", tasks="similarity", limit=3, seed=7, seed_results=tmp_path / "seed",
                  embedding_model=str(tmp_path / "emb"))
    assert -1.0 <= other["tasks"]["similarity"]["score"] < 1.0
    assert (tmp_path / "seed" / "runs" / "advbench").is_dir() and not (tmp_path / "seed" / "runs" / "similarity").exists()
    # Which embedding model scored is recorded (a local folder: its content hash), so compare can refuse mixed ones.
    assert same["tasks"]["similarity"]["embedding_model"]["name"] == "emb"
    assert same["tasks"]["similarity"]["embedding_model"]["revision"].startswith("sha256:")
    assert "embedding_model" not in seed["tasks"]["similarity"]


def test_an_embedding_model_that_is_not_one_is_refused_before_anything_runs(engine, tiny_model_dir, tmp_path):
    _eval(engine, tmp_path / "seed", tasks="advbench", limit=2)
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    cases = [(not_a_model, "is not a sentence-transformers folder (no modules.json)"),
             # A chat model would be wrapped in mean pooling by sentence-transformers and give meaningless cosines.
             (tiny_model_dir, "is a causal language model (LlamaForCausalLM), not a sentence-transformers model")]
    for model, message in cases:
        with pytest.raises(ValueError, match=re.escape(message)) as e:
            _eval(engine, tmp_path / "tuned", tasks="advbench,similarity", limit=2, seed_results=tmp_path / "seed",
                  embedding_model=str(model))
        assert "\n" not in str(e.value) and not (tmp_path / "tuned").exists()


def test_similarity_that_cannot_load_its_embedding_model_keeps_the_other_tasks(engine, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    _eval(engine, tmp_path / "seed", tasks="advbench", limit=2)
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)  # the default embedding model is on the Hub: unreachable
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    results = _eval(engine, tmp_path / "tuned", tasks="gsm8k,advbench,similarity", limit=2,
                    seed_results=tmp_path / "seed", embedding_model="sentence-transformers/all-MiniLM-L6-v2")
    written = json.loads((tmp_path / "tuned" / "results.json").read_text())
    assert written["tasks"]["gsm8k"]["score"] is not None and written["tasks"]["advbench"]["score"] is not None
    sim = written["tasks"]["similarity"]
    assert sim["score"] is None and sim["not_scored"].startswith("cannot load the embedding model")
    assert "\n" not in sim["not_scored"] and "embedding_model" not in sim
    assert any(n.startswith("similarity: not scored: cannot load the embedding model") for n in results["notes"])


def test_a_chat_model_on_the_hub_as_embedding_model_is_refused(engine, tiny_model_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants as hc
    from huggingface_hub import HfApi

    from helpers.hub_server import LoopbackHub, hub_env

    _eval(engine, tmp_path / "seed", tasks="advbench", limit=2)
    monkeypatch.setenv("HF_TOKEN", "hf_write")
    monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(tmp_path / "no-saved-token"))
    with LoopbackHub(tokens={"hf_write": "write"}) as hub, hub_env(hub.url, cache_dir=tmp_path / "cache"):
        HfApi().create_repo("org/tiny-chat")
        HfApi().upload_folder(repo_id="org/tiny-chat", folder_path=str(tiny_model_dir))
        results = _eval(engine, tmp_path / "tuned", tasks="advbench,similarity", limit=2,
                        seed_results=tmp_path / "seed", embedding_model="org/tiny-chat")
    sim = results["tasks"]["similarity"]
    assert sim["score"] is None and "is a causal language model (LlamaForCausalLM)" in sim["not_scored"]
    assert results["tasks"]["advbench"]["score"] is not None


def test_answers_cut_at_max_new_tokens_are_counted_per_task(engine, tmp_path):
    # The tiny model's noise rarely ends on EOS: at 3 new tokens nearly every answer is cut.
    results = _eval(engine, tmp_path / "cut", tasks="gsm8k,advbench", limit=3, max_new_tokens=3, temperature=0.0)
    for name in ("gsm8k", "advbench"):
        entry = results["tasks"][name]
        finished = [json.loads(line) for line in (tmp_path / "cut" / entry["predictions"]).read_text().splitlines()]
        assert 0 < entry["truncated"] <= 3 and len(finished) == 3
        assert f"{name}: {entry['truncated']} of 3 answers were cut at max_new_tokens 3" in " ".join(results["notes"])
    written = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert written["tasks"]["gsm8k"]["truncated"] == results["tasks"]["gsm8k"]["truncated"]


def test_tasks_evaluated_in_two_calls_share_one_results_file(engine, tmp_path):
    _eval(engine, tmp_path / "m", tasks="gsm8k", limit=2)
    both = _eval(engine, tmp_path / "m", tasks="advbench", limit=2)
    assert set(both["tasks"]) == {"gsm8k", "advbench"}
    # Made another way (another limit): the earlier task is not carried over.
    with pytest.raises(ValueError, match=r"holds an eval made another way \(advbench, sample 0: differs in --limit"):
        _eval(engine, tmp_path / "m", tasks="advbench", limit=3)
    only = _eval(engine, tmp_path / "m", tasks="advbench-jailbreak", limit=3)
    assert set(only["tasks"]) == {"advbench-jailbreak"}


def test_eval_through_a_served_model_matches_the_local_backend(engine, tiny_model_dir, tmp_path):
    """--backend openai against a loopback OpenAI-compatible server: the same greedy answers as in process."""
    from helpers.engine_server import EngineServer

    local = _eval(engine, tmp_path / "local", tasks="gsm8k,advbench-jailbreak", temperature=0.0, limit=3)
    with EngineServer(tiny_model_dir, served_name="tiny-served") as server:
        served = evaluate(model="tiny-served", backend="openai", endpoints=(server.url,), tokenizer=str(tiny_model_dir),
                          tasks="gsm8k,advbench-jailbreak", out=tmp_path / "served",
                          data_dir=str(DATA), temperature=0.0, limit=3, max_new_tokens=6, progress=False,
                          echo=lambda *_: None)
    assert served["model"]["backend"] == "openai" and served["model"]["model_id"] == "tiny-served"
    for task in ("gsm8k", "advbench-jailbreak"):
        ours = [json.loads(x)["predictions"] for x in (tmp_path / "local" / "predictions" / f"{task}.jsonl").open()]
        theirs = [json.loads(x)["predictions"] for x in (tmp_path / "served" / "predictions" / f"{task}.jsonl").open()]
        assert ours == theirs and all(p[0] for p in ours)
        assert served["tasks"][task]["score"] == local["tasks"][task]["score"]
