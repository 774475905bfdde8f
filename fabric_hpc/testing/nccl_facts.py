"""A discovery sidecar for a host of a generated fabric model, as ``fabric topology discover`` writes
one on a real host (``<topo_dir>/<host>.facts.json``): what the Prolog needs to write the host's NCCL
topology file. SYNTHETIC: the bus ids follow a DGX layout (GPU ``i`` and HCA ``i`` under one PCIe
switch per rail) but belong to no machine; tests use it where a real host's facts cannot be had.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from fabric_hpc.topology import Fabric
from fabric_hpc.topology.model import gpu_numa_of, rail_of
from fabric_hpc.topology.nccl_xml import SIDECAR_FORMAT


def synthetic_facts(fab: Fabric, host: str) -> dict[str, Any]:
    """The sidecar of ``host``: GPUs and compute HCAs with bus ids and bridges, CPU ids, NUMA nodes."""
    ht = fab.host_type(host)
    numa = gpu_numa_of(ht)
    cores = ht.cores_per_socket * ht.threads_per_core

    def bridges(rail: int, socket: int) -> list[str]:
        return [f"0000:{0x10 * (rail + 1):02x}:01.0", f"0000:{0x10 * (rail + 1) + 1:02x}:00.{socket}"]

    rails = [rail_of(ht, i) if ht.nics else i for i in range(ht.gpus)]
    gpus = [{"index": i, "pci_bus_id": f"00000000:{0x10 * (rails[i] + 1) + 3 + i % 12:02X}:00.0",
             "pci_bridges": bridges(rails[i], numa[i]), "numa_node": numa[i], "socket": numa[i]}
            for i in range(ht.gpus)]
    hcas = [{"name": f"mlx5_{n}", "pci": f"0000:{0x10 * (n + 1) + 2:02x}:00.0", "pci_bridges": bridges(n, 0),
             "numa_node": 0, "ports": [{"port": 1, "state": "ACTIVE", "rate_gbit": ht.nic_gbps * 8}]}
            for n in range(ht.nics)]
    for h in hcas:  # the HCA of rail n sits on the socket of the GPUs of that rail
        on = [g for g in gpus if rails[g["index"]] == int(h["name"][5:])]
        if on:
            h["numa_node"], h["pci_bridges"] = on[0]["numa_node"], on[0]["pci_bridges"]
    return {"format": SIDECAR_FORMAT, "version": 1, "host": host, "gpus": gpus, "hcas": hcas,
            "cpus": {"sockets": ht.sockets, "vendor": "GenuineIntel", "familyid": 6, "modelid": 143},
            "numa_nodes": [{"node": s, "cpus": f"{s * cores}-{(s + 1) * cores - 1}", "socket": s}
                           for s in range(ht.sockets)]}


def write_facts(topo_dir: str | os.PathLike[str], fab: Fabric, host: str) -> Path:
    """Write :func:`synthetic_facts` of ``host`` where the Prolog reads it (mode 0644; ``topo_dir``
    created 0755 when missing)."""
    from fabric_hpc.slurm.task_fast import facts_path

    directory = Path(topo_dir)
    if not directory.exists():
        directory.mkdir(parents=True, mode=0o755)
        os.chmod(directory, 0o755)
    path = facts_path(directory, host)
    path.write_text(json.dumps(synthetic_facts(fab, host), indent=1) + "\n")
    path.chmod(0o644)
    return path
