"""Model shapes for the PyTorch reference engine (no torch import here).

A :class:`LlamaSpec` is the shape of a Llama-style decoder (RMSNorm, RoPE, grouped-query
attention, SwiGLU). It is read from a Hugging Face ``config.json`` (``LlamaForCausalLM``) or taken
from a named preset in :data:`PRESETS`; :meth:`LlamaSpec.hf_config` writes the ``config.json``
that ``transformers.LlamaConfig`` reads back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from fabric_hpc.errors import ConfigError

__all__ = ["PRESETS", "LlamaSpec", "hf_weight_names"]

ARCHITECTURE = "LlamaForCausalLM"


@dataclass(frozen=True, slots=True)
class LlamaSpec:
    """The shape of a Llama-style decoder."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int = 0  # 0 -> hidden_size // num_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    tie_word_embeddings: bool = False
    eos_token_id: int | None = 2

    def __post_init__(self) -> None:
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.hidden_size // max(self.num_heads, 1))
        bad = [n for n in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                           "num_heads", "num_kv_heads", "head_dim") if getattr(self, n) < 1]
        if bad:
            raise ConfigError(f"model shape: {', '.join(bad)} must be >= 1")
        if self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model shape: num_heads {self.num_heads} is not a multiple of "
                              f"num_kv_heads {self.num_kv_heads} (grouped-query attention)")
        if self.head_dim % 2:
            raise ConfigError(f"model shape: head_dim {self.head_dim} must be even (RoPE)")

    @property
    def group(self) -> int:
        """Query heads per KV head."""
        return self.num_heads // self.num_kv_heads

    def param_count(self, *, embeddings: bool = True) -> int:
        h, f, d = self.hidden_size, self.intermediate_size, self.head_dim
        attn = h * d * (self.num_heads + 2 * self.num_kv_heads) + self.num_heads * d * h
        layer = attn + 3 * h * f + 2 * h
        n = self.num_layers * layer + h
        if embeddings:
            n += self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        elif not self.tie_word_embeddings:
            n += self.vocab_size * h  # the LM head is a matmul even when embeddings are not
        return n

    def matmul_flops_per_token(self) -> int:
        """2 x the weights every token multiplies (all layers + LM head; no embedding lookup)."""
        return 2 * self.param_count(embeddings=False) + (
            2 * self.vocab_size * self.hidden_size if self.tie_word_embeddings else 0)

    def attention_flops(self, context: int) -> int:
        """QK^T and AV for one token attending to ``context`` positions, all layers."""
        return 4 * self.num_layers * self.num_heads * self.head_dim * context

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * dtype_bytes

    def hf_config(self, dtype: str = "float32") -> dict[str, Any]:
        """A ``config.json`` in Hugging Face ``LlamaForCausalLM`` layout."""
        return {
            "architectures": [ARCHITECTURE], "model_type": "llama",
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size, "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads, "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim, "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_parameters": {"rope_theta": self.rope_theta, "rope_type": "default"},
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings, "hidden_act": "silu",
            "attention_bias": False, "mlp_bias": False, "bos_token_id": 1,
            "eos_token_id": self.eos_token_id, "torch_dtype": dtype,
        }

    @classmethod
    def from_hf_config(cls, doc: Mapping[str, Any], *, source: str = "config.json") -> LlamaSpec:
        """Read a Hugging Face Llama ``config.json``; refuse what this engine does not implement."""
        problems: list[str] = []
        archs = doc.get("architectures")
        if archs is not None and not (isinstance(archs, list) and all(isinstance(a, str) for a in archs)):
            problems.append(f"architectures {str(archs)[:60]} (a list of names)")
        elif archs and archs[0] != ARCHITECTURE:
            problems.append(f"architecture {archs[0]!r} (only {ARCHITECTURE})")
        elif not archs and doc.get("model_type", "llama") != "llama":  # e.g. Qwen2Config().to_dict()
            kind = str(doc.get("model_type"))[:40]
            problems.append(f"model_type {kind!r} and no architectures (only llama)")
        if doc.get("hidden_act", "silu") != "silu":
            problems.append(f"hidden_act {doc.get('hidden_act')!r} (only silu)")
        for key in ("attention_bias", "mlp_bias"):
            if _flag(doc, key, problems):
                problems.append(f"{key} true (only bias-free projections)")
        tied = _flag(doc, "tie_word_embeddings", problems)
        rope, scaling = (_section(doc, key, problems) for key in ("rope_parameters", "rope_scaling"))
        rope_type = rope.get("rope_type") or scaling.get("rope_type") or "default"
        if rope_type != "default":
            problems.append(f"rope type {rope_type!r} (only default RoPE)")
        missing = [k for k in ("vocab_size", "hidden_size", "intermediate_size",
                               "num_hidden_layers", "num_attention_heads") if k not in doc]
        if missing:
            problems.append(f"missing keys {missing}")
        if problems:
            raise ConfigError(f"{source}: unsupported model config: " + "; ".join(problems),
                              hint="the PyTorch engine implements plain Llama-style decoders")
        # NaN/Infinity (Python's json.dump writes them) is accepted where the engine does not look
        eos = doc.get("eos_token_id")
        numbers = [*doc.items(), *((f"rope_parameters.{k}", v) for k, v in rope.items()),
                   *(("eos_token_id", v) for v in (eos if isinstance(eos, list) else []))]
        bad = [f"{k} is {v}" for k, v in numbers if k.removeprefix("rope_parameters.") in USED
               and isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ConfigError(f"{source}: {'; '.join(bad)}: the engine needs a finite number there",
                              hint="write the model's value (e.g. from the model card) in config.json")
        if isinstance(eos, list):
            eos = eos[0] if eos else None
        try:
            return cls(
                vocab_size=int(doc["vocab_size"]), hidden_size=int(doc["hidden_size"]),
                intermediate_size=int(doc["intermediate_size"]),
                num_layers=int(doc["num_hidden_layers"]),
                num_heads=int(doc["num_attention_heads"]),
                num_kv_heads=int(doc.get("num_key_value_heads") or doc["num_attention_heads"]),
                head_dim=int(doc.get("head_dim") or 0),
                rms_norm_eps=float(doc.get("rms_norm_eps", 1e-6)),
                rope_theta=float(rope.get("rope_theta") or doc.get("rope_theta") or 10000.0),
                max_position_embeddings=int(doc.get("max_position_embeddings", 4096)),
                tie_word_embeddings=tied,
                eos_token_id=None if eos is None else int(eos))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"{source}: bad model config value ({exc})",
                              hint="write the model's value (e.g. from the model card) in config.json"
                              ) from None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: the config.json numbers :meth:`LlamaSpec.from_hf_config` reads (NaN or Infinity there is refused)
USED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_theta", "max_position_embeddings",
        "eos_token_id")


def _flag(doc: Mapping[str, Any], key: str, problems: list[str]) -> bool:
    """``doc[key]`` as a true/false setting (absent or null: false); any other value, NaN included
    (truthy in Python), is a problem, not a guess."""
    value = doc.get(key)
    if value is None or isinstance(value, bool):
        return bool(value)
    problems.append(f"{key} {str(value)[:40]} (true or false)")
    return False


def _section(doc: Mapping[str, Any], key: str, problems: list[str]) -> Mapping[str, Any]:
    """``doc[key]`` when an object; absent, null or NaN (pandas' missing value, as json.dump writes
    it) is no section; anything else is a problem."""
    value = doc.get(key)
    if isinstance(value, Mapping):
        return value
    if value is not None and not (isinstance(value, float) and math.isnan(value)):
        problems.append(f"{key} {value!r} (an object or null)")
    return {}


def hf_weight_names(spec: LlamaSpec) -> dict[str, tuple[int, ...]]:
    """Every tensor name of a Hugging Face Llama checkpoint with its expected shape."""
    h, f, d = spec.hidden_size, spec.intermediate_size, spec.head_dim
    names: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (spec.vocab_size, h),
                                         "model.norm.weight": (h,)}
    for i in range(spec.num_layers):
        p = f"model.layers.{i}."
        names.update({
            p + "input_layernorm.weight": (h,), p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (spec.num_heads * d, h),
            p + "self_attn.k_proj.weight": (spec.num_kv_heads * d, h),
            p + "self_attn.v_proj.weight": (spec.num_kv_heads * d, h),
            p + "self_attn.o_proj.weight": (h, spec.num_heads * d),
            p + "mlp.gate_proj.weight": (f, h), p + "mlp.up_proj.weight": (f, h),
            p + "mlp.down_proj.weight": (h, f)})
    if not spec.tie_word_embeddings:
        names["lm_head.weight"] = (spec.vocab_size, h)
    return names


PRESETS: dict[str, LlamaSpec] = {
    # CPU tests: ~0.1 M parameters, runs in milliseconds
    "tiny": LlamaSpec(vocab_size=1024, hidden_size=64, intermediate_size=128, num_layers=2,
                      num_heads=4, num_kv_heads=2, max_position_embeddings=1024),
    # CPU smoke benchmark: ~1 M parameters
    "small": LlamaSpec(vocab_size=1024, hidden_size=128, intermediate_size=352, num_layers=4,
                       num_heads=4, num_kv_heads=2, max_position_embeddings=2048),
    # the engines issue's ~1 B model (0.85 B parameters: 0.72 B in layers, 0.13 B embeddings)
    "1b": LlamaSpec(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_layers=16,
                    num_heads=16, num_kv_heads=4, max_position_embeddings=2048),
}
