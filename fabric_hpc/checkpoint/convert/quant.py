"""The fp8 facts of a converted checkpoint, and the ``quantization_config`` a serving stack needs.

At convert time :func:`fp8_facts` looks at the tensors written (names, dtypes, shapes) and
records what is fp8: the modules whose ``weight`` is float8 with a float32 ``weight_scale``
(per tensor ``[]`` or per output channel ``[out, 1]``), whether each has a static
``input_scale``, and the linear-shaped (2-d ``.weight``) modules left in another dtype. The
result goes into the manifest's ``user_metadata.quantization``.

At export time :func:`hf_quantization_config` turns the facts into the ``quantization_config``
of ``config.json`` that vLLM reads (sources: vLLM's
``vllm/model_executor/layers/quantization/fp8.py`` and ``fbgemm_fp8.py``):

- per-tensor scales -> ``{"quant_method": "fp8", "activation_scheme": "static" | "dynamic",
  "ignored_layers": [...]}`` (``Fp8Config.from_config``; ``Fp8LinearMethod.create_weights``
  registers a float8_e4m3fn ``weight``, a float32 ``weight_scale`` per logical shard and, only
  when static, a float32 ``input_scale`` per logical shard; it supports per-tensor weight
  scales only, or block-wise ones with ``weight_block_size``);
- per-channel scales -> ``{"quant_method": "fbgemm_fp8", "modules_to_not_convert": [...],
  "activation_scale_ub": 1200.0}`` (``FBGEMMFp8Config.from_config`` needs both keys;
  ``FBGEMMFp8LinearMethod`` registers a float8_e4m3fn ``weight`` and a float32
  ``weight_scale`` of ``[out, 1]``, activations are quantised dynamically per token with the
  upper bound from the config, 1200.0 being transformers' ``FbgemmFp8Config`` default; it has
  no ``input_scale``).

Refused (nothing matches the checkpoint exactly): e5m2 weights (both load float8_e4m3fn
only), per-channel scales with static input scales, a mix of per-tensor and per-channel scales,
input scales on some fp8 weights but not others, an fp8 tensor that is not a ``.weight`` or
lacks its float32 ``weight_scale``, some projections of a layer vLLM fuses (q/k/v, gate/up) in
fp8 and others not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fabric_hpc.checkpoint.convert.recipe import FP8_DTYPES
from fabric_hpc.checkpoint.errors import CheckpointError

FBGEMM_ACTIVATION_SCALE_UB = 1200.0  # transformers' FbgemmFp8Config default
# modules vLLM loads as one fused layer (its Llama-family ``packed_modules_mapping``); all shards
# of a fused layer must have the same precision (``is_layer_skipped`` raises otherwise)
FUSED = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))
HINT = "export with --no-quantization-config and write quantization_config yourself, or convert again " \
       "(fp8 e4m3 for every linear, one scale kind, input_scale for all or none)"


def _mixed(values: set[str]) -> str | None:
    return None if not values else values.pop() if len(values) == 1 else "mixed"


def weight_module(name: str) -> str | None:
    """A linear's module name from its weight's tensor name (``x.weight``, or ``x/weight`` in a
    checkpoint saved from a nested dict), None for any other name."""
    for suffix in (".weight", "/weight"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[:-len(suffix)]
    return None


def input_scale_name(name: str) -> str:
    """Where a weight's static activation scale goes: ``x.weight`` -> ``x.input_scale`` (vLLM),
    ``x/weight`` -> ``x/input_scale``."""
    module = weight_module(name)
    assert module is not None, name
    return module + name[len(module)] + "input_scale"


def fp8_facts(tensors: Mapping[str, tuple[str, list[int]]]) -> dict[str, Any] | None:
    """The fp8 facts of a checkpoint's tensors (``name -> (logical dtype, shape)``), or None when
    no tensor is fp8. ``problems`` lists what no serving layout can express."""
    fp8 = sorted(n for n, (dt, _) in tensors.items() if dt in FP8_DTYPES)
    if not fp8:
        return None
    problems: list[str] = []
    modules, dtypes, scales, acts = [], set(), set(), set()
    for name in fp8:
        module = weight_module(name)
        if module is None:
            problems.append(f"{name}: an fp8 tensor that is not a linear's `.weight`")
            continue
        dt, shape = tensors[name]
        sdt, sshape = tensors.get(name + "_scale", (None, None))
        if sdt != "float32":
            problems.append(f"{name}: no float32 {name}_scale beside it")
            continue
        kind = "tensor" if sshape in ([], [1]) else "channel" if sshape == [shape[0], 1] and len(shape) == 2 else None
        if kind is None:
            problems.append(f"{name}_scale: shape {sshape} is neither per tensor nor per output channel [rows, 1]")
            continue
        modules.append(module)
        dtypes.add(dt)
        scales.add(kind)
        acts.add("static" if tensors.get(input_scale_name(name), ("",))[0] == "float32" else "dynamic")
    kept = sorted(m for n, (dt, shape) in tensors.items()
                  if (m := weight_module(n)) is not None and len(shape) == 2 and dt not in FP8_DTYPES)
    return {"method": "fp8", "dtype": _mixed(dtypes), "weight_scale": _mixed(scales),
            "activation_scheme": _mixed(acts), "modules": modules, "not_converted": kept, "problems": problems}


def hf_quantization_config(facts: Mapping[str, Any], modules: Mapping[str, str]) -> dict[str, Any]:
    """The ``quantization_config`` for ``facts`` (see the module doc); ``modules`` maps fabric
    module names to the exported Hugging Face module names (modules not in it are not exported)."""
    problems = list(facts.get("problems") or [])
    for key, what in (("dtype", "fp8 formats"), ("weight_scale", "scale kinds (per tensor and per channel)"),
                      ("activation_scheme", "activation schemes (some fp8 weights have input_scale, some not)")):
        if facts.get(key) == "mixed":
            problems.append(f"the fp8 weights mix {what}")
    if facts.get("dtype") == "float8_e5m2":
        problems.append("the weights are float8_e5m2; vLLM's fp8 and fbgemm_fp8 load float8_e4m3fn only")
    channel = facts.get("weight_scale") == "channel"
    if channel and facts.get("activation_scheme") == "static":
        problems.append("per-channel weight scales with static input_scale: vLLM's per-channel fp8 "
                        "(fbgemm_fp8) quantises activations dynamically and has no input_scale")
    problems += _split_fused(facts, modules)
    if problems:
        raise CheckpointError("cannot write a quantization_config for this fp8 checkpoint: " + "; ".join(problems[:3]),
                              hint=HINT)
    skipped = sorted(modules[m] for m in facts.get("not_converted", []) if m in modules)
    if channel:
        return {"quant_method": "fbgemm_fp8", "modules_to_not_convert": skipped,
                "activation_scale_ub": FBGEMM_ACTIVATION_SCALE_UB}
    return {"quant_method": "fp8", "activation_scheme": facts["activation_scheme"], "ignored_layers": skipped}


def _split_fused(facts: Mapping[str, Any], modules: Mapping[str, str]) -> list[str]:
    """fp8 modules whose siblings in a layer vLLM fuses (q/k/v, gate/up) are left unconverted."""
    kept = {modules[m] for m in facts.get("not_converted", []) if m in modules}
    out = []
    for m in (modules[m] for m in facts.get("modules", []) if m in modules):
        base, _, last = m.rpartition(".")
        for group in FUSED:
            odd = [f"{base}.{g}" for g in group if last in group and f"{base}.{g}" in kept]
            if odd:
                out.append(f"{m} is fp8 but {odd[0]} is not; vLLM fuses them ({'/'.join(group)}) and "
                           f"needs one precision")
    return out


def merge_config(config: dict[str, Any] | None, quant: dict[str, Any]) -> dict[str, Any] | None:
    """``config`` with ``quantization_config`` set to ``quant``; refuses a different one already
    there (the same one is kept). None (no config.json to write) stays None."""
    if config is None:
        return None
    have = config.get("quantization_config")
    if have is not None and have != quant:
        raise CheckpointError(f"config.json already has a different quantization_config ({have}); this "
                              f"checkpoint needs {quant}",
                              hint="pass --config with a config.json without quantization_config (or with this "
                                   "one), or --no-quantization-config to keep the carried one as it is")
    return {**config, "quantization_config": quant}


__all__ = ["fp8_facts", "hf_quantization_config", "merge_config"]
