"""What the TaskProlog exports for each task (``plugins/task_prolog.py`` prints these lines).

* ``CUDA_VISIBLE_DEVICES``: the task's GPUs ordered by NUMA node, then rail, then index, so that
  rank-local GPU 0 sits next to the CPUs and NIC it is bound to.
* ``NCCL_TOPO_FILE``: an NCCL topology XML of this host generated from the fabric model
  (:func:`fabric_hpc.topology.export.nccl_topo_xml`), written once per host (atomically).
* ``FABRIC_NUMA_NODES`` / ``FABRIC_CPU_BIND``: CPU binding hints (``srun --cpu-bind=map_ldom:…``).
* ``FABRIC_CKPT_DIR``: the job's checkpoint directory, ``<root>/<user>/<job name>`` (stable across
  requeues and resubmissions, so a restarted job finds its checkpoints).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import Fabric

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def ordered_gpus(fab: Fabric, host: str, visible: list[int]) -> list[int]:
    """Visible GPU indices sorted by (NUMA node, rail, index) of the fabric model."""
    gpus = fab.host_gpus(host)
    info = {i: fab.gpu(gpus[i]) for i in visible if 0 <= i < len(gpus)}
    if len(info) != len(visible):
        raise ConfigError(f"{host}: CUDA_VISIBLE_DEVICES {visible} names GPUs the fabric model does not have")
    return sorted(visible, key=lambda i: (info[i].numa, info[i].rail, i))


def task_exports(fab: Fabric, env: Mapping[str, str], *, topo_dir: str | os.PathLike[str],
                 ckpt_root: str | os.PathLike[str]) -> dict[str, str]:
    """The ``export NAME=value`` pairs for one task, from its Slurm environment."""
    host = env.get("SLURMD_NODENAME") or env.get("SLURM_TOPOLOGY_ADDR", "").rsplit(".", 1)[-1]
    if host not in fab.host_pos:
        raise ConfigError(f"node {host!r} is not a host of the fabric model {fab.name!r}")
    out: dict[str, str] = {}
    raw = env.get("CUDA_VISIBLE_DEVICES", "")
    visible = [int(x) for x in raw.split(",") if x.strip().isdigit()]
    if visible:
        order = ordered_gpus(fab, host, visible)
        out["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, order))
        numa = [fab.gpu(fab.host_gpus(host)[i]).numa for i in order]
        out["FABRIC_NUMA_NODES"] = ",".join(str(n) for n in sorted(set(numa)))
        out["FABRIC_CPU_BIND"] = "map_ldom:" + ",".join(map(str, numa))
    out["NCCL_TOPO_FILE"] = str(write_topo(fab, host, Path(topo_dir)))
    user = _SAFE.sub("_", env.get("SLURM_JOB_USER", "user"))
    name = _SAFE.sub("_", env.get("SLURM_JOB_NAME") or env.get("SLURM_JOB_ID", "job"))
    out["FABRIC_CKPT_DIR"] = str(Path(ckpt_root) / user / name)
    return out


def write_topo(fab: Fabric, host: str, topo_dir: Path) -> Path:
    from fabric_hpc.topology.export import nccl_topo_xml

    path = topo_dir / f"nccl-topo-{host}.xml"
    if not path.exists():
        topo_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(nccl_topo_xml(fab, host))
        os.replace(tmp, path)
    return path


def export_lines(exports: Mapping[str, str]) -> str:
    """``export NAME=value`` lines (Slurm reads these from TaskProlog's standard output)."""
    return "".join(f"export {k}={v}\n" for k, v in exports.items())
