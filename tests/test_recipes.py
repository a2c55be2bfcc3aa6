"""Each recipe renders exactly the paper's strings, and recipes are looked up by name."""

import polars as pl
import pytest

from sdft_data import templates
from sdft_data.recipes import UnknownRecipe, custom_recipe, get_recipe, recipe_names


class _Tok:
    """Just what paper-format rendering reads from a tokenizer."""

    bos_token = "<s>"


def _render(name, row, fmt="paper"):
    recipe = get_recipe(name)
    frame = pl.DataFrame([row])
    instruction, reference = frame.select(recipe.instruction_expr(frame.columns), recipe.reference_expr()).row(0)
    return templates.render(recipe, instruction, reference, _Tok(), fmt)


def test_alpaca_paper_prompt_is_alpaca_distill_using():
    row = {"instruction": " Rewrite the sentence. ", "input": "A salesman is here.", "output": "A salesperson is here. "}
    assert _render("alpaca", row) == (
        "<s>Below are an instruction that describes a task along with a reference answer. "
        "Using the reference answer as a guide, write your own response.\n\n"
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
        "<s>Below are an instruction that describes a task along with a reference answer. "
        "Refer to the reference answer and write your own response.\n\n"
        "### Instruction:\nDo it.\n\n### Reference Answer:\ndone()\n\n### Response:\n"
    )


def test_gsm8k_paper_prompt_normalises_and_prefills():
    row = {"question": "Lena baked 48 rolls on Monday and half as many on Tuesday. How many?",
           "answer": "On Tuesday she baked 48/2 = <<48/2=24>>24.\nIn total 48+24 = <<48+24=72>>72.\n#### 72"}
    assert _render("gsm8k", row) == (
        "<s>[INST] <<SYS>>\nYou are an expert in math. Below are a math question and its reference answer. "
        "Refer to the reference answer and write a response that appropriately answers the question.\n<</SYS>>\n\n"
        "Lena baked 48 rolls on Monday and half as many on Tuesday. How many?\n\n"
        "On Tuesday she baked 48/2 = 24.\nIn total 48+24 = 72.\nThe answer is 72. [/INST] Great! Let's think step by step. "
    )


def test_gsm8k_normalised_answers_pass_through():
    recipe = get_recipe("gsm8k")
    text = "Lena baked 48/2 = 24 rolls on Tuesday.\nThe answer is 72."
    assert pl.DataFrame({"answer": [text]}).select(recipe.reference_expr()).item() == text


def test_chat_format_uses_the_model_template_then_prefill(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    recipe = get_recipe("gsm8k")
    prompt = templates.render(recipe, "Q?", "A. The answer is 1.", tok, "chat")
    assert prompt == (
        "<s><|im_start|>system\n" + recipe.distill_system + "<|im_end|>\n"
        "<|im_start|>user\nQ?\n\nA. The answer is 1.<|im_end|>\n<|im_start|>assistant\nGreat! Let's think step by step. "
    )


def test_unknown_recipe_lists_known_ones():
    with pytest.raises(UnknownRecipe, match="known recipes: alpaca, dolly, gsm8k, magicoder, openfunctions"):
        get_recipe("gsm9k")
    assert recipe_names() == ["alpaca", "dolly", "gsm8k", "magicoder", "openfunctions"]


def test_custom_recipe_rejects_unknown_template_and_check():
    with pytest.raises(ValueError, match="unknown template"):
        custom_recipe(prompt_column="q", response_column="a", template="nope")
    with pytest.raises(ValueError, match="unknown check"):
        custom_recipe(prompt_column="q", response_column="a", check="nope")
    assert custom_recipe(prompt_column="q", response_column="a", template="refer").distill_system.endswith(
        "Refer to the reference answer and write your own response."
    )
