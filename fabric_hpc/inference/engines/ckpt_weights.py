"""Serving a fabric checkpoint step directly: which tensors the PyTorch engine reads, and how.

A checkpoint is named in ``fabric_engine.json`` (``"weights": "fabric-checkpoint"``) by four
required fields: ``path`` (checkpoint root or step directory), ``step``, ``prefix`` (the subtree
holding the model, ``""`` for top-level names) and ``naming``:

* ``huggingface`` -- names below the prefix are Hugging Face ``LlamaForCausalLM`` keys
  (``model.layers.0.self_attn.q_proj.weight``; what ``fabric ckpt import-hf`` writes);
* ``megatron`` -- Megatron-core Llama names (``decoder.layers.0.self_attention.linear_qkv.weight``
  in grouped layout, ``linear_fc1`` = [gate; up], ...): mapped to the Hugging Face names by the
  convert recipe :func:`fabric_hpc.checkpoint.convert.llama.megatron_to_hf`, planned with the
  convert planner (row ranges of source tensors), applied in memory.

:func:`plan_weights` needs only the manifest (the artefact check runs it: names, shapes and
dtypes against ``config.json``, before any rank builds an engine). :func:`load_weights` reads
the planned sources with :func:`fabric_hpc.checkpoint.restore` as this rank's part of the
engine's tensor-parallel world (TP 1: whole tensors, so every chunk is read whole and its
CRC-32C checked), then cuts and stacks rows into the Hugging Face tensors. Nothing here
imports torch at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabric_hpc.errors import ConfigError

__all__ = ["NAMINGS", "WeightPlan", "detect_naming", "load_weights", "plan_weights", "subtree_names"]

NAMINGS = ("huggingface", "megatron")
_FLOATS = ("float32", "float16", "bfloat16")
_FP8 = ("float8_e4m3fn", "float8_e5m2")


@dataclass(frozen=True)
class WeightPlan:
    """Hugging Face name -> list of (source tensor name, first row, last row + 1)."""

    path: Path
    step: int
    rows: dict[str, list[tuple[str, int, int]]]

    @property
    def sources(self) -> list[str]:
        return sorted({src for segs in self.rows.values() for src, _, _ in segs})


class _Subtree:
    """The checkpoint's tensors below ``prefix`` under their relative names (what the convert
    planner reads: ``names`` and ``entry(name)``)."""

    def __init__(self, ckpt: Any, prefix: str) -> None:
        self.ckpt, self.pre = ckpt, (prefix.strip("/") + "/" if prefix.strip("/") else "")
        self.names = [n[len(self.pre):] for n in ckpt.names if n.startswith(self.pre)]

    def entry(self, name: str) -> Any:
        return self.ckpt.entry(self.pre + name)


def subtree_names(ckpt: Any, prefix: str) -> list[str]:
    """The checkpoint's tensor names below ``prefix``, relative to it."""
    return _Subtree(ckpt, prefix).names


def detect_naming(names: list[str]) -> str | None:
    """``huggingface``, ``megatron`` or None (neither Llama naming)."""
    if "model.embed_tokens.weight" in names:
        return "huggingface"
    if "embedding.word_embeddings.weight" in names or any(n.startswith("decoder.layers.") for n in names):
        return "megatron"
    return None


def plan_weights(ckpt: Any, spec: Any, *, prefix: str, naming: str) -> WeightPlan:
    """Check the checkpoint's tensors below ``prefix`` against the model shape ``spec`` and plan
    where every Hugging Face tensor comes from. Raises :class:`ConfigError` naming every problem."""
    from fabric_hpc.inference.engines.spec import hf_weight_names

    sub = _Subtree(ckpt, prefix)
    where = f"{ckpt.path} (prefix {prefix!r})"
    if not sub.names:
        raise ConfigError(f"checkpoint {where} holds no tensors below the prefix",
                          hint="list the names with `fabric ckpt show` and set the prefix")
    _refuse_fp8(sub, where)
    found = detect_naming(sub.names)
    if found != naming:
        raise ConfigError(f"checkpoint {where}: tensor names are {found or 'neither Hugging Face nor Megatron-core Llama'} "
                          f"names, the engine was prepared for {naming}",
                          hint="prepare the engine again from this checkpoint, or convert it to "
                               "Hugging Face names (`fabric ckpt convert`)")
    if ckpt.manifest.layout.get("kv_replicas"):
        raise ConfigError(f"checkpoint {where} has KV heads replicated for tensor parallelism "
                          f"(layout {ckpt.manifest.layout})",
                          hint="serve the checkpoint it was converted from, or convert it back to tp 1")
    rows = _plan_rows(sub, spec, naming)
    expected = hf_weight_names(spec)
    problems = [f"{n}: missing" for n in expected if n not in rows]
    problems += [f"{n}: not a weight of this model (config.json)" for n in sorted(set(rows) - set(expected))]
    for name, shape in expected.items():
        if name in rows:
            segs = rows[name]
            first = sub.entry(segs[0][0])
            got = (sum(hi - lo for _, lo, hi in segs), *first.shape[1:]) if first.shape else ()
            if got != shape:
                problems.append(f"{name}: shape {got}, config needs {shape}")
            bad = sorted({sub.entry(s).dtype for s, _, _ in segs} - set(_FLOATS))
            if bad:
                problems.append(f"{name}: dtype {', '.join(bad)} (the engine serves {', '.join(_FLOATS)})")
    if problems:
        shown = problems[:8] + ([f"... and {len(problems) - 8} more"] if len(problems) > 8 else [])
        raise ConfigError(f"checkpoint {where} does not match config.json:\n  " + "\n  ".join(shown),
                          hint="serve the checkpoint its config.json describes")
    return WeightPlan(ckpt.path, ckpt.step,
                      {n: [(sub.pre + s, lo, hi) for s, lo, hi in segs] for n, segs in rows.items()})


def _refuse_fp8(sub: _Subtree, where: str) -> None:
    """fp8 weights (with their ``*_scale`` tensors, from ``fabric ckpt convert``): the engine
    serves float32/float16/bfloat16 and fabric cannot dequantise them (convert refuses fp8
    sources), so the one fix is the checkpoint they were converted from."""
    fp8 = sorted(n for n in sub.names if sub.entry(n).dtype in _FP8)
    if not fp8:
        return
    dtypes = ", ".join(sorted({sub.entry(n).dtype for n in fp8}))
    origin = sub.ckpt.manifest.user_metadata.get("converted_from")
    source = (f"{origin.get('path')} step {origin.get('step')}" if isinstance(origin, dict)
              else "the bfloat16/float32 checkpoint it was converted from")
    raise ConfigError(f"checkpoint {where} holds {dtypes} weights ({len(fp8)} tensors, e.g. {fp8[0]}): "
                      f"the PyTorch engine serves {', '.join(_FLOATS)} and fabric cannot dequantise fp8",
                      hint=f"serve {source} instead (fp8 checkpoints are for vLLM: `fabric ckpt export-hf`)")


def _plan_rows(sub: _Subtree, spec: Any, naming: str) -> dict[str, list[tuple[str, int, int]]]:
    if naming == "huggingface":
        out = {}
        for n in sub.names:
            e = sub.entry(n)
            out[n] = [(n, 0, e.shape[0] if e.shape else 1)]
        return out
    from fabric_hpc.checkpoint.convert.llama import megatron_to_hf
    from fabric_hpc.checkpoint.convert.plan import Planner
    from fabric_hpc.checkpoint.errors import CheckpointError

    try:
        specs = Planner(sub, megatron_to_hf(spec.num_heads, spec.num_kv_heads)).plan()  # type: ignore[arg-type]
    except CheckpointError as exc:
        raise ConfigError(f"checkpoint {sub.ckpt.path}: Megatron-core names cannot be mapped to "
                          f"Hugging Face Llama names: {exc.message}",
                          hint="the engine maps Megatron-core Llama names (megatron_to_hf); "
                               "convert other layouts with `fabric ckpt convert` first") from None
    out = {}
    for s in specs:
        if any(g.src is None for g in s.segs):
            raise ConfigError(f"checkpoint {sub.ckpt.path}: {s.name} would need padding rows")
        out[s.name] = [(g.src, g.src_lo, g.src_lo + g.hi - g.lo) for g in s.segs]  # type: ignore[misc]
    return out


def load_weights(plan: WeightPlan, *, rank: int = 0, world_size: int = 1) -> dict[str, Any]:
    """Read the planned sources (this rank's part of ``world_size``; whole tensors for 1) with
    CRC-32C checks, and assemble the Hugging Face tensors (torch, CPU, stored dtype)."""
    import torch

    from fabric_hpc.checkpoint import restore
    from fabric_hpc.checkpoint.format import flatten

    state = restore(plan.path, names=plan.sources, rank=rank, world_size=world_size,
                    as_torch=True)
    src = dict(flatten(state))
    out = {}
    for name, segs in plan.rows.items():
        parts = [src[s] if lo == 0 and hi == (src[s].shape[0] if src[s].dim() else 1) else src[s][lo:hi]
                 for s, lo, hi in segs]
        out[name] = parts[0] if len(parts) == 1 else torch.cat(parts)
    return out
