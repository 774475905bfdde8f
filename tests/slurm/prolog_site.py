"""A node as the root Prolog leaves it, for the TaskProlog tests: a fabric file, prolog.json and a
ckpt root in a fresh root-owned directory under /tmp (the hints file is trusted only when root's)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def make_site(fab: Any, prefix: str) -> tuple[Path, dict[str, str]]:
    """(the site's directory, its prolog.json settings); the caller removes the directory."""
    from fabric_hpc.topology import save_spec

    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    base.chmod(0o755)
    save_spec(fab.spec, base / "topology.yaml")
    (base / "ckpt").mkdir(mode=0o755)
    cfg = {"topology": str(base / "topology.yaml"), "topo_dir": str(base / "nccl"),
           "ckpt_root": str(base / "ckpt")}
    (base / "prolog.json").write_text(json.dumps(cfg))
    return base, cfg


@contextmanager
def superpod_site(prefix: str, trusted: str) -> Iterator[tuple[Any, Path, dict[str, str]]]:
    """(a one-SU SuperPOD, :func:`make_site`'s directory and settings), removed afterwards; only as root
    (``trusted``: which file the Prolog trusts only when root's)."""
    from fabric_hpc.topology import build, generators
    from tests.real import require_real

    require_real("slurm", os.geteuid() == 0, f"the {trusted} file is trusted only when root's: run as root")
    fab = build(generators.superpod(1))
    base, cfg = make_site(fab, prefix)
    try:
        yield fab, base, cfg
    finally:
        shutil.rmtree(base)
