"""fabric-hpc: fabric-aware placement, scheduling, checkpoints and batch inference for Slurm.

Each subsystem is a subpackage usable on its own; heavy optional dependencies (torch,
tensorrt_llm, pyslurm, mpi4py) are imported lazily inside the code that needs them.
The library never configures logging: the ``fabric`` CLI does.
"""

from importlib.metadata import PackageNotFoundError, version

from fabric_hpc.errors import (
    ConfigError,
    ExternalError,
    FabricError,
    InfeasibleError,
    NotFoundError,
)

try:
    __version__ = version("fabric-hpc")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "ConfigError",
    "ExternalError",
    "FabricError",
    "InfeasibleError",
    "NotFoundError",
    "__version__",
]
