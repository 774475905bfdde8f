"""`fabric infer merge DIR --input -`: merge reads no stdin; the error says so, for a run of either input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError
from fabric_hpc.inference import VirtualClock, merge_job, run_job

from .builders import make_config, random_items, write_spool

REPO = Path(__file__).resolve().parents[2]


def test_merge_input_dash_after_a_spool_run_does_not_claim_the_run_read_stdin(tmp_path: Path) -> None:
    """Before: `this run read stdin: merge needs the same input again` / `pass --input FILE with the
    lines that were piped in`, for a run that read a spool directory and had no piped lines."""
    cfg, spool, out = make_config(tmp_path), write_spool(tmp_path, random_items(12), files=1), tmp_path / "o"
    run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()})
    with pytest.raises(ConfigError) as err:
        merge_job(out, "-")
    assert "this run read stdin" not in str(err.value)
    assert "merge does not read stdin (--input -)" in str(err.value)
    assert "leave --input out" in err.value.hint and err.value.exit_code == 3
    assert not (out / "results.jsonl").exists()
    assert merge_job(out)["items"] == 12  # the run's own input still merges


def test_merge_of_a_stdin_run_still_asks_for_the_piped_lines(tmp_path: Path) -> None:
    text = "".join(json.dumps(i) + "\n" for i in random_items(5))
    cfg, out = make_config(tmp_path), tmp_path / "o"
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    r = subprocess.run([sys.executable, "-m", "fabric_hpc.cli", "infer", "run", "--engine-config", str(cfg),
                        "--input", "-", "--output", str(out), "--no-progress"], input=text, text=True,
                       capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    with pytest.raises(ConfigError, match="this run read stdin") as err:
        merge_job(out)
    assert "piped in" in err.value.hint
    with pytest.raises(ConfigError, match=r"merge does not read stdin \(--input -\)") as err:
        merge_job(out, "-")
    assert err.value.hint == "save the piped lines to a file and pass --input FILE"
    (tmp_path / "lines.jsonl").write_text(text)
    assert merge_job(out, str(tmp_path / "lines.jsonl"))["items"] == 5
