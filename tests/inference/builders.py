"""Builders for inference tests: engine artefacts, configs, spools, reference results."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from fabric_hpc.inference import (
    CostModel,
    EngineLimits,
    SimulatedEngine,
    VirtualClock,
    WorkItem,
    write_simulated_artefact,
)
from fabric_hpc.inference.testing import drain
from fabric_hpc.inference.engine import EngineRequest

SMALL = EngineLimits(max_batch_size=16, max_num_tokens=1024, max_input_len=128, max_seq_len=192,
                     kv_capacity_tokens=2048)
FAST = CostModel(base_s=2e-4, prefill_s_per_token=1e-7, decode_s_per_seq=2e-6, ctx_s_per_token=0.0)


def make_config(tmp: Path, limits: EngineLimits = SMALL, cost: CostModel = FAST,
                name: str = "engine") -> Path:
    cfg = write_simulated_artefact(tmp / name, limits=limits, cost=cost)
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


def random_items(n: int, seed: int = 0, *, max_prompt: int = 120, max_new: int = 40,
                 prefix: str = "i") -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"id": f"{prefix}{k}", "prompt": [rng.randrange(1, 30000) for _ in range(
        max(1, min(max_prompt, int(rng.lognormvariate(3.5, 0.8)))))],
             "max_new_tokens": rng.randint(1, max_new)} for k in range(n)]


def write_spool(tmp: Path, items: list[dict[str, Any]], files: int = 2,
                extra_lines: list[str] = ()) -> Path:
    spool = tmp / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    per = -(-len(items) // files)
    for f in range(files):
        lines = [json.dumps(it) for it in items[f * per:(f + 1) * per]]
        if f == 0:
            lines += list(extra_lines)
        (spool / f"part-{f:03d}.jsonl").write_text("\n".join(lines) + "\n")
    return spool


def reference_tokens(items: list[dict[str, Any]], limits: EngineLimits = SMALL) -> dict[str, list[int]]:
    """What a correct run must produce: each request alone through a fresh engine."""
    eng = SimulatedEngine(limits, clock=VirtualClock())
    out = {}
    for it in items:
        eng.add([EngineRequest(it["id"], it["prompt"], it["max_new_tokens"])])
        out.update({r.id: r.tokens for r in drain(eng)})
    return out


def read_results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line]


def work_items(specs: list[tuple[int, int]], prefix: str = "w") -> list[WorkItem]:
    return [WorkItem(f"{prefix}{k}", [7] * plen, new) for k, (plen, new) in enumerate(specs)]


def tiny_checkpoint(root: Path, step: int = 0, *, carry_config: bool = True) -> Path:
    """A fabric checkpoint of the ``tiny`` Llama preset (zero weights) at ``root/step-N``, carrying
    its Hugging Face config.json unless ``carry_config`` is false; returns ``root``."""
    import numpy as np

    from fabric_hpc.checkpoint import save
    from fabric_hpc.inference.engines.spec import PRESETS, hf_weight_names

    spec = PRESETS["tiny"]
    state = {n: np.zeros(s, np.float32) for n, s in hf_weight_names(spec).items()}
    save(root, state, step=step,
         metadata={"hf_files": {"config.json": spec.hf_config()}} if carry_config else None)
    return root
