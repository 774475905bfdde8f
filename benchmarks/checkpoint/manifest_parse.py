"""CPU time of parsing a manifest of N tiny tensors (``parse_manifest``: what open, show, verify
and restore do first). The manifest is built with the writer's models (TensorEntry, ChunkEntry,
SplitInfo; every third tensor a bf16 one split in two chunks), no chunk files are written.

    PYTHONPATH=. .venv/bin/python -m benchmarks.checkpoint.manifest_parse N [REPEATS]
"""

from __future__ import annotations

import gc
import sys
import time

from fabric_hpc.checkpoint.format import (
    ChunkEntry, Manifest, SplitInfo, TensorEntry, dumps, manifest_document, parse_manifest,
)


def build(n: int) -> bytes:
    """The root zarr.json of a checkpoint of ``n`` tensors ("model/layers/L/experts/E/w")."""
    tensors = {}
    for i in range(n):
        name = f"model/layers/{i // 8}/experts/{i % 8}/w"
        if i % 3 == 0:
            tensors[name] = TensorEntry(path=name, shape=[4, 2], dtype="bfloat16", stored_dtype="uint16",
                                        chunk_shape=[2, 2], split=SplitInfo(dim=0, parts=2),
                                        chunks=[ChunkEntry(index=[0, 0], nbytes=8, crc32c=123),
                                                ChunkEntry(index=[1, 0], nbytes=8, crc32c=4294967295)])
        else:
            tensors[name] = TensorEntry(path=name, shape=[4], dtype="float32", stored_dtype="float32",
                                        chunk_shape=[4], chunks=[ChunkEntry(index=[0], nbytes=16, crc32c=7)])
    m = Manifest(format="fabric-checkpoint", format_version=1, step=5, created_at="2026-12-06T00:00:00Z",
                 world_size=2, nbytes=0, tensors=tensors)
    return dumps(manifest_document(m))


def main(argv: list[str]) -> None:
    n = int(argv[0])
    repeats = int(argv[1]) if len(argv) > 1 else 1
    raw = build(n)
    for _ in range(repeats):
        gc.collect()
        t = time.process_time()
        parse_manifest(raw, "bench")
        print(f"n={n} bytes={len(raw)} parse_cpu_s={time.process_time() - t:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
