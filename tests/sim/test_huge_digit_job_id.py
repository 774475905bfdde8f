"""A trace whose job id holds a run of more than 4,300 digits (a sacct or jobcomp log edited by
hand, or hostile) is a clear exit-3 error, not a ValueError traceback from the occupancy picture's
natural sort (``int()`` of the run). Found by the hostile-files probe (fix-sec-files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.topology.report import _natural_key

TOPO = Path(__file__).resolve().parents[2] / "topology" / "leaf-spine-16.yaml"
HEADER = "JobID|Submit|Start|End|Timelimit|NNodes|AllocTRES|Account|User|Partition|QOS|State\n"
ROW = ("{}|2024-01-01T00:00:00|2024-01-01T00:00:10|2024-01-01T01:00:00|02:00:00|1|gres/gpu=8|a|u|p|normal"
       "|COMPLETED\n")
JOBCOMP = ("JobId={} UserId=u(1) GroupId=g(1) Name=x JobState=COMPLETED Partition=p TimeLimit=60 "
           "StartTime=2024-01-01T00:00:10 EndTime=2024-01-01T01:00:00 NodeList=n1 NodeCnt=1 ProcCnt=8 "
           "WorkDir=/ Tres=cpu=8,gres/gpu=8 Account=a QOS=normal SubmitTime=2024-01-01T00:00:00 "
           "EligibleTime=2024-01-01T00:00:00 ExitCode=0:0\n")


@pytest.mark.parametrize("kind", ["sacct", "jobcomp"])
def test_a_job_id_of_5000_digits_is_exit_3_without_a_traceback(tmp_path, capsys, kind):
    huge = "9" * 5000
    trace = tmp_path / "trace.txt"
    if kind == "sacct":
        trace.write_text(HEADER + ROW.format(1) + ROW.format(huge))
    else:
        trace.write_text(JOBCOMP.format(1) + JOBCOMP.format(huge))
    code = main(["sim", "run", "--trace", f"{kind}:{trace}", "-t", str(TOPO), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err and "ValueError" not in err
    assert "characters long" in err


def test_natural_order_holds_for_runs_of_any_length():
    ids = ["10", "9", "a10", "a2", "9" * 5000, "8" * 5000, "500_10", "500_2"]
    want = ["9", "10", "500_2", "500_10", "8" * 5000, "9" * 5000, "a2", "a10"]
    assert sorted(ids, key=_natural_key) == want
