"""Fragmentation is a time-average over the time jobs wait, and utilisation's window starts at the first
job that was not rejected (a rejected job at the start of a trace does not stretch it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.scheduler import slurm_policy
from fabric_hpc.sim import Simulator, read_tiresias, summarize
from fabric_hpc.topology import open_fabric

HEAD = "job_id,num_gpu,submit_time,duration\n"


def _summary(tmp_path: Path, body: str, fabric: str = "leaf-spine:hosts=2,hosts_per_leaf=2") -> dict:
    p = tmp_path / "t.csv"
    p.write_text(HEAD + body)
    return summarize(Simulator(open_fabric(fabric), slurm_policy(), read_tiresias(p)).run())


def test_fragmentation_is_time_weighted_over_the_waiting_time(tmp_path: Path) -> None:
    # 2 hosts × 8 GPUs: a and b leave 1 GPU free on each host; c (8 GPUs) waits 9,999 s with those
    # 2 GPUs unusable (2/16 = 0.125); then 800 one-GPU jobs queue ~250 s with nothing stranded.
    burst = "".join(f"q{i},1,{20000 + i / 10:.1f},5\n" for i in range(800))
    s = _summary(tmp_path, "a,7,0,10000\nb,7,0,10000\nc,8,1,100\n" + burst)
    assert s["fragmentation"] == pytest.approx(0.125 * 9999 / (9999 + 252), rel=0.02)


def test_fragmentation_of_a_single_wait_is_its_stranded_share(tmp_path: Path) -> None:
    s = _summary(tmp_path, "a,7,0,1000\nb,7,0,1000\nc,8,1,100\n")
    assert s["fragmentation"] == pytest.approx(0.125)


def test_fragmentation_without_waiting_jobs_is_zero(tmp_path: Path) -> None:
    assert _summary(tmp_path, "a,8,0,100\nb,8,10,100\n")["fragmentation"] == 0.0


def test_a_rejected_first_job_does_not_stretch_the_utilisation_window(tmp_path: Path) -> None:
    alone = _summary(tmp_path, "2,16,1000000,100\n")
    with_rejected = _summary(tmp_path, "1,2048,0,50\n2,16,1000000,100\n")
    assert with_rejected["rejected"] == 1
    assert alone["gpu_utilisation"] == pytest.approx(1.0)
    assert with_rejected["gpu_utilisation"] == pytest.approx(1.0)


def test_utilisation_still_counts_idle_time_between_accepted_jobs(tmp_path: Path) -> None:
    s = _summary(tmp_path, "1,16,0,100\n2,2048,50,5\n3,16,300,100\n")
    assert s["rejected"] == 1
    assert s["gpu_utilisation"] == pytest.approx(200 / 400)
