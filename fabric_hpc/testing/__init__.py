"""Test helpers shipped with fabric-hpc (as zarr ships ``zarr.testing``).

:class:`SlurmTestCluster` starts a real, throw-away Slurm cluster of emulated nodes on loopback
(root needed); the project's tests use it through the session fixtures in ``tests/conftest.py``.
See ``docs/testing.md``.
"""

from fabric_hpc.testing._slurm_config import NodeSpec, parse_key_values, tree_topology_conf
from fabric_hpc.testing.slurm_cluster import SlurmTestCluster, check_prerequisites

__all__ = [
    "NodeSpec",
    "SlurmTestCluster",
    "check_prerequisites",
    "parse_key_values",
    "tree_topology_conf",
]
