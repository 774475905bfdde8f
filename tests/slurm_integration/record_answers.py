"""Record golden Slurm answers of the Slurm on PATH into ``data/slurm-<version>/``.

    PYTHONPATH=$PWD .venv/bin/python -m tests.slurm_integration.record_answers           # Debian's Slurm
    PATH=/opt/slurm-25.11/bin:/opt/slurm-25.11/sbin:$PATH PYTHONPATH=$PWD \\
        .venv/bin/python -m tests.slurm_integration.record_answers                       # Slurm 25.11

Starts the 16-host × 8-GPU test cluster (the ``slurm_fabric`` of tests/conftest.py) with JWT, puts
jobs in every state the readers care about (two running, one placed by ReqNodeList on n7,n10 with
3 GPUs each; one pending on its begin time; one held; one pending on resources), then writes what
``sinfo``/``squeue``/``scontrol show nodes|jobs --json`` and ``scontrol show job -d -o`` print, and
what slurmrestd (run as ``daemon`` with JWT) answers, untouched. The OpenAPI spec is stored as its
list of paths only (the whole spec is megabytes). ``meta.json`` says what was recorded and when.
Needs root (the test cluster runs slurmd). Takes about a minute.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from fabric_hpc.testing import SlurmTestCluster
from fabric_hpc.topology import build, generators
from tests.slurm_integration.restd import Restd, jwt_settings, public_dir, token

DATA = Path(__file__).parent / "data"
SCRIPT = "#!/bin/sh\nsleep 600\n"


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def http(sock: Path, tok: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = _Unix(str(sock))
    headers = {"X-SLURM-USER-NAME": "root", "X-SLURM-USER-TOKEN": tok, "Content-Type": "application/json"}
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    resp = conn.getresponse()
    raw = resp.read().decode()
    conn.close()
    return resp.status, json.loads(raw)


def make_jobs(c: SlurmTestCluster) -> dict[str, int]:
    wd = str(c.work_dir)
    jobs = {"placed": c.sbatch("-N2", "--gres=gpu:3", "-H", "--comment=fabric", script=SCRIPT, cwd=wd)}
    c.run(["scontrol", "update", f"JobId={jobs['placed']}", "ReqNodeList=n[7,10]", "StartTime=now"])
    c.run(["scontrol", "release", str(jobs["placed"])])
    jobs["running"] = c.sbatch("-N1", "--gres=gpu:8", "-w", "n1", "--comment=nofabric", script=SCRIPT, cwd=wd)
    jobs["begin"] = c.sbatch("-N2", "--gres=gpu:8", "--comment=fabric:within=leaf", "--begin=now+3600",
                             script=SCRIPT, cwd=wd)
    jobs["held"] = c.sbatch("-N1", "--gres=gpu:2", "-H", "-t", "30", script=SCRIPT, cwd=wd)
    jobs["resources"] = c.sbatch("-N16", "--gres=gpu:8", script=SCRIPT, cwd=wd)
    for key in ("placed", "running"):
        c.wait_job(jobs[key], ("RUNNING",), timeout=60)
    time.sleep(1)  # let the scheduler set the pending reasons
    return jobs


def record_rest(c: SlurmTestCluster, out: Path, jobs: dict[str, int]) -> dict[str, Any]:
    restd = Restd(c).start()
    try:
        tok = token(c)
        _, spec = http(restd.sock, tok, "GET", "/openapi/v3")
        paths = sorted(spec["paths"])
        (out / "rest-openapi-paths.json").write_text(json.dumps({"paths": paths}, indent=1) + "\n")
        versions = sorted({p.split("/")[2] for p in paths if p.startswith("/slurm/v")})
        api = f"/slurm/{versions[-1]}"
        for name, path in (("nodes", "/nodes"), ("jobs", "/jobs"), ("job", f"/job/{jobs['placed']}")):
            _, data = http(restd.sock, tok, "GET", api + path)
            (out / f"rest-{name}.json").write_text(json.dumps(data, indent=1) + "\n")
        body = {"job": {"nodelist": "n3"}} if versions[-1] != "v0.0.38" else {"no_such_field": "n3"}
        status, data = http(restd.sock, tok, "POST", f"{api}/job/{jobs['held']}", body)
        (out / "rest-update-unknown-field.json").write_text(
            json.dumps({"request": body, "http_status": status, "answer": data}, indent=1) + "\n")
        return {"restd_plugin": restd.plugin, "rest_api": api}
    finally:
        restd.stop()


def answers_dir(c: SlurmTestCluster, data: Path = DATA) -> tuple[str, Path]:
    """(the cluster's Slurm version, ``data/slurm-<major.minor>/``, made)."""
    version = c.run(["sinfo", "-V"]).stdout.split()[-1]
    out = data / ("slurm-" + ".".join(version.split(".")[:2]))
    out.mkdir(parents=True, exist_ok=True)
    return version, out


def finish_recording(c: SlurmTestCluster, out: Path, version: str, by: str, **fields: Any) -> None:
    """``out/meta.json`` (the version, when, by which module: ``python -m``, and ``fields``), then the
    recorder's jobs cancelled."""
    meta = {"slurm": version, "recorded": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "by": f"python -m {by}", **fields}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    c.run(["scancel", "--user", "root"], check=False)


def main() -> int:
    fab = build(generators.leaf_spine(16, hosts_per_leaf=4, gpus=8, cpus=8))
    base = public_dir()
    with SlurmTestCluster.from_fabric(fab, base_dir=base / "cluster", settings=jwt_settings(base)) as c:
        version, out = answers_dir(c)
        jobs = make_jobs(c)
        for name, argv in (("sinfo", ["sinfo", "--json"]), ("squeue", ["squeue", "--json"]),
                           ("scontrol-nodes", ["scontrol", "show", "nodes", "--json"]),
                           ("scontrol-jobs", ["scontrol", "show", "jobs", "--json"])):
            proc = c.run(argv, check=False)  # scontrol --json: Slurm 23.02+
            if proc.returncode == 0:
                (out / f"{name}.json").write_text(proc.stdout)
        (out / "scontrol-jobs-d-o.txt").write_text(c.run(["scontrol", "show", "job", "-d", "-o"]).stdout)
        finish_recording(c, out, version, "tests.slurm_integration.record_answers",
                         cluster="16 hosts x 8 GPUs, leaf/spine", jobs=jobs, **record_rest(c, out, jobs))
    import shutil

    shutil.rmtree(base, ignore_errors=True)
    print(f"recorded Slurm {version} into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
