"""Generators of reference fabrics, from NVIDIA's published reference architectures.

- :func:`superpod`: DGX H100 SuperPOD. A scalable unit (SU) is 32 DGX H100 hosts (256 GPUs) with
  8 rail leaf switches (leaf ``r`` serves NIC ``r`` of every host). Up to 4 SUs share one spine
  group of 16 switches; larger pods put spine groups (4 SUs each) under a core layer.
- :func:`nvl72`: GB200 NVL72 racks: 18 hosts × 4 GPUs share one NVLink domain (1.8 TB/s per GPU);
  4 NICs per host (400 Gb/s, ~50 GB/s per GPU leaving the rack); 8 racks per SU, rail leaves
  per SU, one spine group.
- :func:`fat_tree`: a generic k-ary fat tree (k pods; k/2 edge and k/2 aggregation switches per
  pod; (k/2)² core switches; k/2 hosts per edge switch), full bisection.
- :func:`leaf_spine`: a small two-level tree (``n1..nN`` hosts, a leaf switch per
  ``hosts_per_leaf``), used by the live Slurm test cluster.

Each returns a :class:`FabricSpec`; :func:`fabric_hpc.topology.build` turns it into a Fabric.
"""

from __future__ import annotations

import re

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import compress
from fabric_hpc.topology.spec import FabricSpec, HostType

NIC_400G_GBPS = 50.0  # 400 Gb/s ConnectX-7 ≈ 50 GB/s

DGX_H100 = HostType(gpus=8, gpu_model="H100-SXM5-80GB", gpu_memory_gb=80, sockets=2, cores_per_socket=56,
                    threads_per_core=2, memory_gb=2048, nvlink_gbps=900, nvswitches=4, pcie_gbps=64,
                    nics=8, nic_gbps=NIC_400G_GBPS, features=["h100", "nvlink", "ib"])
GB200_TRAY = HostType(gpus=4, gpu_model="GB200", gpu_memory_gb=186, sockets=2, cores_per_socket=72,
                      threads_per_core=1, memory_gb=960, nvlink_gbps=0, nvswitches=0, pcie_gbps=64,
                      nics=4, nic_gbps=NIC_400G_GBPS, features=["gb200", "nvl72", "ib"])


_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message, hint="see docs/topology.md for the generators' parameters and ranges")


def _typed(fn):
    """Refuse arguments of the wrong type (``superpod("4")``) with a ConfigError naming them, before
    the range checks compare them: ints where the signature says int, numbers where it says float."""
    import functools
    import inspect
    import math

    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        for name, value in sig.bind(*args, **kwargs).arguments.items():
            want = sig.parameters[name].annotation
            ok = (isinstance(value, int) if want == "int" else
                  isinstance(value, (int, float)) and math.isfinite(value) if want == "float" else True)
            if not ok or isinstance(value, bool):
                raise ConfigError(f"{fn.__name__}: {name} must be {'a whole number' if want == 'int' else 'a finite number'}, "
                                  f"got {value!r}", hint="see docs/topology.md for the generators' parameters and ranges")
        return fn(*args, **kwargs)

    return checked


@_typed
def superpod(sus: int = 4, *, sus_per_spine_group: int = 4, hosts_per_su: int = 32) -> FabricSpec:
    """A DGX H100 SuperPOD of ``sus`` scalable units (rail-optimised, full bisection)."""
    _require(1 <= sus <= 256, f"superpod: sus={sus} must be in 1..256")
    _require(1 <= hosts_per_su <= 64, f"superpod: hosts_per_su={hosts_per_su} must be in 1..64")
    _require(1 <= sus_per_spine_group <= 64, f"superpod: sus_per_spine_group={sus_per_spine_group} must be in 1..64")
    rails = DGX_H100.nics
    hosts, groups = [], []
    for su in range(1, sus + 1):
        names = f"su{su:02d}-h[01-{hosts_per_su:02d}]"
        hosts.append({"names": names, "type": "dgx-h100"})
        # a leaf has one port per host down and as many up: full bisection
        groups.append({"name": f"su{su:02d}-leaf", "level": "leaf", "switches": rails, "hosts": names,
                       "uplink_gbps": hosts_per_su * NIC_400G_GBPS, "latency_us": 0.6})
    nsg = -(-sus // sus_per_spine_group)
    levels = ["leaf", "spine"] if nsg == 1 else ["leaf", "spine", "core"]
    for sg in range(nsg):
        children = [f"su{su:02d}-leaf" for su in range(sg * sus_per_spine_group + 1,
                                                       min(sus, (sg + 1) * sus_per_spine_group) + 1)]
        down_links = len(children) * rails * hosts_per_su
        spine = {"name": "spine" if nsg == 1 else f"spine{sg + 1:02d}", "level": "spine", "switches": 16,
                 "children": children, "latency_us": 0.6}
        if nsg > 1:
            spine["uplink_gbps"] = down_links * NIC_400G_GBPS / 16
        groups.append(spine)
    if nsg > 1:
        groups.append({"name": "core", "level": "core", "switches": 32, "latency_us": 0.6,
                       "children": [f"spine{sg + 1:02d}" for sg in range(nsg)]})
    return _spec(f"dgx-h100-superpod-{sus}su", f"DGX H100 SuperPOD, {sus} SU ({sus * hosts_per_su} hosts)",
                 {"dgx-h100": DGX_H100}, hosts, levels, groups)


@_typed
def nvl72(racks: int = 8, *, racks_per_su: int = 8) -> FabricSpec:
    """GB200 NVL72 racks: each rack one 72-GPU NVLink domain of 18 hosts."""
    _require(1 <= racks <= 512, f"nvl72: racks={racks} must be in 1..512")
    _require(1 <= racks_per_su <= 512, f"nvl72: racks_per_su={racks_per_su} must be in 1..512")
    hosts, domains, groups = [], [], []
    for r in range(1, racks + 1):
        names = f"r{r:03d}-h[01-18]"
        hosts.append({"names": names, "type": "gb200", "rack": f"r{r:03d}"})
        domains.append({"name": f"r{r:03d}", "hosts": names, "gbps": 1800.0, "nvswitches": 18})
    nsu = -(-racks // racks_per_su)
    for su in range(nsu):
        members = range(su * racks_per_su + 1, min(racks, (su + 1) * racks_per_su) + 1)
        names = ",".join(f"r{r:03d}-h[01-18]" for r in members)
        groups.append({"name": f"su{su + 1:02d}-leaf", "level": "leaf", "switches": GB200_TRAY.nics,
                       "hosts": names, "uplink_gbps": len(members) * 18 * NIC_400G_GBPS, "latency_us": 0.6})
    groups.append({"name": "spine", "level": "spine", "switches": max(2, 2 * nsu), "latency_us": 0.6,
                   "children": [f"su{su + 1:02d}-leaf" for su in range(nsu)]})
    return _spec(f"gb200-nvl72-{racks}r", f"GB200 NVL72, {racks} racks ({racks * 72} GPUs)",
                 {"gb200": GB200_TRAY}, hosts, ["leaf", "spine"], groups, domains)


@_typed
def fat_tree(k: int = 8, *, gpus_per_host: int = 8, nic_gbps: float = NIC_400G_GBPS) -> FabricSpec:
    """A k-ary fat tree with k³/4 hosts (DGX-like hosts with one NIC, full bisection)."""
    _require(k >= 2 and k % 2 == 0 and k <= 64, f"fat_tree: k={k} must be an even number in 2..64")
    _require(0 <= gpus_per_host <= 64, f"fat_tree: gpus_per_host={gpus_per_host} must be in 0..64")
    _require(0 < nic_gbps <= 100_000, f"fat_tree: nic_gbps={nic_gbps} must be in (0, 100000]")
    half = k // 2
    ht = DGX_H100.model_copy(update={"gpus": gpus_per_host, "nics": 1, "nic_gbps": nic_gbps,
                                     "gpu_numa": None, "features": ["fattree"]})
    hosts, groups = [], []
    n = 0
    for pod in range(1, k + 1):
        edges = []
        for e in range(1, half + 1):
            names = compress(f"h{n + i:04d}" for i in range(1, half + 1))
            n += half
            hosts.append({"names": names, "type": "node"})
            name = f"p{pod:02d}-edge{e:02d}"
            edges.append(name)
            groups.append({"name": name, "level": "edge", "switches": 1, "hosts": names,
                           "uplink_gbps": half * nic_gbps})
        groups.append({"name": f"p{pod:02d}-agg", "level": "aggregation", "switches": half, "children": edges,
                       "uplink_gbps": half * nic_gbps})
    groups.append({"name": "core", "level": "core", "switches": half * half,
                   "children": [f"p{pod:02d}-agg" for pod in range(1, k + 1)]})
    return _spec(f"fat-tree-k{k}", f"{k}-ary fat tree ({k ** 3 // 4} hosts)", {"node": ht}, hosts,
                 ["edge", "aggregation", "core"], groups)


@_typed
def leaf_spine(hosts: int = 16, *, hosts_per_leaf: int | None = None, gpus: int = 8, cpus: int = 8,
               memory_gb: float = 16.0, prefix: str = "n") -> FabricSpec:
    """A small leaf/spine tree with hosts ``<prefix>1..<prefix>N`` (one NIC each); ``hosts_per_leaf``
    defaults to 4 (all of them when there are fewer)."""
    _require(1 <= hosts <= 4096, f"leaf_spine: hosts={hosts} must be in 1..4096")
    if hosts_per_leaf is None:
        hosts_per_leaf = min(4, hosts)
    _require(1 <= hosts_per_leaf <= hosts, f"leaf_spine: hosts_per_leaf={hosts_per_leaf} must be in 1..hosts={hosts} "
                                           f"(give hosts_per_leaf=N with N ≤ hosts)")
    _require(cpus % 2 == 0 and 2 <= cpus <= 4096, f"leaf_spine: cpus={cpus} must be even, 2..4096 (two sockets)")
    _require(0 <= gpus <= 64, f"leaf_spine: gpus={gpus} must be in 0..64")
    _require(0 < memory_gb <= 1_000_000, f"leaf_spine: memory_gb={memory_gb} must be in (0, 1000000]")
    _require(isinstance(prefix, str) and _PREFIX.match(prefix) is not None,
             f"leaf_spine: prefix={prefix!r} must start with a letter and hold only letters, digits, '-', '_'")
    ht = HostType(gpus=gpus, gpu_model="H100-SXM5-80GB", gpu_memory_gb=80, sockets=2,
                  cores_per_socket=cpus // 2, threads_per_core=1, memory_gb=memory_gb,
                  nvlink_gbps=900 if gpus > 1 else 0, nvswitches=4 if gpus > 1 else 0, pcie_gbps=64,
                  nics=1, nic_gbps=NIC_400G_GBPS, features=["h100"])
    groups, leaves = [], []
    for leaf, start in enumerate(range(1, hosts + 1, hosts_per_leaf), 1):
        names = compress(f"{prefix}{i}" for i in range(start, min(hosts, start + hosts_per_leaf - 1) + 1))
        leaves.append(f"leaf{leaf}")
        groups.append({"name": f"leaf{leaf}", "level": "leaf", "switches": 1, "hosts": names,
                       "uplink_gbps": hosts_per_leaf * NIC_400G_GBPS})
    groups.append({"name": "spine", "level": "spine", "switches": 1, "children": leaves})
    return _spec(f"leaf-spine-{hosts}", f"{hosts} hosts, {len(leaves)} leaves", {"node": ht},
                 [{"names": compress(f"{prefix}{i}" for i in range(1, hosts + 1)), "type": "node"}],
                 ["leaf", "spine"], groups)


def _spec(name: str, description: str, host_types: dict, hosts: list, levels: list, groups: list,
          domains: list | None = None) -> FabricSpec:
    return FabricSpec.model_validate({
        "fabric": 1, "name": name, "description": description,
        "host_types": {k: v.model_dump() for k, v in host_types.items()},
        "hosts": hosts, "nvlink_domains": domains or [],
        "network": {"levels": levels, "groups": groups},
    })


GENERATORS = {"superpod": superpod, "nvl72": nvl72, "fat-tree": fat_tree, "leaf-spine": leaf_spine}
