"""Record how a Slurm answers ``--exclusive`` into ``tests/slurm/data/slurm-<version>/`` (26.05: data_parser
v0.0.45 no longer says it in job records; ``tests/slurm/test_answers_26_05.py`` replays these answers).

    PATH=/opt/slurm-26.05/bin:/opt/slurm-26.05/sbin:$PATH PYTHONPATH=$PWD \\
        .venv/bin/python -m tests.slurm_integration.record_exclusive

Starts a 4-host x 8-GPU test cluster with JWT, queues three held jobs (``--exclusive``, none,
``--exclusive=user``), then writes, untouched, what ``squeue --json`` and ``scontrol show job --json ID``
print with the default data_parser and with ``--json=v0.0.44``, ``scontrol show job -d -o``, the stderr of
``squeue --json=v0.0.41`` (a data_parser this Slurm lacks) and the paths of slurmrestd's ``/openapi/v3``.
Needs root. Takes about half a minute.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from fabric_hpc.testing import SlurmTestCluster
from fabric_hpc.topology import build, generators
from tests.slurm_integration.record_answers import answers_dir, finish_recording, http
from tests.slurm_integration.restd import Restd, jwt_settings, public_dir, token

DATA = Path(__file__).resolve().parents[1] / "slurm" / "data"
SCRIPT = "#!/bin/sh\nsleep 600\n"


def main() -> int:
    fab = build(generators.leaf_spine(4, hosts_per_leaf=2, gpus=8, cpus=8))
    base = public_dir()
    with SlurmTestCluster.from_fabric(fab, base_dir=base / "cluster", settings=jwt_settings(base)) as c:
        version, out = answers_dir(c, DATA)
        wd = str(c.work_dir)
        kinds = (("exclusive", ["--exclusive"]), ("plain", []), ("user", ["--exclusive=user"]))
        jobs = {k: c.sbatch("-N1", "--gres=gpu:2", "-H", *extra, script=SCRIPT, cwd=wd) for k, extra in kinds}
        one = str(jobs["exclusive"])
        for name, argv in (("squeue", ["squeue", "--json"]), ("squeue-v0.0.44", ["squeue", "--json=v0.0.44"]),
                           ("scontrol-job", ["scontrol", "show", "job", "--json", one]),
                           ("scontrol-job-v0.0.44", ["scontrol", "show", "job", "--json=v0.0.44", one])):
            (out / f"{name}.json").write_text(c.run(argv).stdout)
        (out / "scontrol-jobs-d-o.txt").write_text(c.run(["scontrol", "show", "job", "-d", "-o"]).stdout)
        lacking = c.run(["squeue", "--json=v0.0.41"], check=False)
        (out / "squeue-v0.0.41.stderr").write_text(lacking.stderr)
        restd = Restd(c).start()
        try:
            _, spec = http(restd.sock, token(c), "GET", "/openapi/v3")
        finally:
            restd.stop()
        paths = {"paths": sorted(spec["paths"])}
        (out / "rest-openapi-paths.json").write_text(json.dumps(paths, indent=1) + "\n")
        finish_recording(c, out, version, "tests.slurm_integration.record_exclusive", jobs=jobs,
                         restd_plugin=restd.plugin, **{"squeue-v0.0.41 exit status": lacking.returncode})
    shutil.rmtree(base, ignore_errors=True)
    print(f"recorded Slurm {version}'s --exclusive answers into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
