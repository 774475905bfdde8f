"""Interop benchmark: ``.venv/bin/python -m benchmarks.checkpoint.interop [--gib 2] [--rounds 1] [--only convert]``.

On the same synthetic LLM-like state as ``benchmarks.checkpoint`` (flat Hugging Face-style
names), in one process and on one disk: safetensors save/load vs ``fabric ckpt
import-hf``/``export-hf``, torch.distributed.checkpoint save/load vs ``import-dcp``/
``export-dcp``, and ``convert`` (a rename of every tensor, and an fp32 -> bf16 cast) vs a raw
copy of the checkpoint directory (copy + fsync), each also with ``workers=1`` (one tensor at a
time) for the gain of the parallel convert in the same run. Every timed operation writes its output
durably (fsync) and reads its input cold (page cache dropped first, when root). Prints JSON rows
and a markdown table of ratios (throughput of ours / theirs, in one run), with wall and CPU
seconds (``time.process_time``, all threads of the process).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.checkpoint import methods as m
from benchmarks.checkpoint.state import flat, llm_state, nbytes

TARGETS = {"import-hf / safetensors save": 0.8, "export-hf / safetensors save": 0.8,
           "import-dcp / DCP save": 0.8, "export-dcp / DCP save": 0.8,
           "convert (rename) / raw copy": 0.5, "convert (fp32->bf16) / raw copy": 0.5}


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def _contenders(state: dict[str, Any], base: Path) -> list[tuple[str, Any]]:
    import safetensors.torch as st
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemReader, FileSystemWriter

    from fabric_hpc.checkpoint.convert import convert
    from fabric_hpc.checkpoint.interop.dcp import export_dcp, import_dcp
    from fabric_hpc.checkpoint.interop.hf import export_hf, import_hf

    def st_save() -> None:
        (base / "hf").mkdir()
        st.save_file(state, str(base / "hf" / "model.safetensors"), metadata={"format": "pt"})
        _fsync_file(base / "hf" / "model.safetensors")

    def dcp_load() -> None:
        out = {k: torch.empty_like(v) for k, v in state.items()}
        dcp.load(out, storage_reader=FileSystemReader(str(base / "dcp")), no_dist=True)

    def raw_copy() -> None:
        shutil.copytree(base / "fabric", base / "copy")
        for d, _, files in os.walk(base / "copy"):
            for f in files:
                _fsync_file(Path(d) / f)

    return [
        ("safetensors save", st_save),
        ("safetensors load", lambda: st.load_file(str(base / "hf" / "model.safetensors"))),
        ("import-hf", lambda: import_hf(base / "hf", base / "fabric")),
        ("export-hf", lambda: export_hf(base / "fabric", base / "hf-out")),
        ("DCP save", lambda: dcp.save(state, storage_writer=FileSystemWriter(str(base / "dcp")), no_dist=True)),
        ("DCP load", dcp_load),
        ("import-dcp", lambda: import_dcp(base / "dcp", base / "fabric-dcp", trust_pickle=True)),
        ("export-dcp", lambda: export_dcp(base / "fabric", base / "dcp-out")),
        ("raw copy", raw_copy),
        ("convert (rename)", lambda: convert(base / "fabric", base / "conv-rename",
                                             {"rename": [{"pattern": "^model", "replace": "m"}]})),
        ("convert (fp32->bf16)", lambda: convert(base / "fabric", base / "conv-bf16",
                                                 {"cast": [{"match": ".*", "to": "bfloat16"}]})),
        # the same, one tensor at a time (as before the parallel convert), for the gain in one run
        ("convert (rename, 1 worker)", lambda: convert(base / "fabric", base / "conv-rename-1",
                                                       {"rename": [{"pattern": "^model", "replace": "m"}]},
                                                       workers=1)),
        ("convert (fp32->bf16, 1 worker)", lambda: convert(base / "fabric", base / "conv-bf16-1",
                                                           {"cast": [{"match": ".*", "to": "bfloat16"}]}, workers=1)),
    ]


NEEDS = {"import-hf": "safetensors save", "export-hf": "import-hf", "import-dcp": "DCP save",
         "export-dcp": "import-hf", "convert": "import-hf", "DCP load": "DCP save", "safetensors load":
         "safetensors save", "raw copy": "import-hf"}


def _selected(ops: list[str], only: list[str] | None) -> set[str]:
    """The ops whose name contains one of ``only`` (all when None), with what they need first."""
    if not only:
        return set(ops)
    keep = {op for op in ops if any(o in op for o in only)}
    keep |= {"raw copy"} if any(op.startswith("convert") for op in keep) else set()
    keep |= {"safetensors save"} if keep & {"import-hf", "export-hf"} else set()
    keep |= {"DCP save"} if any("dcp" in op for op in keep) else set()
    changed = True
    while changed:
        need = {dep for op in keep for k, dep in NEEDS.items() if op.startswith(k)}
        changed = not need <= keep
        keep |= need
    return keep


def run(gib: float, base: Path, only: list[str] | None = None) -> list[dict[str, Any]]:
    import warnings
    warnings.filterwarnings("ignore", module=r"torch\.distributed\.checkpoint.*")
    state = {name.replace("/", "."): t for name, t in flat(llm_state(gib))}
    size = nbytes(state)
    m.clear(base)
    rows = []
    contenders = _contenders(state, base)
    keep = _selected([n for n, _ in contenders], only)
    for name, fn in contenders:
        if name not in keep:
            continue
        cold = m.drop_caches()
        cpu0 = time.process_time()
        secs, _, rss = m.timed(fn)
        rows.append({"op": name, "seconds": secs, "cpu_seconds": time.process_time() - cpu0,
                     "gbps": size / secs / 1e9, "peak_rss_extra_gib": rss / 2**30, "cold": cold})
        print(json.dumps(rows[-1]), flush=True)
    shutil.rmtree(base, ignore_errors=True)
    return rows


def ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    s = {r["op"]: r["seconds"] for r in rows}
    pairs = {"import-hf / safetensors save": ("import-hf", "safetensors save"),
             "export-hf / safetensors save": ("export-hf", "safetensors save"),
             "import-dcp / DCP save": ("import-dcp", "DCP save"), "export-dcp / DCP save": ("export-dcp", "DCP save"),
             "convert (rename) / raw copy": ("convert (rename)", "raw copy"),
             "convert (fp32->bf16) / raw copy": ("convert (fp32->bf16)", "raw copy"),
             "import-dcp / DCP load": ("import-dcp", "DCP load"),  # import = a load + a durable write
             "convert (rename, 1 worker) / raw copy": ("convert (rename, 1 worker)", "raw copy"),
             "convert (fp32->bf16, 1 worker) / raw copy": ("convert (fp32->bf16, 1 worker)", "raw copy")}
    return {k: s[b] / s[a] for k, (a, b) in pairs.items() if a in s and b in s}


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| operation | seconds | CPU seconds | GB/s | peak RSS above start (GiB) |", "|---|---|---|---|---|"]
    out += [f"| {r['op']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | {r['gbps']:.3f} | "
            f"{r['peak_rss_extra_gib']:.2f} |" for r in rows]
    out += ["", "| ratio (throughput, ours / theirs) | value | target | met |", "|---|---|---|---|"]
    out += [f"| {k} | {v:.2f} | >= {TARGETS[k]} | {'yes' if v >= TARGETS[k] else '**no**'} |" if k in TARGETS
            else f"| {k} | {v:.2f} | (reference) | |" for k, v in ratios(rows).items()]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.checkpoint.interop")
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/fabric-interop-bench"))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", action="append", default=None,
                    help="run only operations whose name contains this (repeatable; their baselines too)")
    args = ap.parse_args(argv)
    for i in range(args.rounds):
        rows = run(args.gib, args.dir, args.only)
        print(f"\nround {i + 1}\n" + table(rows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
