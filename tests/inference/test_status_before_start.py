"""`fabric infer status DIR` polled right after a job was submitted, before its engines are built and
the run has written DIR/run.json (minutes for a large model): the message says that, not "give the
--output directory of `fabric infer run`" (which the user did)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.errors import NotFoundError
from fabric_hpc.inference import job_status, merge_job


@pytest.mark.parametrize("exists", [False, True])
def test_status_of_an_output_a_run_has_not_written_yet(tmp_path: Path, exists: bool) -> None:
    out = tmp_path / "out"
    if exists:
        out.mkdir()  # made by the user (or the job script) before the run
    with pytest.raises(NotFoundError) as err:
        job_status(out)
    what = "holds no run.json" if exists else "does not exist"
    assert f"{out} {what}" in str(err.value), str(err.value)
    assert "not started yet" in err.value.hint and "engine" in err.value.hint
    assert err.value.exit_code == 3


def test_a_file_given_as_output_is_still_not_an_output_directory(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotFoundError, match="is not a fabric infer output directory"):
        merge_job(tmp_path / "f")
