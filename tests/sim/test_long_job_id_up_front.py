"""A trace job id longer than a report can name (``topology.report.MAX_JOB_ID``, 256 characters) is
refused by the reader, naming the file and line, before anything is simulated or written (it was
refused only when the results were drawn, after the whole run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import read_jobcomp, read_openb, read_sacct, read_tiresias
from fabric_hpc.topology.report import MAX_JOB_ID

from .test_huge_digit_job_id import HEADER, JOBCOMP, ROW, TOPO

LONG = "7" * (MAX_JOB_ID + 1)  # (SWF's job numbers are whole numbers of at most 18 digits already)
LINE = {"sacct": 3, "jobcomp": 2, "tiresias": 3, "openb": 3}  # the long id's line (after a header line or not)


def _trace(tmp_path: Path, kind: str, job_id: str) -> Path:
    p = tmp_path / f"trace-{kind}.txt"
    text = {"sacct": HEADER + ROW.format(1) + ROW.format(job_id),
            "jobcomp": JOBCOMP.format(1) + JOBCOMP.format(job_id),
            "tiresias": f"job_id,num_gpu,submit_time,duration\n1,4,0,100\n{job_id},4,10,100\n",
            "openb": f"name,num_gpu,qos,creation_time,deletion_time\np0,1,LS,0,70\n{job_id},1,BE,5,80\n"}[kind]
    p.write_text(text)
    return p


READERS = {"sacct": read_sacct, "jobcomp": read_jobcomp, "tiresias": read_tiresias, "openb": read_openb}


@pytest.mark.parametrize("kind", sorted(READERS))
def test_the_reader_names_the_line_of_a_long_id(tmp_path, kind):
    with pytest.raises(ConfigError, match=rf":{LINE[kind]}: job id .* characters long .*\(at most 256\)"):
        READERS[kind](_trace(tmp_path, kind, LONG))


@pytest.mark.parametrize("kind", sorted(READERS))
def test_an_id_of_the_longest_length_a_report_names_is_read(tmp_path, kind):
    prefix = {"sacct": "slurm", "jobcomp": "slurm", "tiresias": "t", "openb": ""}[kind]
    trace = READERS[kind](_trace(tmp_path, kind, "7" * (MAX_JOB_ID - len(prefix))))
    assert max(len(j.id) for j in trace) == MAX_JOB_ID


@pytest.mark.parametrize("kind", ["sacct", "tiresias", "openb"])
def test_sim_run_writes_nothing_for_a_long_id(tmp_path, capsys, kind):
    out = tmp_path / "out"
    code = main(["sim", "run", "--trace", f"{kind}:{_trace(tmp_path, kind, LONG)}", "-t", str(TOPO),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 3 and "characters long" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())
