"""Workload, accounting and telemetry helpers for ``python -m benchmarks.inference_gpu``.

Workload (the engines issue): >= 2,000 requests, prompt lengths log-normal with median 200
(sigma 1.0) clipped to 8-1024, output lengths log-normal with median 120 (sigma 0.8) clipped to
4-256, seeded -- the same distribution as the harness benchmark
(:data:`fabric_hpc.inference.bench.WORKLOAD`), with random token ids inside the vocabulary.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fabric_hpc.inference.bench import WORKLOAD
from fabric_hpc.inference.engines.spec import LlamaSpec

# datasheet peaks: dense bf16 tensor FLOP/s, HBM bytes/s (matched on the NVML/torch name). H200
# (SXM): NVIDIA H200 Tensor Core GPU datasheet, BF16 Tensor Core 1,979 TFLOPS *with sparsity*
# (so 989 dense), 141 GB HBM3e at 4.8 TB/s.
PEAKS = (("H200", 989e12, 4.8e12), ("H100 PCIe", 756e12, 2.0e12), ("H100 NVL", 835e12, 3.9e12),
         ("H100", 989e12, 3.35e12), ("A100", 312e12, 2.0e12), ("L40S", 362e12, 0.864e12))
TINY_WORKLOAD = {"in_median": 24, "in_sigma": 1.0, "in_clip": (4, 64),
                 "out_median": 12, "out_sigma": 0.8, "out_clip": (2, 24)}


@dataclass(frozen=True, slots=True)
class Req:
    id: str
    prompt: list[int]
    out: int


def _lognormal(rng: random.Random, median: float, sigma: float, clip: tuple[int, int]) -> int:
    return min(clip[1], max(clip[0], round(math.exp(rng.gauss(math.log(median), sigma)))))


def make_workload(n: int, vocab: int, *, tiny: bool, seed: int = 0) -> list[Req]:
    w = TINY_WORKLOAD if tiny else WORKLOAD
    rng = random.Random(seed)
    reqs = []
    for i in range(n):
        plen = _lognormal(rng, w["in_median"], w["in_sigma"], w["in_clip"])
        out = _lognormal(rng, w["out_median"], w["out_sigma"], w["out_clip"])
        reqs.append(Req(f"q{i:06d}", [rng.randrange(3, vocab) for _ in range(plen)], out))
    return reqs


def write_spool(reqs: list[Req], spool: Path) -> Path:
    spool.mkdir(parents=True, exist_ok=True)
    tmp = spool / "work.tmp"
    with tmp.open("w", encoding="utf-8") as fh:
        for r in reqs:
            fh.write(json.dumps({"id": r.id, "prompt": r.prompt, "max_new_tokens": r.out}) + "\n")
    tmp.replace(spool / "work.jsonl")
    return spool


def useful_flops(spec: LlamaSpec, reqs: list[Req]) -> float:
    """Model FLOPs of the useful tokens: every prompt and output token once (matmuls + causal
    attention over its own context), no padding."""
    per_tok = spec.matmul_flops_per_token()
    total = 0.0
    for r in reqs:
        n = len(r.prompt) + r.out
        total += per_tok * n + spec.attention_flops(1) * n * (n + 1) / 2
    return total


def useful_bytes(spec: LlamaSpec, reqs: list[Req], steps: int, dtype_bytes: int) -> float:
    """Least HBM traffic for the useful work: all weights once per engine step, plus each
    useful decoded token reading its own KV context once."""
    weights = spec.param_count() * dtype_bytes
    kv = spec.kv_bytes_per_token(dtype_bytes)
    ctx = sum(len(r.prompt) * r.out + r.out * (r.out - 1) / 2 for r in reqs)
    return weights * steps + kv * ctx


def gpu_peaks(name: str | None) -> tuple[float | None, float | None]:
    for key, flops, bw in PEAKS:
        if name and key in name:
            return flops, bw
    return None, None


class UtilSampler:
    """Mean NVML utilisation and GPM SM utilisation over a phase (``None`` without NVML)."""

    def __init__(self, index: int = 0, interval: float = 0.25) -> None:
        from fabric_hpc.inference.telemetry import NvmlSampler

        # ``index`` is the CUDA device (cuda:index), which CUDA_VISIBLE_DEVICES maps; NVML ignores it
        self.nvml = NvmlSampler(index, os.environ.get("CUDA_VISIBLE_DEVICES"))
        self.interval = interval
        self._util: list[float] = []
        self._sm: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str | None:
        if self.nvml.handle is None:
            return None
        name = self.nvml.nvml.nvmlDeviceGetName(self.nvml.handle)
        return name.decode() if isinstance(name, bytes) else str(name)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            s = self.nvml.sample()
            if s["gpu_util"] is not None:
                self._util.append(s["gpu_util"])
            if s["gpu_sm_util"] is not None:
                self._sm.append(s["gpu_sm_util"])

    def __enter__(self) -> UtilSampler:
        self._util, self._sm = [], []
        self._stop.clear()
        if self.nvml.handle is not None:
            self.nvml.sample()  # first GPM sample of the phase
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def result(self) -> dict[str, float | None]:
        mean = (lambda xs: sum(xs) / len(xs) if xs else None)
        return {"nvml_util": mean(self._util), "gpm_sm_util": mean(self._sm)}
