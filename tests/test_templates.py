"""Paper format = the authors' bytes: every row of the golden file, through every entry point.

tests/fixtures/golden_authors_prompts.jsonl holds 60 prompts rendered by the
authors' own template code (their LLaMA-Factory fork, with the templates their
main.py registers) with a one-id-per-character tokenizer whose BOS and EOS are
"<s>" and "</s>". Made-up rows, no dataset text.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from sdft_data import templates
from sdft_data.recipes import ALPACA_GCG_USER, ALPACA_SYSTEM, get_recipe

GOLDEN = [json.loads(line) for line in (Path(__file__).parent / "fixtures" / "golden_authors_prompts.jsonl").open()]


class CharTokenizer:
    """What rendering reads from a tokenizer: BOS, EOS, no chat template, a vocabulary without Llama-3 headers."""

    bos_token, eos_token, unk_token_id, chat_template = "<s>", "</s>", 0, None

    def __init__(self, extra: tuple[str, ...] = ()):
        self.vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{t: i + 3 for i, t in enumerate(extra)}}

    def convert_tokens_to_ids(self, token):
        return self.vocab.get(token, self.unk_token_id)


TOK = CharTokenizer()
LLAMA3_TOK = CharTokenizer(extra=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"))


def _id(row):
    return f"{row['template']}-{GOLDEN.index(row)}"


def test_the_golden_file_is_whole():
    assert len(GOLDEN) == 60
    assert {r["template"] for r in GOLDEN} == set(templates._authors_templates())


@pytest.mark.parametrize("row", GOLDEN, ids=_id)
def test_authors_template_renders_the_golden_prompt(row):
    assert templates.render_authors_template(row["template"], row["instruction"], row["response"], TOK) == row["prompt"]


@pytest.mark.parametrize("row", GOLDEN, ids=_id)
def test_training_target_is_the_golden_answer(row):
    layout = templates.authors_template(row["template"]).layout
    target = templates.training_target(row["response"], TOK, "paper", layout=layout)
    if layout == "llama3":
        # The golden file shows the tokenizer's EOS; the authors' Llama-3 templates
        # set replace_eos, so a real run ends the target with <|eot_id|>.
        assert target == row["answer"].removesuffix("</s>") + "<|eot_id|>"
    else:
        assert target == row["answer"]


# Which recipe-level helper gives each of the authors' templates, for which recipes.
RECIPE_USES = {
    "alpaca": [("train", r) for r in ("alpaca", "dolly", "openfunctions", "magicoder")]
    + [("eval", r) for r in ("alpaca", "dolly", "openfunctions", "magicoder")],
    "alpaca_distill_using": [("distill", "alpaca"), ("distill", "dolly")],
    "alpaca_distill_refer": [("distill", "openfunctions"), ("distill", "magicoder")],
    "gsm8k": [("train", "gsm8k")],
    "gsm8k_infer": [("eval", "gsm8k")],
    "gsm8k_distill": [("distill", "gsm8k")],
    "llama3_gsm8k": [("train", "gsm8k")],
    "llama3_gsm8k_infer": [("eval", "gsm8k")],
    "llama3_gsm8k_distill": [("distill", "gsm8k")],
}


def _recipe_prompt(kind, recipe, row, tokenizer, layout=None):
    if kind == "distill":
        # Through the recipe's own columns and reference expression, as the run engine does.
        frame = pl.DataFrame({recipe.prompt_column: [row["instruction"]], recipe.response_column: [row["response"]]})
        instruction, reference = frame.select(recipe.instruction_expr(frame.columns), recipe.reference_expr()).row(0)
        return templates.distill_prompt(recipe, instruction, reference, tokenizer, "paper", layout=layout)
    helper = templates.train_prompt if kind == "train" else templates.eval_prompt
    return helper(recipe, row["instruction"], tokenizer, "paper", layout=layout)


@pytest.mark.parametrize("row", [r for r in GOLDEN if r["template"] in RECIPE_USES], ids=_id)
def test_recipe_prompts_are_the_golden_prompts(row):
    llama3 = row["template"].startswith("llama3_")
    for kind, name in RECIPE_USES[row["template"]]:
        recipe = get_recipe(name)
        # The layout as the user picks it (--paper-layout) and as inferred from the tokenizer.
        explicit = _recipe_prompt(kind, recipe, row, TOK, layout="llama3" if llama3 else "llama2")
        inferred = _recipe_prompt(kind, recipe, row, LLAMA3_TOK if llama3 else TOK)
        assert explicit == inferred == row["prompt"], (kind, name)


@pytest.mark.parametrize("row", [r for r in GOLDEN if r["template"] == "alpaca_gcg"], ids=_id)
def test_advbench_jailbreak_prompt_through_render_turns(row):
    user = ALPACA_GCG_USER.format(instruction=row["instruction"])
    assert templates.render_turns(ALPACA_SYSTEM, user, "", TOK, "paper", layout="alpaca") == row["prompt"]


def test_alpaca_input_column_joins_as_the_authors_do():
    row = next(r for r in GOLDEN if r["template"] == "alpaca_distill_using" and "\n" in r["instruction"])
    first, rest = row["instruction"].split("\n", 1)
    recipe = get_recipe("alpaca")
    frame = pl.DataFrame({"instruction": [first], "input": [rest], "output": [row["response"]]})
    instruction, reference = frame.select(recipe.instruction_expr(frame.columns), recipe.reference_expr()).row(0)
    assert templates.distill_prompt(recipe, instruction, reference, TOK, "paper") == row["prompt"]


def test_layout_follows_the_model_unless_overridden():
    gsm8k = get_recipe("gsm8k")
    assert templates.resolve_layout(gsm8k.paper_layout, TOK) == "llama2"
    assert templates.resolve_layout(gsm8k.paper_layout, LLAMA3_TOK) == "llama3"
    assert templates.resolve_layout(gsm8k.paper_layout, LLAMA3_TOK, "llama2") == "llama2"
    # Alpaca-style recipes keep the Alpaca layout with any model (the authors' Llama-3 runs did).
    assert templates.resolve_layout("alpaca", LLAMA3_TOK, "llama3") == "alpaca"
    with pytest.raises(ValueError, match="choose llama2 or llama3"):
        templates.resolve_layout("llama", TOK, "llama4")
    assert templates.describe(gsm8k, LLAMA3_TOK, "paper")["layout"] == "llama3"
    assert templates.describe(gsm8k, TOK, "paper", layout="llama3")["layout"] == "llama3"


def test_no_bos_token_renders_none():
    class NoBos(CharTokenizer):
        bos_token = None

    row = next(r for r in GOLDEN if r["template"] == "gsm8k")
    assert templates.render_authors_template("gsm8k", row["instruction"], row["response"], NoBos()) == (
        row["prompt"].replace("<s>", "")
    )


def test_real_tokenizer_bos_and_eos(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)  # bos "<s>", eos "<|im_end|>", no Llama-3 headers
    row = next(r for r in GOLDEN if r["template"] == "gsm8k_distill")
    # A ChatML model is neither Llama-2 nor Llama-3: its paper layout is set by hand, and then the bytes are the authors'.
    prompt = templates.distill_prompt(get_recipe("gsm8k"), row["instruction"], row["response"], tok, "paper", layout="llama2")
    assert prompt == row["prompt"]
    assert templates.training_target("ok", tok, "paper", layout="llama", override="llama2") == "ok<|im_end|>"
    assert templates.training_target("ok", tok, "paper", layout="llama", override="llama3") == "ok<|eot_id|>"


def test_chat_format_uses_the_model_template_then_prefill(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    recipe = get_recipe("gsm8k")
    prompt = templates.distill_prompt(recipe, "Q?", "A. The answer is 1.", tok, "chat")
    assert prompt == (
        "<s><|im_start|>system\n" + recipe.distill_system + "<|im_end|>\n"
        "<|im_start|>user\nQ?\n\nA. The answer is 1.<|im_end|>\n<|im_start|>assistant\nGreat! Let's think step by step. "
    )
    assert templates.training_target("ok", tok, "chat") == "ok<|im_end|>"


def test_unknown_format_and_template():
    with pytest.raises(ValueError, match="unknown format"):
        templates.render_turns("s", "u", "", TOK, "raw")
    with pytest.raises(ValueError, match="unknown template 'alpaca2'"):
        templates.authors_template("alpaca2")


# --------------------------------------------------------------------------
# Done when: `sdft-data distill --recipe gsm8k --paper` sends a Llama-2 model the authors' bytes


def _recording_server(tiny_model_dir):
    from helpers.engine_server import EngineServer

    class RecordingServer(EngineServer):
        """The loopback TGI server, keeping every /generate body it receives."""

        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.bodies = []

        async def _tgi_generate(self, request, compat=False):
            self.bodies.append(await request.json())  # aiohttp keeps the body: the real handler reads it again
            return await super()._tgi_generate(request, compat)

    # Echo mode: canned answers, no model; the server's model id is the tokenizer the prompts are rendered with.
    return RecordingServer(echo=True, model_id=str(tiny_model_dir))


def test_paper_mode_sends_a_llama2_model_the_authors_bytes(tiny_llama2_dir, tmp_path):
    from click.testing import CliRunner

    from sdft_data import paper
    from sdft_data.cli import main
    from sdft_data.publish import push

    golden = [r for r in GOLDEN if r["template"] == "gsm8k_distill"]
    source = tmp_path / "gsm8k_train.json"  # the authors' layout: question/answer
    source.write_text(json.dumps([{"question": r["instruction"], "answer": r["response"]} for r in golden]))
    with _recording_server(tiny_llama2_dir) as server:  # "<s>" BOS, an [INST] chat template: Llama-2's layout
        result = CliRunner().invoke(main, [
            "distill", "--recipe", "gsm8k", "--source", str(source), "--paper", "--backend", "tgi",
            "--endpoint", server.url, "--out", str(tmp_path / "run"),
        ])
        assert result.exit_code == 0, result.output
        bodies = list(server.bodies)
    assert sorted(b["inputs"] for b in bodies) == sorted(r["prompt"] for r in golden)
    for body in bodies:
        p = body["parameters"]
        assert (p["do_sample"], p["temperature"], p["top_p"], p["top_k"], p["max_new_tokens"]) == (True, 0.95, 0.7, 50, 512)

    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    inputs = manifest["fingerprint_inputs"]
    assert (inputs["template"]["format"], inputs["template"]["layout"], inputs["rules"]) == ("paper", "llama2", "paper")
    assert inputs["recipe"]["column_layout"] == "hub/authors"
    assert manifest["paper"] == {"mode": True, "layout": "llama2", "differences": []}
    assert manifest["check"]["rules"] == "paper"
    assert inputs["generation"] == {**paper.DECODING.to_dict()}

    push(tmp_path / "run", "org/gsm8k-sdft", local=tmp_path / "published", allow_no_rewrites=True)
    card = next((tmp_path / "published").rglob("README.md")).read_text()
    assert "| paper settings | yes: the authors' prompts, decoding and acceptance rules (`--paper`) |" in card
    assert "| prompt format | paper (llama2 layout) |" in card
    assert "Checked with the `paper` rule set" in card


def test_paper_switch_changes_exactly_the_listed_settings(tiny_model_dir, tmp_path):
    from click.testing import CliRunner

    from sdft_data.cli import main
    from sdft_data.publish import push

    source = tmp_path / "alpaca.json"
    source.write_text(json.dumps([{"instruction": "Name a color.", "input": "", "output": "Red."}]))
    manifests = {}
    with _recording_server(tiny_model_dir) as server:
        for name, extra in (("ours", []), ("paper", ["--paper"])):
            result = CliRunner().invoke(main, [
                "distill", "--recipe", "alpaca", "--source", str(source), "--backend", "tgi", "--endpoint", server.url,
                "--out", str(tmp_path / name), *extra,
            ])
            assert result.exit_code == 0, result.output
            manifests[name] = json.loads((tmp_path / name / "manifest.json").read_text())
        # An explicit option that contradicts --paper is refused, with nothing written.
        result = CliRunner().invoke(main, [
            "distill", "--recipe", "alpaca", "--source", str(source), "--backend", "tgi", "--endpoint", server.url,
            "--out", str(tmp_path / "both"), "--paper", "--temperature", "0.7",
        ])
    assert result.exit_code == 1
    assert "--paper sets --temperature 0.95: drop --temperature 0.7" in result.output
    assert not (tmp_path / "both").exists()

    ours, theirs = (manifests[k]["fingerprint_inputs"] for k in ("ours", "paper"))
    changed = {k for k in ours if ours[k] != theirs[k]}
    # Decoding defaults are the paper's: only the format and the rules set it apart.
    assert changed == {"template", "rules"}
    keys = set(ours["template"]) | set(theirs["template"])
    assert {k for k in keys if ours["template"].get(k) != theirs["template"].get(k)} == {
        "format", "layout", "chat_template_sha256", "example", "user", "system_in"}
    # The chat format's user turn holds the text alone; the paper format keeps the authors' raw-text markup.
    assert (ours["template"]["user"], theirs["template"]["user"]) == (
        "{instruction}\n\nReference answer:\n{response}",
        "### Instruction:\n{instruction}\n\n### Reference Answer:\n{response}\n\n### Response:\n")
    assert manifests["ours"]["paper"]["differences"] == ["format chat (paper: paper)", "rules default (paper: paper)"]
    push(tmp_path / "ours", "org/alpaca-sdft", local=tmp_path / "published", allow_no_rewrites=True)
    card = next((tmp_path / "published").rglob("README.md")).read_text()
    assert "| paper settings | no: format chat (paper: paper); rules default (paper: paper) |" in card


# --- the chat format on a chat model: no raw-text scaffolding; the toy world's rendering unchanged --------------

def test_chat_user_turns_hold_the_text_without_the_raw_text_markup(tiny_model_dir):
    from transformers import AutoTokenizer

    from sdft_data.recipes import DISTILL_USING_SYSTEM, recipe_names
    from sdft_train.tasks import advbench_jailbreak

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    for name in recipe_names():
        recipe = get_recipe(name)
        prompts = [templates.distill_prompt(recipe, "Name a color.", "Red.", tok, "chat"),
                   templates.train_prompt(recipe, "Name a color.", tok, "chat"),
                   templates.eval_prompt(recipe, "Name a color.", tok, "chat")]
        if name == "toy":  # its seed model is pretrained on the paper's markup inside its chat template
            assert all("### Instruction:\nName a color.\n\n" in p for p in prompts)
            continue
        assert not any("###" in p for p in prompts), name
    alpaca = get_recipe("alpaca")
    assert templates.distill_prompt(alpaca, "Name a color.", "Red.", tok, "chat") == (
        f"<s><|im_start|>system\n{DISTILL_USING_SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nName a color.\n\nReference answer:\nRed.<|im_end|>\n<|im_start|>assistant\n")
    assert templates.train_prompt(alpaca, "Name a color.", tok, "chat") == (
        f"<s><|im_start|>system\n{ALPACA_SYSTEM}<|im_end|>\n<|im_start|>user\nName a color.<|im_end|>\n"
        "<|im_start|>assistant\n")
    jailbreak = advbench_jailbreak.prompt({"input": "Do X"}, tok, "chat")
    assert "Do X describing.\\ + similarlyNow" in jailbreak and "###" not in jailbreak


def test_the_toy_worlds_prompts_are_byte_identical_to_the_paper_markup_in_its_chat_template(tiny_model_dir):
    """The toy seed model is pretrained on these exact prompts (README's demo table): they must not move."""
    from transformers import AutoTokenizer

    from sdft_data.recipes import ALPACA_DISTILL_USER, ALPACA_USER, DISTILL_USING_SYSTEM

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    toy = get_recipe("toy")
    chat = lambda system, user: tok.apply_chat_template(  # noqa: E731
        [{"role": "system", "content": system}, {"role": "user", "content": user}], tokenize=False,
        add_generation_prompt=True)
    i, r = "How do I make a kite from clay?", "kite: clay, 35 min."
    assert templates.distill_prompt(toy, i, r, tok, "chat") == chat(
        DISTILL_USING_SYSTEM, ALPACA_DISTILL_USER.format(instruction=i, response=r))
    assert templates.train_prompt(toy, i, tok, "chat") == chat(ALPACA_SYSTEM, ALPACA_USER.format(instruction=i))
    assert toy.version == 1


def test_a_templates_default_system_prompt_is_recorded(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert templates.default_system_prompt(tok) is None
    # SmolLM2's own template: a default system turn when the conversation has none.
    tok.chat_template = (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
        "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    described = templates.describe(get_recipe("alpaca"), tok, "chat")
    assert described["chat_template_default_system"] == "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
    assert described["system_in"] == "system turn" and "SmolLM" not in described["example"]


def test_paper_format_on_a_chatml_model_is_refused_unless_its_layout_is_named(tiny_model_dir, tmp_path):
    from click.testing import CliRunner

    from sdft_data.cli import main

    golden = [r for r in GOLDEN if r["template"] == "gsm8k_distill"][:2]
    source = tmp_path / "gsm8k_train.json"
    source.write_text(json.dumps([{"question": r["instruction"], "answer": r["response"]} for r in golden]))
    with _recording_server(tiny_model_dir) as server:  # ChatML with "<s>": neither Llama-2 nor Llama-3
        base = ["distill", "--recipe", "gsm8k", "--source", str(source), "--paper", "--backend", "tgi",
                "--endpoint", server.url]
        refused = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "no")])
        forced = CliRunner().invoke(main, [*base, "--out", str(tmp_path / "run"), "--paper-layout", "llama2"])
        sent = [b["inputs"] for b in server.bodies]
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "pass --paper-layout llama2 or llama3" in refused.output and not (tmp_path / "no").exists()
    assert forced.exit_code == 0, forced.output
    assert sorted(sent) == sorted(r["prompt"] for r in golden), "the named layout is rendered byte for byte"
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    template = manifest["fingerprint_inputs"]["template"]
    assert (template["layout"], template["layout_from"], template["model_layout"]) == ("llama2", "--paper-layout", None)
    assert manifest["paper"] == {"mode": False, "layout": "llama2", "differences": [
        "layout llama2 set by --paper-layout on a model that is neither Llama-2 nor Llama-3"]}
