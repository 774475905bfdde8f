"""Under real mpiexec an error every rank meets is printed once, not once per rank (new-user probe:
N copies of the same config error, and of its --json document, with N ranks)."""

from __future__ import annotations

import json

import pytest

from .test_mpi import errors_by_rank, finish, job, launch  # noqa: F401

pytestmark = [pytest.mark.mpi, pytest.mark.slow]


def test_a_config_error_every_rank_meets_is_printed_once(job: dict) -> None:
    cfg = json.loads(job["cfg"].read_text())
    bad = job["tmp"] / "gone-engine.json"
    bad.write_text(json.dumps({**cfg, "engine_dir": str(job["tmp"] / "gone-engine")}))
    code, out, err = finish(launch(job, job["tmp"] / "once", 3, cfg=bad))
    assert code == 3, err[-2000:]
    assert errors_by_rank(err, 3) == [1, 0, 0] and err.count("gone-engine") == 1, err
    assert "Traceback" not in err
    doc = json.loads(out)  # one JSON document on stdout (json.loads fails on two)
    assert doc["exit_code"] == 3 and "gone-engine" in doc["error"]


def test_an_error_before_mpi_starts_is_printed_once(job: dict) -> None:
    code, out, err = finish(launch(job, job["spool"] / "out", 3))  # --output inside --input
    assert code == 3, err[-2000:]
    assert err.count("overlap") == 1 and err.count("error:") == 1, err
    assert json.loads(out)["exit_code"] == 3, out


def test_an_error_on_one_rank_is_still_printed_by_that_rank(job: dict) -> None:
    code, _, err = finish(launch(job, job["tmp"] / "one-rank", 3, env={"FABRIC_INFER_FAULT": "2:8"}))
    assert code == 5, err[-2000:]
    assert errors_by_rank(err, 3) == [0, 0, 1] and "injected fault on rank 2" in err, err
