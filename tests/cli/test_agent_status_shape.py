"""`fabric agent status` on a status.json that is JSON but not the agent's shape (wrong types) said a
traceback (AttributeError, "Unknown format code 'f'"); it reports the damaged file with exit 3 and the
fix, as for invalid JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main

GOOD = {"pid": 1, "ts": 1.0, "cycles": 3, "cycle_s": 0.5, "fallback_s": 60, "errors": 0, "failed_actions": 0,
        "last_error": None, "last_action_error": None, "waiting": {"7": "Resources"}, "tier_map": []}


@pytest.mark.parametrize("bad", [{"waiting": ["a"]}, {"cycles": "x", "cycle_s": "slow"},
                                 {"fallback_s": "60"}, {"waiting": {"7": 5}}, {"errors": True},
                                 {"last_error": {"x": 1}}])
def test_a_status_file_of_the_wrong_shape_is_reported_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: dict) -> None:
    (tmp_path / "status.json").write_text(json.dumps({**GOOD, **bad}))
    for extra in ([], ["--json"]):
        assert main(["agent", "status", "--state-dir", str(tmp_path), *extra]) == 3
        err = capsys.readouterr().err
        assert "status.json" in err and "Traceback" not in err and "fix:" in err, err
        assert next(iter(bad)) in err, err


def test_a_status_file_of_the_right_shape_is_shown(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "status.json").write_text(json.dumps({**GOOD, "new_key_of_a_later_version": [1]}))
    assert main(["agent", "status", "--state-dir", str(tmp_path)]) == 5  # not running
    out = capsys.readouterr().out
    assert "cycles 3" in out and "Resources" in out, out
