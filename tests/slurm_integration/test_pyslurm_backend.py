"""The pyslurm backend's pure parts (no pyslurm, no Slurm): sbatch options and resource layouts."""

from __future__ import annotations

import signal

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.slurm.contract import SlurmError
from fabric_hpc.slurm.pyslurm_backend import layout_gpus, load_pyslurm, submit_description


def test_submit_description_translates_sbatch_options() -> None:
    assert submit_description(["-N", "2", "--gres=gpu:3", "-H", "--comment=fabric"]) == {
        "nodes": "2", "gres_per_node": "gpu:3", "priority": 0, "comment": "fabric", "ntasks": 2}
    assert submit_description(["--gpus-per-node=4", "-t", "5", "--exclusive", "-n", "1"]) == {
        "gres_per_node": "gpu:4", "time_limit": 5, "resource_sharing": "exclusive", "ntasks": 1}
    # export.segment_args's --segment: JobSubmitDescription.segment_size (pyslurm 25.11)
    assert submit_description(["-N", "36", "--segment=18"]) == {"nodes": "36", "segment_size": 18, "ntasks": 36}
    assert submit_description(["--signal=B:USR1@120"])["signal"] == {
        "signal": signal.SIGUSR1.value, "time": 120, "batch_only": True, "allow_reservation_overlap": False}


@pytest.mark.parametrize("args", [["--array=1-3"], ["-N"], ["--signal=B:NOPE@1"], ["--signal=X:USR1"],
                                  ["--segment=0"], ["--segment=two"]])
def test_submit_description_refuses_what_it_cannot_translate(args: list[str]) -> None:
    with pytest.raises(ConfigError):
        submit_description(args)


def test_layout_gpus() -> None:
    layout = {"n7": {"cpu_ids": "0", "gres": {"gpu:h100": {"count": 3, "indexes": "0-2"}}, "memory": None},
              "n9": {"cpu_ids": "0", "gres": {}, "memory": None}}
    assert layout_gpus(layout, "job 1") == {"n7": (0, 1, 2)}
    for bad in ({"n7": {"gres": {"gpu:h100": {"count": 3, "indexes": 5}}}},
                {"n7": {"gres": {"gpu:h100": {"count": 2, "indexes": "0-2"}}}}, {"n7": None}, ["n7"]):
        with pytest.raises(SlurmError, match="job 1"):
            layout_gpus(bad, "job 1")


def test_load_pyslurm_refuses_a_missing_slurm_conf(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.delenv("SLURM_CONF", raising=False)
    with pytest.raises(SlurmError, match="needs SLURM_CONF"):
        load_pyslurm()
    with pytest.raises(SlurmError, match="not a readable file"):
        load_pyslurm(str(tmp_path))  # a directory
