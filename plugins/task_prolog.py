#!/usr/bin/env python3
"""fabric-hpc TaskProlog (slurm.conf: TaskProlog=/path/to/task_prolog.py), run by slurmstepd per task.

Prints ``export NAME=value`` lines that Slurm adds to the task's environment: CUDA_VISIBLE_DEVICES
ordered by NUMA and rail, NCCL_TOPO_FILE from the fabric model, CPU binding hints and the job's
checkpoint directory (see fabric_hpc/slurm/prolog.py and docs/slurm.md). The interpreter on the
first line must be one that imports fabric_hpc. Settings come from the JSON file CONFIG:
{"topology": "/etc/fabric-hpc/topology.yaml", "topo_dir": "/var/lib/fabric-hpc/nccl",
 "ckpt_root": "/shared/checkpoints"}. A failure prints a message and exports nothing: a task is
never stopped by a hint it could not get.
"""

import json
import os
import sys

CONFIG = "/etc/fabric-hpc/prolog.json"  # fabric: config


def main() -> int:
    try:
        from fabric_hpc.slurm.prolog import export_lines, task_exports
        from fabric_hpc.topology import load_fabric

        with open(os.environ.get("FABRIC_PROLOG_CONFIG", CONFIG)) as f:
            cfg = json.load(f)
        exports = task_exports(load_fabric(cfg["topology"]), os.environ, topo_dir=cfg["topo_dir"],
                               ckpt_root=cfg["ckpt_root"])
        sys.stdout.write(export_lines(exports))
    except Exception as exc:  # noqa: BLE001 - a hint must never fail the task
        sys.stdout.write(f"print fabric task_prolog: no topology hints ({type(exc).__name__}: {exc})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
