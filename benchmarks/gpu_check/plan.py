"""The GPU check's parts, their time budgets and the sizes of the full (H200) and tiny (CPU) runs.

Budgets are ceilings for a lent H200 (see docs/benchmarks.md, "When a GPU is lent"): the fixed
parts add up to 435 s, the optional ``sdpa_cudnn`` (the ablation of leaving out torch's cuDNN
attention backend), ``fabric_4ranks`` and ``eager_decode`` (the ablation of the engine's
CUDA-graph decode) run only when at least :data:`MIN_OPTIONAL_S` of :data:`TOTAL_BUDGET_S`
(480 s) are left, so the whole check stays under 8.5 minutes. A part that reaches its budget is killed and reported as ``overran`` with
what it had recorded so far; the parts after it still run.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    name: str
    budget_s: float        # on the GPU
    tiny_budget_s: float   # CPU rehearsal (--tiny)
    what: str
    optional: bool = False


PARTS: tuple[Part, ...] = (
    Part("discovery", 15, 60, "NVML + sysfs discovery recorded as a fixture; fabric model built from it"),
    Part("ceilings", 25, 60, "bf16 matmul, device-to-device and host<->device copy rates measured"),
    Part("baseline", 100, 90, "random-weight model saved + HF generate() static batches on a fixed subset"),
    Part("fabric_1rank", 60, 90, "harness + PyTorch engine (CUDA-graph decode) on 1 rank, merge-checked"),
    Part("fabric_2ranks", 70, 120, "the same on 2 MPI ranks sharing the GPU, merge-checked"),
    Part("checkpoint", 90, 90, "state of device tensors: AsyncSaver, sync save, DCP async_save"),
    Part("profile_steps", 45, 60, "engine steps under torch.profiler: host time per op, blocking calls"),
    Part("prefill_probe", 30, 60, "one prefill pass per attention backend, new shapes and repeated"),
    Part("sdpa_cudnn", 60, 90, "fabric_1rank with torch's cuDNN attention allowed (the ablation)",
         optional=True),
    Part("fabric_4ranks", 60, 120, "4 MPI ranks sharing the GPU (the engine is host-bound)",
         optional=True),
    Part("eager_decode", 60, 90, "fabric_1rank with the eager decode pass (the ablation)",
         optional=True),
)
TOTAL_BUDGET_S = 480.0
MIN_OPTIONAL_S = 60.0
KILL_GRACE_S = 5.0

#: What each mode runs. "full" is sized for one H200 (141 GB HBM3e) inside the budgets above.
SIZES: dict[str, dict[str, float | int | str]] = {
    "full": {"preset": "1b", "dtype": "bfloat16", "requests": 1000, "baseline_batch": 128,
             "baseline_requests": 256, "ranks": 2, "ckpt_gib": 8.0, "matmul_n": 8192,
             "copy_mib": 4096},
    "tiny": {"preset": "tiny", "dtype": "float32", "requests": 48, "baseline_batch": 8,
             "baseline_requests": 16, "ranks": 2, "ckpt_gib": 1.0, "matmul_n": 256,
             "copy_mib": 64, "ckpt_tmpfs": 1},
}


def sizes(tiny: bool) -> dict[str, float | int | str]:
    return SIZES["tiny" if tiny else "full"]


def part(name: str) -> Part:
    for p in PARTS:
        if p.name == name:
            return p
    raise KeyError(name)
