#!/usr/bin/env python3
"""fabric-hpc TaskProlog (slurm.conf: TaskProlog=/path/to/task_prolog.py), run by slurmstepd per task
as the job's user.

Prints ``export NAME=value`` lines that Slurm adds to the task's environment: CUDA_VISIBLE_DEVICES
ordered by NUMA and rail, NCCL_TOPO_FILE (only a file it has checked: see
fabric_hpc/slurm/prolog.py), CPU binding hints and the job's checkpoint directory; and a ``print``
line for each hint it could not give safely. The interpreter on the first line must be one that
imports fabric_hpc. Settings come from the JSON file CONFIG, shared with plugins/prolog.py:
{"topology": "/etc/fabric-hpc/topology.yaml", "topo_dir": "/var/lib/fabric-hpc/nccl",
 "ckpt_root": "/shared/checkpoints", "user_topo_dir": "/tmp/fabric-nccl-{uid}" (optional)}.
A failure prints a message and exports nothing: a task is never stopped by a hint it could not get.
"""

import os
import sys

CONFIG = "/etc/fabric-hpc/prolog.json"  # fabric: config


def main() -> int:
    try:
        from fabric_hpc.slurm.prolog import export_lines, load_prolog_config, task_exports
        from fabric_hpc.topology import load_fabric

        cfg = load_prolog_config(os.environ.get("FABRIC_PROLOG_CONFIG", CONFIG))
        notes: list = []
        exports = task_exports(load_fabric(cfg["topology"]), os.environ, topo_dir=cfg["topo_dir"],
                               ckpt_root=cfg["ckpt_root"], user_topo_dir=cfg.get("user_topo_dir"),
                               notes=notes)
        sys.stdout.write(export_lines(exports, notes))
    except Exception as exc:  # noqa: BLE001 - a hint must never fail the task
        text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        sys.stdout.write(f"print fabric task_prolog: no topology hints ({text[:300]})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
