"""The printed JWT renewal command (install's note, every token error's hint), run in a real shell with
a stand-in ``scontrol`` on PATH: the new file is never readable by others while the token is written
into it, and a path or user name with spaces and quotes stays one argument."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fabric_hpc.events import read_json_lines
from fabric_hpc.slurm.rest_token import read_token_file, renew_command

USER = pwd.getpwuid(os.getuid()).pw_name
TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdW4iOiJmYWJyaWMifQ.renewed-signature"

_SCONTROL = f"""#!{sys.executable}
import json, os, sys  # records the mode of the file its output goes to, while it writes
st = os.fstat(1)
with open(os.environ["SCONTROL_RECORD"], "a") as f:
    row = {{"argv": sys.argv[1:], "mode": st.st_mode & 0o7777, "regular": st.st_mode >> 12 == 0o10}}
    f.write(json.dumps(row) + "\\n")
print("SLURM_JWT={TOKEN}")
"""


def _run(tmp_path: Path, path: Path, user: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    bin_dir, record = tmp_path / "bin", tmp_path / "scontrol.jsonl"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text(_SCONTROL)
    (bin_dir / "scontrol").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "SCONTROL_RECORD": str(record)}
    line = f"umask 022; {renew_command(str(path), user)}"  # root's and cron's usual umask
    done = subprocess.run(["sh", "-c", line], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    return done, read_json_lines(record) if record.exists() else []


@pytest.mark.parametrize("folder_name,name", [("fabric-hpc", "slurm.jwt"),
                                              ("etc fabric's \"dir\" $(x)", "slurm jwt")])
def test_the_new_token_file_is_private_while_scontrol_writes_it(tmp_path: Path, folder_name: str,
                                                                 name: str) -> None:
    folder = tmp_path / folder_name
    folder.mkdir()
    path = folder / name
    (folder / f"{name}.new").write_text("stale, 0644\n")  # left by an earlier failed run
    (folder / f"{name}.new").chmod(0o644)
    done, calls = _run(tmp_path, path, USER)
    assert done.returncode == 0, done.stderr
    assert len(calls) == 1 and calls[0]["regular"]
    assert calls[0]["mode"] & 0o077 == 0, oct(calls[0]["mode"])  # 0600 or tighter during the write
    assert calls[0]["argv"] == ["token", f"username={USER}", "lifespan=86400"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and not (folder / f"{name}.new").exists()
    assert read_token_file(str(path)) == TOKEN
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin", folder.name, "scontrol.jsonl"]


def test_a_user_name_with_spaces_and_quotes_stays_one_argument(tmp_path: Path) -> None:
    user = "o'k user; touch pwned \"$(touch pwned2)\""
    done, calls = _run(tmp_path, tmp_path / "slurm.jwt", user)
    assert [c["argv"] for c in calls] == [["token", f"username={user}", "lifespan=86400"]]
    assert done.returncode != 0  # no such user: `id -gn` fails, so the token is never put in place
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "pwned2").exists()
    assert not (tmp_path / "slurm.jwt").exists() and "no such user" in done.stderr
