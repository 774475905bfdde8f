#!/usr/bin/env python3
"""fabric-hpc TaskProlog (slurm.conf: TaskProlog=/path/to/task_prolog.py), run by slurmstepd per task
as the job's user.

Prints ``export NAME=value`` lines that Slurm adds to the task's environment: CUDA_VISIBLE_DEVICES
ordered by NUMA and rail, NCCL_TOPO_FILE (only a file it has checked, and only for a host with
discovered PCI bus ids: see fabric_hpc/slurm/prolog.py), CPU binding hints and the job's
checkpoint directory; and a ``print`` line for each hint it could not give safely. The interpreter
on the first line must be one that imports fabric_hpc. Settings come from the JSON file CONFIG,
shared with plugins/prolog.py:
{"topology": "/etc/fabric-hpc/topology.yaml", "topo_dir": "/var/lib/fabric-hpc/nccl",
 "ckpt_root": "/shared/checkpoints", "user_topo_dir": "/tmp/fabric-nccl-{uid}" (optional)}.
A failure prints a message and exports nothing: a task is never stopped by a hint it could not get.

Fast path: when the root Prolog's hints file for this host checks out and matches the current
config and fabric file, the exports come from it (fabric_hpc/slurm/task_fast.py, loaded by its path:
standard library only, about a tenth of the CPU time), with FABRIC_TASK_PROLOG=fast; otherwise the
full path loads the fabric model. FABRIC_TASK_PROLOG=full in the job's environment skips the fast path.

The settings file is CONFIG alone: this script runs in the job's environment, which the user
controls, so it does not read FABRIC_PROLOG_CONFIG (the root Prolog does: its environment is
slurmd's). A copy for another settings file is written by ``fabric slurm install`` or
``fabric_hpc.slurm.plugins.render_script``.
"""

import os
import sys

CONFIG = "/etc/fabric-hpc/prolog.json"  # fabric: config


def fast() -> str | None:
    """The export lines from the hints file, or None (take the full path)."""
    if os.environ.get("FABRIC_TASK_PROLOG") == "full":
        return None
    try:
        import importlib.util

        spec = importlib.util.find_spec("fabric_hpc")  # finds the package without running its __init__
        if spec is None or not spec.submodule_search_locations:
            return None
        path = os.path.join(list(spec.submodule_search_locations)[0], "slurm", "task_fast.py")
        mod_spec = importlib.util.spec_from_file_location("_fabric_task_fast", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        found = module.fast_result(CONFIG, os.environ)
        if found is None:
            return None
        return module.export_lines({**found[0], "FABRIC_TASK_PROLOG": "fast"}, found[1])
    except Exception:  # noqa: BLE001 - the full path says what is wrong
        return None


def main() -> int:
    text = fast()
    if text is not None:
        sys.stdout.write(text)
        return 0
    try:
        from fabric_hpc.slurm.prolog import export_lines, load_prolog_config, task_exports
        from fabric_hpc.topology import load_fabric

        cfg = load_prolog_config(CONFIG)
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
