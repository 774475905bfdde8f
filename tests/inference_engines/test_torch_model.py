"""The PyTorch Llama model equals transformers' LlamaForCausalLM (same weights, float32)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from fabric_hpc.inference.engines.spec import LlamaSpec
from fabric_hpc.inference.engines.torch_llama import KVCache, LlamaModel

ATOL = 2e-5  # float32; measured max abs diff ~2e-6 on logits up to ~3 in magnitude


def load(hf_dir: Path) -> LlamaModel:
    from safetensors.torch import load_file

    spec = LlamaSpec.from_hf_config(json.loads((hf_dir / "config.json").read_text()))
    return LlamaModel(spec, load_file(str(hf_dir / "model.safetensors")),
                      device=torch.device("cpu"), dtype=torch.float32)


@pytest.fixture(scope="module")
def model(hf_dir: Path) -> LlamaModel:
    return load(hf_dir)


def test_full_forward_matches_transformers(model: LlamaModel, hf_model: Any) -> None:
    ids = torch.randint(0, 1024, (3, 40), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf_model(ids).logits
        mine = model.prefill(ids, torch.full((3,), 40), None, None, all_logits=True)
    diff = (ref - mine).abs().max().item()
    assert ref.abs().max().item() > 1.0  # logits are not trivially small
    assert diff < ATOL, diff
    assert torch.equal(ref.argmax(-1), mine.argmax(-1))


def test_padded_prefill_then_decode_matches_full_forward(model: LlamaModel, hf_model: Any) -> None:
    """Ragged prompts in one right-padded prefill, then 6 decode steps through the slot cache
    (in slots 3, 0, 5 with dead rows between), against one full forward of each sequence."""
    gen = torch.Generator().manual_seed(5)
    lengths, steps = [7, 19, 12], 6
    seqs = [torch.randint(0, 1024, (n + steps,), generator=gen) for n in lengths]
    slots = [3, 0, 5]
    cache = KVCache(model.spec, 8, 64, device=torch.device("cpu"), dtype=torch.float32)
    plen = max(lengths)
    tokens = torch.zeros(3, plen, dtype=torch.long)
    for i, n in enumerate(lengths):
        tokens[i, :n] = seqs[i][:n]
    worst = 0.0
    with torch.no_grad():
        refs = [hf_model(s[None]).logits[0] for s in seqs]
        first = model.prefill(tokens, torch.tensor(lengths), torch.tensor(slots), cache)
        for i, n in enumerate(lengths):
            worst = max(worst, (first[i] - refs[i][n - 1]).abs().max().item())
        rows = max(slots) + 1
        for k in range(steps):
            toks, pos = torch.zeros(rows, dtype=torch.long), torch.zeros(rows, dtype=torch.long)
            for i, n in enumerate(lengths):
                toks[slots[i]], pos[slots[i]] = seqs[i][n + k], n + k
            logits = model.decode(toks, pos, cache, context=int(pos.max()) + 1)
            for i, n in enumerate(lengths):
                worst = max(worst, (logits[slots[i]] - refs[i][n + k]).abs().max().item())
    assert worst < ATOL, worst


def test_random_weights_are_seeded() -> None:
    spec = LlamaSpec(vocab_size=64, hidden_size=32, intermediate_size=48, num_layers=1,
                     num_heads=4, num_kv_heads=1)
    cpu = torch.device("cpu")
    a = LlamaModel.random(spec, 1, device=cpu, dtype=torch.float32)
    b = LlamaModel.random(spec, 1, device=cpu, dtype=torch.float32)
    c = LlamaModel.random(spec, 2, device=cpu, dtype=torch.float32)
    assert torch.equal(a.embed, b.embed) and not torch.equal(a.embed, c.embed)
    assert torch.equal(a.layers[0].wqkv, b.layers[0].wqkv)


def test_the_1b_preset_has_the_parameter_count_the_docs_give() -> None:
    """docs/inference.md and simulated.py's cost model used 1.1e9 parameters for the `1b` preset,
    docs/engines.md 0.85 B: the preset's config has 852,559,872 (counted, as transformers does)."""
    import math

    from fabric_hpc.inference.engines.spec import PRESETS, hf_weight_names

    assert sum(math.prod(shape) for shape in hf_weight_names(PRESETS["1b"]).values()) == 852_559_872
    docs = Path(__file__).resolve().parents[2] / "docs"
    assert "0.85 B parameters" in (docs / "engines.md").read_text()
    inference = (docs / "inference.md").read_text()
    assert "852,559,872 = 0.85 × 10⁹ parameters" in inference and "2 × 1.1 × 10⁹ FLOP" not in inference
