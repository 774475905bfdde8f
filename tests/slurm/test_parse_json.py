"""Slurm's answers are parsed by orjson (``decode.parse_json``): the same objects as ``json.loads``
on every recorded answer, and text that is not strict JSON is a SlurmError naming the answer, as
before (no traceback, no RecursionError)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.slurm import decode
from fabric_hpc.slurm.contract import SlurmError

DATA = Path(__file__).resolve().parents[1] / "slurm_integration" / "data"
RECORDED = sorted(p for p in DATA.glob("slurm-*/*.json"))


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recorded_answers_parse_as_json_loads_does(path: Path) -> None:
    text = path.read_text()
    if path.parent.name == "sshare-24.05" and path.name == "sshare.json":  # a fairshare level of Infinity
        with pytest.raises(ValueError):
            decode.parse_json(text)
        assert decode.load_answer(text, "sshare", nonfinite=True) == json.loads(text)
        return
    assert decode.parse_json(text) == json.loads(text)
    assert decode.parse_json(text.encode()) == json.loads(text)


@pytest.mark.parametrize("text", ['{"jobs": [{"job_id": NaN}]}', '{"jobs": Infinity}', "[" * 100_000,
                                  '{"jobs": [', '"\ud800"', "", "\x00"])
def test_text_that_is_not_strict_json_is_a_slurm_error(text: str) -> None:
    with pytest.raises(SlurmError, match="squeue did not answer JSON"):
        decode.load_answer(text, "squeue did not answer JSON")


def test_numbers_beyond_64_bits_are_still_refused_by_the_decoder() -> None:
    answer = decode.load_answer('{"jobs": [{"job_id": 123456789012345678901234567890}]}', "squeue")
    with pytest.raises(SlurmError, match="job_id"):
        decode.jobs_answer(answer, "squeue")
