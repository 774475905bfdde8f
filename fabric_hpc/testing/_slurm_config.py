"""Configuration text for the live Slurm test cluster (pure functions, no processes).

Kept apart from :mod:`fabric_hpc.testing.slurm_cluster` so the rendering can be read and tested
without starting daemons: node specs, the generated ``slurm.conf`` / ``gres.conf`` /
``topology.conf`` text, free-port selection and the fake GPU device paths named by ``gres.conf``.
"""

from __future__ import annotations

import random
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fabric_hpc.errors import ConfigError
from fabric_hpc.hostlist import expand

# Keys the cluster itself sets on every NodeName line; a node spec may not override them.
_CLUSTER_NODE_KEYS = ("NodeName", "NodeHostname", "NodeAddr", "Port", "State")
_NODE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class NodeSpec:
    """One emulated Slurm node: what its ``NodeName=`` line declares.

    ``gpus`` fake GPUs are declared as ``Gres=gpu[:gpu_type]:N``; ``extra`` holds further
    ``NodeName`` fields verbatim (e.g. ``{"Weight": "10"}``); its ``Gres`` (``nvme:1``) joins the GPUs
    (declare it in ``gres.conf`` too, e.g. ``NodeName=n1 Name=nvme Count=1``, and in ``GresTypes``).
    """

    name: str
    cpus: int = 8
    gpus: int = 0
    real_memory_mb: int = 16000
    sockets: int | None = None
    cores_per_socket: int | None = None
    threads_per_core: int | None = None
    gpu_type: str | None = None
    features: tuple[str, ...] = ()
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NODE_NAME.match(self.name):
            raise ConfigError(f"bad Slurm node name {self.name!r}", hint="use letters, digits, '-', '_'")
        if self.cpus < 1 or self.gpus < 0 or self.real_memory_mb < 1:
            raise ConfigError(
                f"node {self.name}: cpus={self.cpus}, gpus={self.gpus}, "
                f"real_memory_mb={self.real_memory_mb} are not possible",
                hint="cpus >= 1, gpus >= 0, real_memory_mb >= 1",
            )
        bad = sorted(set(self.extra) & set(_CLUSTER_NODE_KEYS))
        if bad:
            raise ConfigError(f"node {self.name}: {', '.join(bad)} are set by the test cluster itself")

    def fields(self) -> dict[str, str]:
        """The ``NodeName`` fields of this node, without the cluster-owned ones."""
        out = {"CPUs": str(self.cpus)}
        for key, value in (
            ("Sockets", self.sockets),
            ("CoresPerSocket", self.cores_per_socket),
            ("ThreadsPerCore", self.threads_per_core),
        ):
            if value is not None:
                out[key] = str(value)
        out["RealMemory"] = str(self.real_memory_mb)
        if self.gpus:
            out["Gres"] = f"gpu:{self.gpu_type}:{self.gpus}" if self.gpu_type else f"gpu:{self.gpus}"
        if self.features:
            out["Features"] = ",".join(self.features)
        gres = ",".join(filter(None, (out.get("Gres"), self.extra.get("Gres"))))
        out.update(self.extra)
        if gres:  # other GRES of ``extra`` (``nvme:1``) join the GPUs
            out["Gres"] = gres
        return out

    @classmethod
    def from_fields(cls, name: str, fields: Mapping[str, str]) -> NodeSpec:
        """Build a spec from ``NodeName`` fields (as an exporter writes them).

        ``CPUs``, ``RealMemory``, ``Sockets``, ``CoresPerSocket``, ``ThreadsPerCore``, ``Features``
        and the ``gpu`` entry of ``Gres`` become typed attributes; everything else goes to ``extra``.
        """
        rest = {k: str(v) for k, v in fields.items() if k not in _CLUSTER_NODE_KEYS}

        def take_int(key: str) -> int | None:
            value = rest.pop(key, None)
            if value is None:
                return None
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"node {name}: {key}={value!r} is not an integer") from None

        gpus, gpu_type, other_gres = _split_gres(name, rest.pop("Gres", ""))
        if other_gres:
            rest["Gres"] = ",".join(other_gres)
        features = tuple(f for f in rest.pop("Features", "").split(",") if f)
        return cls(
            name=name,
            cpus=take_int("CPUs") or 1,
            gpus=gpus,
            real_memory_mb=take_int("RealMemory") or 1,
            sockets=take_int("Sockets"),
            cores_per_socket=take_int("CoresPerSocket"),
            threads_per_core=take_int("ThreadsPerCore"),
            gpu_type=gpu_type,
            features=features,
            extra=rest,
        )


def _split_gres(node: str, gres: str) -> tuple[int, str | None, list[str]]:
    """``gpu:h100:8,foo:1`` -> (8, "h100", ["foo:1"])."""
    gpus, gpu_type, other = 0, None, []
    for item in filter(None, (part.strip() for part in gres.split(","))):
        parts = re.sub(r"\(.*\)$", "", item).split(":")
        if parts[0] != "gpu":
            other.append(item)
            continue
        try:
            gpus += int(parts[-1]) if len(parts) > 1 else 1
        except ValueError:
            raise ConfigError(f"node {node}: cannot read GPU count in Gres={gres!r}") from None
        if len(parts) == 3:
            gpu_type = parts[1]
    return gpus, gpu_type, other


def node_line(spec: NodeSpec, *, hostname: str, port: int) -> str:
    fields = {"NodeName": spec.name, "NodeHostname": hostname, "NodeAddr": "127.0.0.1", "Port": str(port)}
    fields.update(spec.fields())
    fields["State"] = "UNKNOWN"
    return " ".join(f"{k}={v}" for k, v in fields.items())


def default_gres_conf(nodes: Sequence[NodeSpec], device_dir: Path) -> str:
    """``gres.conf`` giving each node's fake GPUs a ``File=`` (GPUs without one are dropped)."""
    lines = ["AutoDetect=off"]
    for spec in nodes:
        if spec.gpus:
            kind = f" Type={spec.gpu_type}" if spec.gpu_type else ""
            files = f"{device_dir}/nvidia[0-{spec.gpus - 1}]" if spec.gpus > 1 else f"{device_dir}/nvidia0"
            lines.append(f"NodeName={spec.name} Name=gpu{kind} File={files}")
    return "\n".join(lines) + "\n"


def tree_topology_conf(node_names: Sequence[str], leaf_size: int, *, spine: str = "spine") -> str:
    """A two-level tree: leaf switches ``leaf1..`` of ``leaf_size`` nodes each under one spine."""
    if leaf_size < 1:
        raise ConfigError(f"leaf_size must be >= 1, not {leaf_size}")
    lines, leaves = [], []
    for start in range(0, len(node_names), leaf_size):
        leaf = f"leaf{len(leaves) + 1}"
        leaves.append(leaf)
        lines.append(f"SwitchName={leaf} Nodes={','.join(node_names[start:start + leaf_size])}")
    lines.append(f"SwitchName={spine} Switches={','.join(leaves)}")
    return "\n".join(lines) + "\n"


def gres_device_files(gres_conf: str) -> list[Path]:
    """Every device path named by ``File=`` in ``gres.conf`` text, in order, without repeats."""
    seen: dict[Path, None] = {}
    for line in gres_conf.splitlines():
        line = line.split("#", 1)[0]
        for match in re.finditer(r"(?:^|\s)File=(\S+)", line):
            for path in expand(match.group(1)):
                seen[Path(path)] = None
    return list(seen)


def device_minor(path: Path) -> int:
    """``.../nvidia7`` -> 7: the minor number of a fake NVIDIA device."""
    match = re.search(r"(\d+)$", path.name)
    if not match:
        raise ConfigError(f"gres.conf File={path}: a fake GPU device name must end in its index")
    return int(match.group(1))


def free_ports(count: int, *, low: int = 20000, high: int | None = None) -> list[int]:
    """``count`` TCP ports that are free on every address, below the kernel's ephemeral range.

    Ports are drawn at random so two clusters (or a leftover from a crashed run) do not collide;
    each is checked by binding it on the wildcard address.
    """
    if high is None:
        high = _ephemeral_low() - 1
    candidates = random.sample(range(low, high), min(high - low, count * 20))
    chosen: list[int] = []
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
        chosen.append(port)
        if len(chosen) == count:
            return chosen
    raise ConfigError(f"could not find {count} free TCP ports in {low}-{high}")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def base_settings(*, cluster_name: str, hostname: str, ctld_port: int, munge_socket: Path, base_dir: Path,
                  etc_dir: Path, log_dir: Path, topology: bool,
                  version: tuple[int, ...] = (22, 5, 0)) -> dict[str, str]:
    """The ``slurm.conf`` settings of a test cluster, before the caller's overrides.

    ``version`` is the Slurm under test: settings that changed between releases follow it.
    """
    b = base_dir
    settings = {
        "ClusterName": cluster_name,
        "SlurmctldHost": f"{hostname}(127.0.0.1)",
        "SlurmUser": "root", "SlurmdUser": "root",
        "SlurmctldPort": str(ctld_port),
        "AuthType": "auth/munge", "CredType": "cred/munge",
        "AuthInfo": f"socket={munge_socket}",
        "StateSaveLocation": f"{b}/state",
        "SlurmdSpoolDir": f"{b}/spool/%n",
        "SlurmctldPidFile": f"{b}/run/slurmctld.pid",
        "SlurmdPidFile": f"{b}/run/slurmd-%n.pid",
        "SlurmctldLogFile": f"{log_dir}/slurmctld.log",
        "SlurmdLogFile": f"{log_dir}/slurmd-%n.log",
        "SlurmctldDebug": "info", "SlurmdDebug": "info",
        "PlugStackConfig": f"{etc_dir}/plugstack.conf",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        "SelectType": "select/cons_tres", "SelectTypeParameters": "CR_Core",
        "SchedulerType": "sched/backfill",
        "AccountingStorageType": "accounting_storage/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "JobCompType": "jobcomp/none",
        "MpiDefault": "none", "SwitchType": "switch/none",
        "ReturnToService": "2",
        "SlurmdParameters": "config_overrides",  # slurmd reports the configured CPUs, not the host's
        "MinJobAge": "300",
        # each cluster counts from its own job id: MPICH names a node's shared memory after a hash of the
        # PMI name (job.step under srun), a killed rank leaves it in /dev/shm, and a later cluster's job
        # of the same id failed in MPI_Init ("Out of memory") on finding it. Three digits: a job's id is
        # in slurmstepd's socket name under SlurmdSpoolDir (at most 108 bytes: pytest's deep tmp paths
        # left no room for seven)
        "FirstJobId": str(random.randrange(100, 1000)),
        "MailProg": "/bin/true",
        "TmpFS": f"{b}/tmp/%n",  # per node: srun --mpi=pmix puts its app dirs here
        "GresTypes": "gpu",
        "TopologyPlugin": "topology/tree" if topology else "topology/none",
    }
    if tuple(version) >= (25, 5):  # 25.05+ name the no-topology plugin topology/flat ("none" is an alias)
        settings["TopologyPlugin"] = "topology/tree" if topology else "topology/flat"
    if (23, 11) <= tuple(version)[:2] < (24, 11):
        # 23.11.11 and 24.05.8 without accounting: their main scheduler skips every job as InvalidAccount
        # (job_scheduler.c:1762 in both, assoc_mgr_validate_assoc_id fails: "_refresh_assoc_mgr_qos_list:
        # no new list given back" in the log) and only backfill starts jobs, every bf_interval (30 s)
        # instead of within a second; the tests' timeouts assume a prompt start (25.11.7, 22.05.8 never
        # log it)
        settings["SchedulerParameters"] = "bf_interval=1"
    return settings


def merge_settings(base: Mapping[str, str], overrides: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``overrides`` applied, key by key, except ``SchedulerParameters`` (a comma list):
    merged option by option, an override's option replacing the base's of the same name. A caller's
    ``sched_interval=1`` had replaced 23.11's and 24.05's ``bf_interval=1`` (test_faults' prompt
    cluster: its jobs started only at the 30 s backfill passes and one outlived the test's wait)."""
    merged = {**base, **overrides}
    key = "SchedulerParameters"
    if base.get(key) and key in overrides:
        options = {o.split("=", 1)[0]: o for o in base[key].split(",") if o}
        options.update({o.split("=", 1)[0]: o for o in overrides[key].split(",") if o})
        merged[key] = ",".join(options.values())
    return merged


def render_settings(settings: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace ``{base_dir}``-style placeholders (plain replace: Lua braces stay untouched)."""
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def split_node_names(nodes: Iterable[NodeSpec]) -> list[str]:
    names = [spec.name for spec in nodes]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"duplicate node names: {', '.join(dupes)}")
    if not names:
        raise ConfigError("a test cluster needs at least one node")
    return names


def parse_key_values(line: str) -> dict[str, str]:
    """Parse ``Key=Value Key2=Value with spaces`` as scontrol prints it (one record per line)."""
    starts = list(re.finditer(r"(?:^|\s)([A-Za-z][\w:/.]*)=", line))
    out: dict[str, str] = {}
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(line)
        out.setdefault(match.group(1), line[match.end():end].strip())
    return out
