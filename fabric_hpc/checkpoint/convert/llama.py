"""Megatron-core <-> Hugging Face names for Llama-family models, as recipes.

Megatron-core (GPT model with the transformer-engine layer spec) keeps q, k and v in one
``linear_qkv`` tensor laid out per KV group ([q heads of the group, k, v]), gate and up in one
``linear_fc1`` ([gate; up]) and the pre-attention / pre-MLP norms inside the following linear
layer (``layer_norm_weight``). Hugging Face Llama keeps them separate.
"""

from __future__ import annotations

from fabric_hpc.checkpoint.convert.recipe import Recipe

L = "decoder.layers.{i}."
H = "model.layers.{i}."
_PAIRS = [  # (megatron, hugging face) per layer, besides the fused projections
    ("self_attention.linear_proj.weight", "self_attn.o_proj.weight"),
    ("self_attention.linear_qkv.layer_norm_weight", "input_layernorm.weight"),
    ("mlp.linear_fc1.layer_norm_weight", "post_attention_layernorm.weight"),
    ("mlp.linear_fc2.weight", "mlp.down_proj.weight"),
]
_GLOBAL = [("embedding.word_embeddings.weight", "model.embed_tokens.weight"),
           ("decoder.final_layernorm.weight", "model.norm.weight"),
           ("output_layer.weight", "lm_head.weight")]


def _rules(pairs: list[tuple[str, str]]) -> list[dict[str, str]]:
    import re
    out = []
    for a, b in pairs:
        pa = "^" + re.escape(a).replace(re.escape("{i}"), r"(\d+)") + "$"
        out.append({"pattern": pa, "replace": b.replace("{i}", r"\1")})
    return out


def megatron_to_hf(heads: int, kv_heads: int) -> Recipe:
    """Recipe: Megatron-core Llama names and fused projections -> Hugging Face LlamaForCausalLM."""
    return Recipe.model_validate({
        "rename": _rules([(L + a, H + b) for a, b in _PAIRS] + _GLOBAL),
        "split_qkv": [{"fused": L + "self_attention.linear_qkv.weight", "q": H + "self_attn.q_proj.weight",
                       "k": H + "self_attn.k_proj.weight", "v": H + "self_attn.v_proj.weight",
                       "heads": heads, "kv_heads": kv_heads, "layout": "grouped"}],
        "split": [{"fused": L + "mlp.linear_fc1.weight", "parts": [H + "mlp.gate_proj.weight", H + "mlp.up_proj.weight"]}],
    })


def hf_to_megatron(heads: int, kv_heads: int) -> Recipe:
    """Recipe: Hugging Face LlamaForCausalLM -> Megatron-core names and fused projections."""
    return Recipe.model_validate({
        "rename": _rules([(H + b, L + a) for a, b in _PAIRS] + [(b, a) for a, b in _GLOBAL]),
        "fuse_qkv": [{"q": H + "self_attn.q_proj.weight", "k": H + "self_attn.k_proj.weight",
                      "v": H + "self_attn.v_proj.weight", "into": L + "self_attention.linear_qkv.weight",
                      "heads": heads, "kv_heads": kv_heads, "layout": "grouped"}],
        "fuse": [{"parts": [H + "mlp.gate_proj.weight", H + "mlp.up_proj.weight"], "into": L + "mlp.linear_fc1.weight"}],
    })
