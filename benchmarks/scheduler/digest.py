"""Decision digest of a replay: ``python -m benchmarks.scheduler.digest SEED:LOAD [JOBS]``.

Replays ``JOBS`` (default 10,000) synthetic gangs on ``superpod:sus=8`` with the fabric policy and
the greedy placer (as ``--sweep``) and prints one JSON line: steps, CPU seconds of the replay
(``time.process_time``), wall seconds and a SHA-256 over every job's record (id, first start,
end, status, preemptions, GPU-hours lost, domains, hosts, backfilled). Two versions of the code
decided the same when their digests are equal.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time

from fabric_hpc.scheduler import fabric_policy
from fabric_hpc.sim import Simulator, gang_workload
from fabric_hpc.topology import open_fabric


def record_digest(records: list) -> str:
    h = hashlib.sha256()
    for r in records:
        row = (r.job.id, r.first_start, r.end, r.status, r.preemptions, r.gpu_hours_lost,
               sorted(r.domains.items()), r.hosts, r.backfilled)
        h.update(repr(row).encode())
    return h.hexdigest()


def main() -> None:
    seed, load = sys.argv[1].split(":")
    jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    fab = open_fabric("superpod:sus=8")
    work = gang_workload(jobs=jobs, cluster_gpus=len(fab.gpus), load=float(load), seed=int(seed))
    t0, c0 = time.perf_counter(), time.process_time()
    res = Simulator(fab, fabric_policy(placement="greedy"), work).run()
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    print(json.dumps({"jobs": jobs, "seed": int(seed), "load": float(load), "steps": res.stats["steps"],
                      "cpu_s": round(cpu, 2), "wall_s": round(wall, 2), "digest": record_digest(res.records)}))


if __name__ == "__main__":
    main()
