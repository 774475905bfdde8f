"""A Llama-style decoder in plain PyTorch with a preallocated, slot-based KV cache.

Imported only by :mod:`fabric_hpc.inference.engines.pytorch` when an engine is built (it imports
torch at module level). Numerics follow Hugging Face ``LlamaForCausalLM`` (eager attention):
RMSNorm in float32, RoPE with ``rotate_half`` on the concatenated-frequency layout, grouped-query
attention, SwiGLU MLP; ``tests/inference_engines`` checks logits against it.

KV cache: ``k``/``v`` tensors of shape ``[layers, slots, kv_heads, max_len, head_dim]``; a
sequence owns one slot for its whole life, so no block tables are needed. Prefill writes
positions ``0..P-1`` of the group's slots; decode writes one position per row. Decode runs over
slot rows ``0..S-1`` (S = highest held slot + 1; slots are handed out lowest-first so the held
set stays dense) and attends through a view of the cache (no gather copy), grouped-query style:
the ``G`` query heads of one KV head are laid out as ``G`` query rows, so K/V are never repeated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference.engines.spec import LlamaSpec, hf_weight_names

__all__ = ["KVCache", "LlamaModel", "hf_weight_names"]


@dataclass
class _Layer:
    ln1: torch.Tensor
    wqkv: torch.Tensor     # [(H + 2 KVH) * D, hidden]  (q, k, v fused)
    wo: torch.Tensor
    ln2: torch.Tensor
    w_gate_up: torch.Tensor  # [2 F, hidden]  (gate, up fused)
    w_down: torch.Tensor


class KVCache:
    """Preallocated K/V for ``slots`` sequences of up to ``max_len`` tokens each."""

    def __init__(self, spec: LlamaSpec, slots: int, max_len: int, *, device: torch.device,
                 dtype: torch.dtype) -> None:
        # [layers, slots, kv_heads, max_len, head_dim]: a slot's view [KVH, L, D] is what the
        # attention kernels read (last dim contiguous), without a transpose or copy
        shape = (spec.num_layers, slots, spec.num_kv_heads, max_len, spec.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.slots, self.max_len = slots, max_len

    @staticmethod
    def nbytes(spec: LlamaSpec, slots: int, max_len: int, dtype_bytes: int) -> int:
        return 2 * spec.num_layers * slots * max_len * spec.num_kv_heads * spec.head_dim * dtype_bytes


def check_memory(spec: LlamaSpec, slots: int, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
    """Refuse before allocating when weights + KV cache exceed 95 % of the device's free memory
    (host RAM available for the CPU); the message gives both numbers and the knobs."""
    from fabric_hpc.errors import ExternalError
    need = KVCache.nbytes(spec, slots, max_len, dtype.itemsize) + spec.param_count() * dtype.itemsize
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if need > free * 0.95:
        raise ExternalError(f"{device}: weights + KV cache need {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free",
                            hint="lower max_batch_size or max_seq_len (fabric_engine.json and the engine config)")


class LlamaModel:
    """Weights + forward passes (prefill of a padded group, decode of slot rows)."""

    def __init__(self, spec: LlamaSpec, tensors: Mapping[str, torch.Tensor], *,
                 device: torch.device, dtype: torch.dtype, source: str = "weights") -> None:
        self.spec, self.device, self.dtype = spec, device, dtype
        expected = hf_weight_names(spec)
        problems = [f"{n}: missing" for n in expected if n not in tensors]
        problems += [f"{n}: shape {tuple(tensors[n].shape)}, config needs {shape}"
                     for n, shape in expected.items()
                     if n in tensors and tuple(tensors[n].shape) != shape]
        if problems:
            shown = problems[:8] + ([f"... and {len(problems) - 8} more"] if len(problems) > 8 else [])
            raise ConfigError(f"{source} do not match config.json:\n  " + "\n  ".join(shown),
                              hint="the weights directory must hold the checkpoint its "
                                   "config.json describes (Hugging Face Llama layout)")

        def t(name: str) -> torch.Tensor:
            return tensors[name].to(device=device, dtype=dtype)

        self.embed = t("model.embed_tokens.weight")
        self.norm = t("model.norm.weight")
        self.lm_head = self.embed if spec.tie_word_embeddings else t("lm_head.weight")
        self.layers = []
        for i in range(spec.num_layers):
            p = f"model.layers.{i}."
            self.layers.append(_Layer(
                ln1=t(p + "input_layernorm.weight"),
                wqkv=torch.cat([t(p + f"self_attn.{x}_proj.weight") for x in "qkv"]),
                wo=t(p + "self_attn.o_proj.weight"), ln2=t(p + "post_attention_layernorm.weight"),
                w_gate_up=torch.cat([t(p + "mlp.gate_proj.weight"), t(p + "mlp.up_proj.weight")]),
                w_down=t(p + "mlp.down_proj.weight")))
        d = spec.head_dim
        inv_freq = 1.0 / (spec.rope_theta ** (torch.arange(0, d, 2, dtype=torch.int64,
                                                           device=device).float() / d))
        pos = torch.arange(spec.max_position_embeddings, device=device, dtype=torch.float32)
        emb = torch.cat([torch.outer(pos, inv_freq)] * 2, dim=-1)
        self.cos, self.sin = emb.cos().to(dtype), emb.sin().to(dtype)

    @classmethod
    def random(cls, spec: LlamaSpec, seed: int, *, device: torch.device,
               dtype: torch.dtype) -> LlamaModel:
        """Random weights from ``seed`` (normal(0, 0.02) like HF's init; norms = 1)."""
        gen = torch.Generator(device=device).manual_seed(seed)
        tensors = {}
        for name, shape in hf_weight_names(spec).items():
            if name.endswith("norm.weight"):
                tensors[name] = torch.ones(shape, device=device, dtype=dtype)
            else:
                tensors[name] = (torch.randn(shape, generator=gen, device=device,
                                             dtype=torch.float32) * 0.02).to(dtype)
        return cls(spec, tensors, device=device, dtype=dtype, source="random weights")

    # ------------------------------------------------------------------ building blocks
    def _rms(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        # HF's LlamaRMSNorm: normalised in float32, cast back, then scaled (one fused op here:
        # every op is a kernel launch, and launches bound a small model's step)
        xf = F.rms_norm(x.float(), (x.shape[-1],), eps=self.spec.rms_norm_eps)
        return w * xf.to(x.dtype)

    @staticmethod
    def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    def _qkv(self, layer: _Layer, x: torch.Tensor, cos: torch.Tensor,
             sin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q and k with RoPE applied (in one pass over their heads), v; ``[..., heads, D]``."""
        s = self.spec
        qkv = F.linear(self._rms(x, layer.ln1), layer.wqkv)
        qkv = qkv.view(*x.shape[:-1], s.num_heads + 2 * s.num_kv_heads, s.head_dim)
        qk = self._rope(qkv[..., :s.num_heads + s.num_kv_heads, :], cos, sin)
        return qk[..., :s.num_heads, :], qk[..., s.num_heads:, :], qkv[..., -s.num_kv_heads:, :]

    def _mlp(self, layer: _Layer, x: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(self._rms(x, layer.ln2), layer.w_gate_up).chunk(2, dim=-1)
        return F.linear(F.silu(gate) * up, layer.w_down)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(self._rms(h, self.norm), self.lm_head)

    # ------------------------------------------------------------------ forward passes
    def prefill(self, tokens: torch.Tensor, lengths: torch.Tensor, slots: torch.Tensor | None,
                cache: KVCache | None, *, all_logits: bool = False) -> torch.Tensor:
        """Right-padded prompts ``[n, P]`` -> logits at each prompt's last token ``[n, V]``
        (or every position ``[n, P, V]``); K/V go to ``cache`` positions ``0..P-1`` of
        ``slots``. Padding sits after each prompt, so the causal mask already hides it."""
        s = self.spec
        n, plen = tokens.shape
        cos, sin = self.cos[:plen, None, :], self.sin[:plen, None, :]
        h = F.embedding(tokens, self.embed)
        for li, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, h, cos, sin)            # [n, P, heads, D]
            k, v = k.transpose(1, 2), v.transpose(1, 2)          # [n, KVH, P, D]
            if cache is not None:
                cache.k[li, slots, :, :plen] = k
                cache.v[li, slots, :, :plen] = v
            att = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, is_causal=True,
                                                 enable_gqa=s.group > 1)  # K/V not repeated
            h = h + F.linear(att.transpose(1, 2).reshape(n, plen, -1), layer.wo)
            h = h + self._mlp(layer, h)
        if all_logits:
            return self._logits(h)
        last = h[torch.arange(n, device=h.device), lengths - 1]
        return self._logits(last)

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache,
               context: int) -> torch.Tensor:
        """One token for each of slot rows ``0..S-1`` (``tokens``/``positions``: ``[S]``) ->
        logits ``[S, V]``. Row ``r`` attends to cache positions ``0..positions[r]`` of slot
        ``r``; ``context`` >= max(positions) + 1 bounds the cache view."""
        s = self.spec
        rows = tokens.shape[0]
        idx = torch.arange(rows, device=tokens.device)
        cos, sin = self.cos[positions][:, None, :], self.sin[positions][:, None, :]
        mask = (torch.arange(context, device=tokens.device)[None, :] <= positions[:, None])
        mask = mask[:, None, None, :]                           # [S, 1, 1, L]
        h = F.embedding(tokens, self.embed)                      # [S, hidden]
        for li, layer in enumerate(self.layers):
            q, k, v = self._qkv(layer, h, cos, sin)              # [S, heads, D]
            cache.k[li, idx, :, positions] = k                   # k: [S, KVH, D]
            cache.v[li, idx, :, positions] = v
            kk = cache.k[li, :rows, :, :context]                 # [S, KVH, L, D] (a view)
            vv = cache.v[li, :rows, :, :context]
            qg = q.view(rows, s.num_kv_heads, s.group, s.head_dim)  # G query rows per KV head
            att = F.scaled_dot_product_attention(qg, kk, vv, attn_mask=mask)
            h = h + F.linear(att.reshape(rows, -1), layer.wo)
            h = h + self._mlp(layer, h)
        return self._logits(h)
