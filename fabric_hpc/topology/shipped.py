"""The fabric files shipped in the wheel (``topology/`` in the repository; ``fabric_hpc/fabrics`` is a
link to it), opened by name: ``gb200-nvl72-8r`` or ``gb200-nvl72-8r.yaml`` where no such file exists
in the working directory, so the documented examples work from an installed wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_SUFFIXES = (".yaml", ".yml")


def shipped_fabrics() -> dict[str, Path]:
    """Name -> path of each shipped fabric file (empty when the package has none)."""
    root = resources.files("fabric_hpc").joinpath("fabrics")
    if not root.is_dir():
        return {}
    out = {}
    for item in root.iterdir():
        if item.is_file() and item.name.endswith(_SUFFIXES):
            out[item.name.rsplit(".", 1)[0]] = Path(str(item))
    return dict(sorted(out.items()))


def shipped_fabric(ref: str) -> Path | None:
    """The shipped file a bare name (no directory) refers to, or None."""
    if "/" in ref or "\\" in ref:
        return None
    name = ref[: -len(ref.rsplit(".", 1)[1]) - 1] if ref.endswith(_SUFFIXES) else ref
    return shipped_fabrics().get(name)


def shipped_hint() -> str:
    """``; shipped with fabric-hpc by name: a, b, …`` (empty when none is)."""
    names = list(shipped_fabrics())
    return f"; shipped with fabric-hpc, by name: {', '.join(names)}" if names else ""
