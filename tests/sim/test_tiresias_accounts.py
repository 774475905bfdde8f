"""Tiresias CSV: the fairshare account is the ``account`` column when the trace has one, else
``default`` as documented; ``model_name`` only sets the communication sensitivity; ``user`` and
``tier`` columns are read too."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import read_tiresias

DATA = Path(__file__).resolve().parents[2] / "data" / "traces"


def test_model_name_sets_sensitivity_not_the_account(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("job_id,num_gpu,submit_time,model_name,duration\n1,1,0,vgg19,10\n2,1,5,resnet50,10\n")
    a, b = read_tiresias(p)
    assert (a.account, b.account) == ("default", "default")
    assert (a.user, a.tier) == ("user", "normal")
    assert a.meta["comm_fraction"] > b.meta["comm_fraction"]  # VGG is the heavier communicator


def test_the_bundled_trace_is_one_account() -> None:
    assert {j.account for j in read_tiresias(DATA / "tiresias_60_job.csv")} == {"default"}


def test_account_user_and_tier_columns_are_used(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("job_id,num_gpu,submit_time,duration,account,user,tier\n"
                 "1,1,0,10,physics,alice,high\n2,1,5,10,bio,bob,Spot\n3,1,6,10,,,\n")
    jobs = read_tiresias(p)
    assert [(j.account, j.user, j.tier) for j in jobs] == [
        ("physics", "alice", "high"), ("bio", "bob", "spot"), ("default", "user", "normal")]


def test_an_unknown_tier_is_refused_naming_the_line(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("job_id,num_gpu,submit_time,duration,tier\n1,1,0,10,high\n2,1,5,10,gold\n")
    with pytest.raises(ConfigError, match=r"t\.csv:3: tier 'gold'") as e:
        read_tiresias(p)
    assert "high, normal, spot" in e.value.hint or "high, normal, spot" in str(e.value)
