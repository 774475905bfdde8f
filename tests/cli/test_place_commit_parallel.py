"""``fabric place --commit`` records the gang's ``tp`` and ``pp`` in the state file, as the scheduler
and the Slurm agent do for the gangs they start (docs/placement.md, "Cluster state file"): a later
placement with ``contention`` on, the simulator and ``fabric topology report --state`` read a running
job's traffic from them. They were dropped: ``-r gpus=16,tp=8,pp=2 --commit j1`` wrote only
``{"hosts": ...}``, so the job counted as one ring over all its GPUs."""

from __future__ import annotations

import json

from fabric_hpc.cli.main import main
from fabric_hpc.placement import ClusterState
from fabric_hpc.topology.io import open_fabric


def test_commit_keeps_tp_and_pp(tmp_path, capsys):
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1}))
    topo = "dgx-h100-superpod-4su"
    assert main(["place", "-t", topo, "-s", str(state), "-r", "gpus=32,tp=8,pp=2", "--commit", "j1"]) == 0
    assert main(["place", "-t", topo, "-s", str(state), "-r", "gpus=8,tp=2", "--commit", "j2"]) == 0
    assert main(["place", "-t", topo, "-s", str(state), "-r", "gpus=8,tp=1,pp=1", "--commit", "j3"]) == 0
    capsys.readouterr()
    jobs = json.loads(state.read_text())["jobs"]
    assert jobs["j1"]["tp"] == 8 and jobs["j1"]["pp"] == 2
    assert jobs["j2"]["tp"] == 2 and "pp" not in jobs["j2"]
    assert "tp" not in jobs["j3"] and "pp" not in jobs["j3"]  # 1 is the default: nothing to record
    loaded = ClusterState.load(open_fabric(topo), str(state))
    assert loaded.job_meta["j1"] == {"tp": 8, "pp": 2}
