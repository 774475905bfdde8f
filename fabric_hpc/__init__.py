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

#: The built-in default cluster (``open_fabric(None)``, ``make demo``): a generator reference, kept
#: here so that the CLI can name it without importing the topology package.
DEFAULT_FABRIC = "superpod:sus=4"

try:
    __version__ = version("fabric-hpc")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "DEFAULT_FABRIC",
    "ConfigError",
    "ExternalError",
    "FabricError",
    "InfeasibleError",
    "NotFoundError",
    "__version__",
]
