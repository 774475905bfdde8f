"""Optional dependencies: the pip extras of ``pyproject.toml`` and the one error for a missing one.

The base install (``pip install fabric-hpc``) has no torch, safetensors or MPI. A command that needs
one imports it through :func:`require`, so a missing package is one line naming the extra to
install (exit code 5, an :class:`~fabric_hpc.errors.ExternalError`), never a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fabric_hpc.errors import ExternalError

#: pip extra (``pyproject.toml`` ``[project.optional-dependencies]``) -> the modules it installs.
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "safetensors", "transformers"),
    "mpi": ("mpi4py",),
}


def missing_dependency(module: str, extra: str, needed_for: str,
                       exc: ImportError | None = None) -> ExternalError:
    """The error for ``module`` (of pip extra ``extra``) that ``needed_for`` cannot import: not
    installed, or (``exc`` names another module or none) installed but broken."""
    hint = f"pip install 'fabric-hpc[{extra}]'"
    top = module.split(".")[0]
    if exc is None or str(exc.name or "").split(".")[0] == top:
        return ExternalError(f"{needed_for} needs {top}, which is not installed", hint=hint)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    return ExternalError(f"{needed_for} needs {top}, which is installed but cannot be imported ({first})",
                         hint=f"repair that installation: {hint} --force-reinstall")


def require(module: str, *, extra: str, needed_for: str) -> ModuleType:
    """``import module``, or the :func:`missing_dependency` error (``extra``: the pip extra that
    installs it; ``needed_for``: what needs it, in words, e.g. ``"PyTorch DCP export"``)."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown pip extra {extra!r}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_dependency(module, extra, needed_for, exc) from None
    except (RuntimeError, OSError) as exc:  # mpi4py >= 4 without a loadable MPI library: RuntimeError
        raise unloadable_dependency(module, extra, needed_for, exc) from None


def unloadable_dependency(module: str, extra: str, needed_for: str, exc: Exception) -> ExternalError:
    """The error for ``module`` that is installed but fails to load what it needs (a shared library)."""
    top = module.split(".")[0]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    why = ": ".join(lines[:2])[:300]
    if top == "mpi4py":
        return ExternalError(f"{needed_for} needs mpi4py, which cannot load the MPI library ({why})",
                             hint="make an MPI library loadable on every node: load your site's MPI "
                                  "(e.g. module load mpich) or pip install 'fabric-hpc[mpi]' (the PyPI "
                                  "mpich wheel); MPI4PY_LIBMPI, when set, must name that library")
    return ExternalError(f"{needed_for} needs {top}, which is installed but cannot be loaded ({why})",
                         hint=f"repair that installation: pip install 'fabric-hpc[{extra}]' "
                              "--force-reinstall")
