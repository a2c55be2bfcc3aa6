"""A tiny random chat model, built offline in seconds.

`make demo` and the tests need a real transformers model with a real tokenizer
and chat template, but no network. This builds one: a small Llama-architecture
model with random (seeded) weights and a byte-level BPE tokenizer trained on the
fly. Its text is gibberish; everything around it (tokenisation, chat template,
batching, generation, saving and loading) is the real thing.
"""

from __future__ import annotations

from pathlib import Path

# ChatML-style: simple, widely used, and it lets a prefill continue the
# assistant turn (the generation prompt ends right where the answer starts).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Llama-2-chat's layout ([INST] turns, <<SYS>> block), for a tiny stand-in of a Llama-2 model: the paper
# format infers the Llama-2 layout from it (sdft_data.templates.model_layout).
LLAMA2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'] + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

SPECIAL_TOKENS = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]

# Training text for the tokenizer: the words our prompts are made of, so that
# prompts tokenize to a realistic number of tokens rather than to raw bytes.
_CORPUS = [
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
    "Below are an instruction that describes a task along with a reference answer.",
    "Using the reference answer as a guide, write your own response.",
    "Refer to the reference answer and write your own response.",
    "You are an expert in math. Below are a math question and its reference answer.",
    "Great! Let's think step by step. The answer is 72.",
    "### Instruction:\n### Reference Answer:\n### Response:\n",
    "She sold 48 clips in April and half as many in May. How many clips did she sell?",
    "Here is a Python function:\n```python\ndef add(a, b):\n    return a + b\n```",
    "I have implemented the function. The function call is numpy.array(object=[1, 2, 3]).",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 + - * / = , . ? !",
]


def build_tiny_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    vocab_size: int = 512,
    seed: int = 0,
    corpus: list[str] | None = None,
    chat_template: str = CHAT_TEMPLATE,
) -> Path:
    """Build and save a tiny random Llama chat model with its tokenizer to `out_dir`.

    Defaults give a ~0.1M-parameter model for tests; `hidden_size=256,
    num_layers=8` gives ~8M parameters for benchmarks. `corpus` adds tokenizer
    training text (with a larger `vocab_size`, prompts then tokenize to
    realistic lengths). `chat_template`: ChatML by default, or
    LLAMA2_CHAT_TEMPLATE for a stand-in of a Llama-2 model. Returns the folder.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4 + list(corpus or []), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "</s>"],
        padding_side="left",
        model_max_length=2048,
    )
    tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(out)

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 4,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        # A wide init makes greedy text vary with the prompt (the default
        # 0.02 collapses to one repeated token), so tests compare real text.
        initializer_range=0.5,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    return out
