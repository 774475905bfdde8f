"""The declarative fabric description: the schema of ``topology/*.yaml`` (format version 1).

A fabric is host *types* (what a node contains), *hosts* (host-list expressions of a type),
optional multi-host *NVLink domains* (GB200 NVL72 racks), and a *network*: a tree of switch
*groups*, one level at a time from the hosts up (``levels: [leaf, spine, core]``). A group holds
``switches`` identical switches; every switch of a group is linked to every switch of its parent
group (a Clos stage). NIC ``i`` of a host attaches to switch ``i mod switches`` of its leaf
group, so a leaf group with one switch per NIC is rail-optimised. See ``docs/topology.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from fabric_hpc.errors import control_escapes
from fabric_hpc.hostlist import NAME_PATTERN
from fabric_hpc.validation import Loc, StrictModel

FORMAT_VERSION = 1
PositiveInt = int
Name = str


#: Upper bounds of a host type's sizes: generous for hardware to come (each is 50 to 1,000 times
#: today's largest), and small enough that every export stays a number Slurm and NCCL parse
#: (RealMemory in MiB, gres.conf Links= counts, NCCL's NIC speed in Mb/s) and sums stay finite.
MAX_MEMORY_GB = 1_000_000  # 1 PB per host (the largest today: 32 TB)
MAX_GPU_MEMORY_GB = 100_000  # per GPU (B300: 288 GB)
MAX_LINK_GBPS = 100_000  # NVLink per GPU (NVLink5: 1,800 GB/s), PCIe (x16 Gen6: 128), a NIC (800 Gb/s: 100)
#: The fastest NIC port made or announced (1.6 Tb/s: 200 GB/s; ConnectX-8's 800 Gb/s is 100): a host type's
#: nic_gbps above it is most likely Gb/s written as GB/s, and `fabric topology validate` warns.
FASTEST_NIC_GBPS = 200
#: The slowest bandwidth (GB/s) of a link, NIC or uplink: 1 MB/s (8 Mb/s), below any link in use (10 Mb/s
#: Ethernet: 0.00125). Smaller positives (5e-324) round a path's bandwidth to 0 and every cost to infinity.
MIN_GBPS = 0.001
MAX_UPLINK_GBPS = 100_000_000  # a switch's total uplink (the Lingjun aggregation switches: 144,800)
MAX_LATENCY_US = 1_000_000  # one second per switch hop
#: GPUs in one multi-host NVLink domain: NVLink 5's NVLink Switch system joins at most 576 (GB200 NVL72: 72).
MAX_NVLINK_DOMAIN_GPUS = 576
MAX_NICS = 64  # per host type
MAX_SWITCH_NAME = 64  # Slurm's topology/tree refuses a longer SwitchName (HOST_NAME_MAX, switch_record.c)


def _gbps(value: float | None) -> float | None:
    """A bandwidth field's value, refused between 0 and :data:`MIN_GBPS` (0 means none where allowed)."""
    if value is not None and 0 < value < MIN_GBPS:
        raise ValueError(f"is below {MIN_GBPS} GB/s (8 Mb/s), slower than 10 Mb/s Ethernet: give the "
                         "bandwidth in GB/s (a 400 Gb/s NIC is 50, PCIe Gen5 x16 is 64)")
    return value


#: A bandwidth in GB/s: 0 (where a field allows it) or at least MIN_GBPS.
Gbps = Annotated[float, AfterValidator(_gbps)]


class HostType(StrictModel):
    """What one host (one Slurm node) contains."""

    gpus: int = Field(ge=0, le=1024)
    gpu_model: str = Field(min_length=1)
    #: GB per GPU, at most 100,000 (see MAX_GPU_MEMORY_GB).
    gpu_memory_gb: float = Field(ge=0, le=MAX_GPU_MEMORY_GB, description="GB per GPU (H100: 80)")
    sockets: int = Field(ge=1, le=64)
    cores_per_socket: int = Field(ge=1, le=4096)
    threads_per_core: int = Field(default=1, ge=1, le=8)
    #: Host memory in GB: at least 1 MiB (Slurm's RealMemory is whole MiB), at most 1,000,000.
    memory_gb: float = Field(gt=0, le=MAX_MEMORY_GB, description="the host's memory in GB (2 TB: 2048)")
    #: NVLink bandwidth per GPU inside the host (GB/s); 0 when GPUs talk over PCIe only; ≤ 100,000.
    nvlink_gbps: Gbps = Field(ge=0, le=MAX_LINK_GBPS, description="GB/s per GPU (NVLink4: 900)")
    #: NVSwitch chips in the host; 0 with direct NVLink, PCIe only, or a multi-host domain.
    nvswitches: int = Field(ge=0, le=64)
    #: PCIe bandwidth per GPU (GB/s), ≤ 100,000.
    pcie_gbps: Gbps = Field(gt=0, le=MAX_LINK_GBPS, description="GB/s per GPU (PCIe Gen5 x16: 64)")
    nics: int = Field(ge=0, le=MAX_NICS)
    #: Bandwidth per NIC (GB/s: 400 Gb/s is 50), ≤ 100,000.
    nic_gbps: Gbps = Field(ge=0, le=MAX_LINK_GBPS,
                           description="GB/s per NIC, bytes not bits (400 Gb/s is 50)")
    #: CPU socket (NUMA domain) of each GPU; default: GPUs split evenly over sockets in order.
    gpu_numa: list[int] | None = None
    features: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(default_factory=list)

    @field_validator("memory_gb")
    @classmethod
    def _whole_mib(cls, value: float) -> float:
        if int(value * 1024) < 1:  # slurm.conf's RealMemory would be 0
            raise ValueError("is less than 1 MiB (Slurm's RealMemory counts whole MiB: it would be 0); "
                             "give the host's memory in GB, e.g. 512")
        return value


class HostEntry(StrictModel):
    names: str = Field(min_length=1)
    type: str = Field(min_length=1)
    rack: str | None = Field(default=None, pattern=NAME_PATTERN)


class NvlinkDomain(StrictModel):
    """GPUs of several hosts that share one NVLink fabric (a GB200 NVL72 rack: 18 hosts)."""

    name: str = Field(pattern=NAME_PATTERN)
    hosts: str = Field(min_length=1)
    #: NVLink bandwidth per GPU in the domain (GB/s; GB200: 1,800), ≤ 100,000.
    gbps: Gbps = Field(gt=0, le=MAX_LINK_GBPS)
    nvswitches: int = Field(ge=1, le=256)


class SwitchGroup(StrictModel):
    name: str = Field(pattern=NAME_PATTERN)
    level: str = Field(pattern=NAME_PATTERN)
    switches: int = Field(ge=1, le=4096)
    #: Only at the lowest level: the hosts under this group.
    hosts: str | None = None
    #: Above the lowest level: names of the groups one level down.
    children: list[str] = Field(default_factory=list)
    #: Total uplink bandwidth of EACH switch toward its parent group (GB/s; ≤ 10^8); none at the top.
    uplink_gbps: Gbps | None = Field(default=None, gt=0, le=MAX_UPLINK_GBPS)
    #: Latency of one hop through a switch of this group (µs), ≤ 1,000,000.
    latency_us: float = Field(default=0.6, ge=0, le=MAX_LATENCY_US)


class Network(StrictModel):
    levels: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(min_length=1, max_length=8)
    groups: list[SwitchGroup] = Field(min_length=1)


class FabricSpec(StrictModel):
    fabric: Literal[1]

    @field_validator("fabric", mode="before")
    @classmethod
    def _format_number(cls, value: Any) -> Any:
        if isinstance(value, bool):  # True == 1 in Python: a YAML `fabric: true` is not format 1
            raise ValueError("the format is the number 1 (fabric: 1), not true/false")
        return value

    name: str = Field(min_length=1)  # printed in exports' comment lines: no control character

    @field_validator("name")
    @classmethod
    def _one_line_name(cls, value: str) -> str:
        if bad := control_escapes(value):  # YAML 1.1 and str.splitlines break lines at U+0085, U+2028
            raise ValueError(f"holds control characters or line breaks ({', '.join(bad)}): the name is "
                             "printed in the comment line of every exported file; write it on one line "
                             "of printable characters")
        return value

    description: str = ""
    host_types: dict[str, HostType] = Field(min_length=1)
    hosts: list[HostEntry] = Field(min_length=1)
    nvlink_domains: list[NvlinkDomain] = Field(default_factory=list)
    network: Network | None = None


#: Where a location of the parsed file lies (its line), for errors (None: unknown).
Locate = Callable[[Loc], int | None]
