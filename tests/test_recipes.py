"""Each recipe renders the paper's strings, reads both the Hub's and the authors' column layouts, and is looked up by name."""

import json

import polars as pl
import pytest

from sdft_data import templates
from sdft_data.recipes import UnknownRecipe, custom_recipe, get_recipe, recipe_names


class _Tok:
    """Just what paper-format rendering reads from a tokenizer."""

    bos_token, eos_token, unk_token_id = "<s>", "</s>", 0

    def convert_tokens_to_ids(self, token):
        return 0


def _render(name, row, fmt="paper"):
    recipe = get_recipe(name).for_columns(list(row))
    frame = pl.DataFrame([row])
    instruction, reference = frame.select(recipe.instruction_expr(frame.columns), recipe.reference_expr()).row(0)
    return templates.distill_prompt(recipe, instruction, reference, _Tok(), fmt)


def test_alpaca_paper_prompt_is_alpaca_distill_using():
    row = {"instruction": " Rewrite the sentence. ", "input": "A salesman is here.", "output": "A salesperson is here. "}
    assert _render("alpaca", row) == (
        "Below are an instruction that describes a task along with a reference answer. "
        "Using the reference answer as a guide, write your own response."
        "### Instruction:\nRewrite the sentence.\nA salesman is here.\n\n"
        "### Reference Answer:\nA salesperson is here.\n\n### Response:\n"
    )


def test_alpaca_empty_input_adds_no_newline():
    row = {"instruction": "Name a color.", "input": "", "output": "Red."}
    assert "### Instruction:\nName a color.\n\n### Reference Answer:\nRed.\n\n" in _render("alpaca", row)


def test_dolly_uses_context_as_input():
    row = {"instruction": "When?", "context": "In 2000.", "response": "2000.", "category": "closed_qa"}
    assert "### Instruction:\nWhen?\nIn 2000.\n\n### Reference Answer:\n2000.\n\n### Response:\n" in _render("dolly", row)


@pytest.mark.parametrize("name", ["magicoder", "openfunctions"])
def test_code_and_functions_use_alpaca_distill_refer(name):
    recipe = get_recipe(name)
    row = {recipe.prompt_column: "Do it.", recipe.response_column: "done()"}
    assert _render(name, row) == (
        "Below are an instruction that describes a task along with a reference answer. "
        "Refer to the reference answer and write your own response."
        "### Instruction:\nDo it.\n\n### Reference Answer:\ndone()\n\n### Response:\n"
    )


def test_gsm8k_paper_prompt_normalises_and_prefills():
    row = {"question": "Lena baked 48 rolls on Monday and half as many on Tuesday. How many?",
           "answer": "On Tuesday she baked 48/2 = <<48/2=24>>24.\nIn total 48+24 = <<48+24=72>>72.\n#### 72"}
    assert _render("gsm8k", row) == (
        "<<SYS>>\nYou are an expert in math. Below are a math question and its reference answer. "
        "Refer to the reference answer and write a response that appropriately answers the question.\n<</SYS>>\n\n"
        "<s>[INST] Lena baked 48 rolls on Monday and half as many on Tuesday. How many?\n\n"
        "On Tuesday she baked 48/2 = 24.\nIn total 48+24 = 72.\nThe answer is 72. [/INST] Great! Let's think step by step. "
    )


def test_gsm8k_normalised_answers_pass_through():
    recipe = get_recipe("gsm8k")
    text = "Lena baked 48/2 = 24 rolls on Tuesday.\nThe answer is 72."
    assert pl.DataFrame({"answer": [text]}).select(recipe.reference_expr()).item() == text


# --------------------------------------------------------------------------
# Column layouts: each recipe reads a small fixture in every layout it knows

LAYOUT_FIXTURES = {
    "alpaca": {"hub/authors": {"instruction": "Translate.", "input": "Good morning.", "output": "Bonjour."}},
    "dolly": {
        "hub": {"instruction": "Translate.", "context": "Good morning.", "response": "Bonjour.", "category": "qa"},
        "authors": {"instruction": "Translate.", "input": "Good morning.", "output": "Bonjour."},
    },
    "gsm8k": {"hub/authors": {"question": "2 + 2?", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"}},
    "openfunctions": {"authors": {"instruction": "Make a timestamp.", "output": "pyarrow.Timestamp(unit='s')"}},
    "magicoder": {
        "hub": {"problem": "Square x.", "solution": "```python\ndef f(x):\n    return x * x\n```", "lang": "python"},
        "authors": {"instruction": "Square x.", "output": "```python\ndef f(x):\n    return x * x\n```"},
    },
}


def test_every_recipe_has_layout_fixtures():
    # The paper's recipes (other built-in recipes, like the toy world's, bring their own tests).
    assert set(LAYOUT_FIXTURES) == {"alpaca", "dolly", "gsm8k", "magicoder", "openfunctions"} <= set(recipe_names())
    for name, layouts in LAYOUT_FIXTURES.items():
        assert set(layouts) == {lay.name for lay in get_recipe(name).layouts}, name


@pytest.mark.parametrize("name, layout", [(n, lay) for n, lays in LAYOUT_FIXTURES.items() for lay in lays])
def test_recipe_reads_each_layout(name, layout, tmp_path):
    row = LAYOUT_FIXTURES[name][layout]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([row, row]))
    frame = pl.read_json(path)
    recipe = get_recipe(name).for_columns(frame.columns)
    assert recipe.layout_name == layout
    assert recipe.describe()["column_layout"] == layout
    instruction, reference = frame.select(recipe.instruction_expr(frame.columns), recipe.reference_expr()).row(0)
    expected_instruction = {"alpaca": "Translate.\nGood morning.", "dolly": "Translate.\nGood morning.",
                            "gsm8k": "2 + 2?", "openfunctions": "Make a timestamp.", "magicoder": "Square x."}[name]
    assert instruction == expected_instruction
    # GSM8K normalises its answers; every other recipe's reference is the response column, stripped.
    expected_reference = {"gsm8k": "2 + 2 = 4\nThe answer is 4."}.get(name, str(row[recipe.response_column]).strip())
    assert reference == expected_reference and reference
    # The layout round-trips through the manifest description.
    assert get_recipe(name).with_layout(layout) == recipe


def test_a_source_with_no_known_layout_names_what_was_tried():
    with pytest.raises(ValueError, match=r"hub: instruction/response; authors: instruction/output.*columns found: q, a"):
        get_recipe("dolly").for_columns(["q", "a"])
    with pytest.raises(ValueError, match="no column layout 'nope'"):
        get_recipe("dolly").with_layout("nope")


# --------------------------------------------------------------------------


def test_unknown_recipe_lists_known_ones():
    with pytest.raises(UnknownRecipe, match="known recipes: alpaca, dolly, gsm8k, magicoder, openfunctions"):
        get_recipe("gsm9k")
    assert recipe_names()[:5] == ["alpaca", "dolly", "gsm8k", "magicoder", "openfunctions"]


def test_custom_recipe_rejects_unknown_template_and_check():
    with pytest.raises(ValueError, match="unknown template"):
        custom_recipe(prompt_column="q", response_column="a", template="nope")
    with pytest.raises(ValueError, match="unknown check"):
        custom_recipe(prompt_column="q", response_column="a", check="nope")
    assert custom_recipe(prompt_column="q", response_column="a", template="refer").distill_system.endswith(
        "Refer to the reference answer and write your own response."
    )
    assert custom_recipe(prompt_column="q", response_column="a", check="math").check is get_recipe("gsm8k").check


def test_magicoder_keeps_python_rows_unless_told(tiny_model_dir, tmp_path):
    from click.testing import CliRunner

    from sdft_data.cli import main
    from helpers.engine_server import EngineServer

    rows = [{"problem": f"Task {i}.", "solution": "```\nx\n```", "lang": lang}
            for i, lang in enumerate(["python", "rust", "python", "go", "python"])]
    hub = tmp_path / "oss.json"
    hub.write_text(json.dumps(rows))
    authors = tmp_path / "magicoder_train.json"
    authors.write_text(json.dumps([{"instruction": r["problem"], "output": r["solution"]} for r in rows]))

    def distill(source, out, *extra):
        result = CliRunner().invoke(main, ["distill", "--recipe", "magicoder", "--source", str(source), "--backend", "tgi",
                                           "--endpoint", server.url, "--out", str(tmp_path / out), *extra])
        assert result.exit_code == 0, result.output
        manifest = json.loads((tmp_path / out / "manifest.json").read_text())
        kept = pl.read_parquet(tmp_path / out / "source.parquet")["problem" if source == hub else "instruction"].to_list()
        return manifest["fingerprint_inputs"], kept

    with EngineServer(echo=True, model_id=str(tiny_model_dir)) as server:
        inputs, kept = distill(hub, "python", "--limit", "2")
        assert kept == ["Task 0.", "Task 2."]  # the first two Python rows
        assert inputs["recipe"]["row_filter"] == {"lang": "python"} and inputs["source"]["rows"] == 2
        inputs, kept = distill(hub, "rust", "--lang", "rust")
        assert kept == ["Task 1."]
        inputs, kept = distill(hub, "all", "--lang", "all")
        assert len(kept) == 5 and inputs["recipe"]["row_filter"] is None
        # The authors' layout has no `lang` column: read whole, and recorded as unfiltered.
        inputs, kept = distill(authors, "authors")
        assert len(kept) == 5 and inputs["recipe"]["row_filter"] is None
        assert inputs["recipe"]["column_layout"] == "authors"
        refused = CliRunner().invoke(main, ["distill", "--recipe", "alpaca", "--source", str(hub), "--lang", "go",
                                            "--backend", "tgi", "--endpoint", server.url, "--out", str(tmp_path / "x")])
    assert refused.exit_code == 1 and "--lang is for recipes that select rows by language" in refused.output


def test_shipped_samples_are_what_the_generator_makes(tmp_path):
    """sdft_data/samples/{gsm8k_train.jsonl, alpaca_train.jsonl, eval/} come from sdft_data.sampledata, byte for byte."""
    from pathlib import Path

    from sdft_data import sampledata
    shipped = Path(sampledata.__file__).parent / "samples"
    for path in sampledata.build(tmp_path):
        assert (shipped / path.relative_to(tmp_path)).read_bytes() == path.read_bytes(), path.name
    rows = [json.loads(line) for line in (shipped / "gsm8k_train.jsonl").read_text().splitlines()]
    test = json.loads((shipped / "eval" / "gsm8k" / "gsm8k_test.json").read_text())
    assert len(rows) == 128 and len(test) == 64
    assert not {r["question"] for r in rows} & {r["question"] for r in test}
    # Every reference carries its answer in the recipe's form: the check can read it.
    from sdft_data.recipes.gsm8k import find_last_integer

    recipe = get_recipe("gsm8k")
    frame = pl.DataFrame(rows).select(recipe.reference_expr())
    for row, reference in zip(rows, frame["reference"]):
        assert reference.endswith(f"The answer is {row['answer'].rpartition('#### ')[2]}.")
        assert find_last_integer(reference) == row["answer"].rpartition("#### ")[2]
