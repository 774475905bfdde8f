#!/usr/bin/env python3
"""fabric-hpc Prolog (slurm.conf: Prolog=/path/to/prolog.py), run by slurmd as root on each node
before a job's first task.

Writes this node's NCCL topology XML (from the fabric model) into ``topo_dir`` of CONFIG -- a
directory owned by root that no one else can write (created 0755 when missing) -- atomically, mode
0644, and only when the file there is missing, untrusted or out of date; and next to it the
TaskProlog's hints file (task-hints-<host>.json: fabric_hpc/slurm/task_fast.py), from which the
TaskProlog gives its exports without loading the fabric model. The TaskProlog, running as the
job's user, exports that file after checking it (fabric_hpc/slurm/prolog.py). Always exits 0:
a failing Prolog would drain the node; a problem (and each fabric event, e.g. a host without an NCCL
topology file) goes to syslog (facility daemon, tag fabric-prolog) and stderr, which slurmd logs only at
SlurmdDebug=debug2 for a Prolog that exits 0 (prep_script_slurmd.c).
The interpreter on the first line must be one that imports fabric_hpc. The settings file is
CONFIG, or FABRIC_PROLOG_CONFIG from slurmd's environment (the admin's: a job's environment does
not reach the Prolog); the TaskProlog reads CONFIG only.
"""

import logging
import os
import sys
import syslog

CONFIG = "/etc/fabric-hpc/prolog.json"  # fabric: config


class _Syslog(logging.Handler):
    """fabric's events (JSON) to syslog, where an admin sees them: slurmd hides a Prolog's output."""

    def emit(self, record: logging.LogRecord) -> None:
        _log(self.format(record))


def _log(text: str) -> None:
    sys.stderr.write(f"fabric prolog: {text}\n")
    syslog.syslog(syslog.LOG_WARNING, text[:2000])


def main() -> int:
    syslog.openlog("fabric-prolog", 0, syslog.LOG_DAEMON)
    try:
        from fabric_hpc.events import JsonLinesFormatter
        from fabric_hpc.slurm.prolog import prepare_node

        handler = _Syslog(logging.INFO)
        handler.setFormatter(JsonLinesFormatter())
        events = logging.getLogger("fabric_hpc.events")
        events.addHandler(handler)
        events.setLevel(logging.INFO)
        prepare_node(os.environ.get("FABRIC_PROLOG_CONFIG", CONFIG), os.environ)
    except Exception as exc:  # noqa: BLE001 - never drain a node over a hint
        text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        _log(f"topology or hints file not written ({text[:300]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
