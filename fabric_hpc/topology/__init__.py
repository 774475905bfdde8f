"""Fabric topology: a networkx model of GPUs, NVLink domains, NICs/rails, switches and NUMA.

Public surface::

    from fabric_hpc.topology import Fabric, FabricSpec, build, load_fabric, generators
    fab = build(generators.superpod(sus=4))
    fab.distance("su01-h01/gpu0", "su02-h05/gpu0")   # hops, bandwidth, latency in O(1)
"""

from collections.abc import Mapping
from typing import Any

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import generators
from fabric_hpc.topology.index import Distance, FabricIndex
from fabric_hpc.topology.io import DEFAULT_FABRIC, dump_spec, load_fabric, open_fabric, parse_spec, save_spec
from fabric_hpc.topology.discover import Discovery, discover
from fabric_hpc.topology.importers import import_csv, import_lingjun, import_node_list
from fabric_hpc.topology.model import Fabric, GpuInfo, Group
from fabric_hpc.topology.report import ReportSummary, write_report
from fabric_hpc.topology.spec import FabricSpec, HostType


def build(spec: FabricSpec | Mapping[str, Any]) -> Fabric:
    """Validate a spec (a :class:`FabricSpec`, or a mapping of the fabric file's keys) and build
    its fabric (graph and index)."""
    if not isinstance(spec, FabricSpec):
        from fabric_hpc.validation import parse_model

        if not isinstance(spec, Mapping):
            raise ConfigError(f"build() takes a FabricSpec or a mapping of the fabric file's keys, got "
                              f"{type(spec).__name__}", hint="for a file or a generator reference use open_fabric()")
        spec = parse_model(FabricSpec, dict(spec), source="<spec>", hint="see docs/topology.md for the format")
    return Fabric(spec)


__all__ = [
    "DEFAULT_FABRIC", "Discovery", "Distance", "Fabric", "FabricIndex", "FabricSpec", "GpuInfo", "Group",
    "HostType", "ReportSummary", "build", "discover", "dump_spec", "generators", "import_csv",
    "import_lingjun", "import_node_list", "load_fabric", "open_fabric", "parse_spec", "save_spec",
    "write_report",
]
