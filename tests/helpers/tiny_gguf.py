"""Write a tiny transformers Llama folder as a GGUF file, as llama.cpp's converter lays one out.

The tests need a GGUF (the format the real SmolLM2 wheel ships) small enough to
make in a second: this writes the tiny model of sdft_data.tiny with the `gguf`
package's own writer. Weights go in F32 or quantized (Q4_1, Q8_0) by
gguf.quants; norms stay F32 as llama.cpp keeps them. Q and K projections are
permuted the way llama.cpp's convert_hf_to_gguf.py permutes them (transformers
undoes it on load). The byte-level BPE tokenizer goes in as a "gpt2" vocabulary
with its merges and special tokens, and the chat template as
tokenizer.chat_template.

    write_gguf(tiny_model_dir, tmp_path / "tiny.Q4_1.gguf", "Q4_1")
"""

from __future__ import annotations

import json
from pathlib import Path


def _permute(weights, n_head: int, n_head_kv: int | None = None):
    # llama.cpp's convert_hf_to_gguf.py LlamaModel.permute
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_gguf(model_dir: str | Path, path: str | Path, qtype: str = "F32", *, name: str = "tiny",
               hub_id: str | None = None) -> Path:
    """Write the Llama model in `model_dir` (save_pretrained layout) to the GGUF file `path`. Returns `path`."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    model_dir, path = Path(model_dir), Path(path)
    config = json.loads((model_dir / "config.json").read_text())
    tensors = load_file(str(model_dir / "model.safetensors"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    quant = gguf.GGMLQuantizationType[qtype]
    file_type = {"F32": gguf.LlamaFileType.ALL_F32, "Q4_1": gguf.LlamaFileType.MOSTLY_Q4_1,
                 "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[qtype]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    if hub_id:
        writer.add_string("general.source.huggingface.repository", hub_id)
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(config["hidden_size"] // heads)
    writer.add_rope_freq_base(float(config.get("rope_parameters", {}).get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(file_type)

    vocab = tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    special = set(tokenizer.all_special_tokens)
    merges = [" ".join(m) if isinstance(m, (list, tuple)) else m
              for m in json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in special else 1 for t in tokens])  # 3: control (special) tokens
    writer.add_token_merges(merges)
    for add, tok_id in ((writer.add_bos_token_id, tokenizer.bos_token_id), (writer.add_eos_token_id, tokenizer.eos_token_id),
                        (writer.add_pad_token_id, tokenizer.pad_token_id)):
        if tok_id is not None:
            add(tok_id)
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)

    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    for key, data in tensors.items():
        if key == "lm_head.weight" and config.get("tie_word_embeddings"):
            continue
        if key.startswith("model.layers."):
            layer, module = key.split(".")[2], ".".join(key.split(".")[3:-1])
            out = f"blk.{layer}.{per_layer[module]}.weight"
        else:
            out = names[key]
        data = data.astype(np.float32)
        if ".attn_q." in out:
            data = _permute(data, heads, heads)
        elif ".attn_k." in out:
            data = _permute(data, heads, kv_heads)
        if data.ndim == 2 and quant != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(out, gguf.quants.quantize(data, quant), raw_dtype=quant)
        else:
            writer.add_tensor(out, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_wheel(folder: str | Path, package: str, version: str, members: dict[str, Path]) -> Path:
    """A minimal wheel (a zip with dist-info) holding `members` {path in the wheel: file}, for pip download."""
    import zipfile

    dist = package.replace("-", "_")
    wheel = Path(folder) / f"{dist}-{version}-py3-none-any.whl"
    wheel.parent.mkdir(parents=True, exist_ok=True)
    info = f"{dist}-{version}.dist-info"
    with zipfile.ZipFile(wheel, "w") as zf:
        for arcname, file in members.items():
            zf.write(file, arcname)
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\nLicense: Apache-2.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: sdft-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{info}/RECORD", "")
    return wheel
