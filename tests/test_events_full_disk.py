"""A JSON-lines write that fails (a full disk) is undone: its records never reach the file later.

The agent writes its ``agent.place``/``agent.requeue`` records ahead of the actions; when that write
fails the cycle stops before any action, so the records must not appear with the next good write (a
buffered file used to keep them and write them then). RLIMIT_FSIZE stands in for a full disk, in a
child process so the limit and SIGXFSZ stay there."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fabric_hpc.events import read_json_lines

_CHILD = r"""
import json, os, resource, signal, sys
from fabric_hpc.events import JsonLinesWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path, fsync = sys.argv[1], sys.argv[2] == "1"
w = JsonLinesWriter(path, fsync=fsync)
w.write({"n": 1, "pad": "a" * 100})
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (300, hard))  # the disk is full after 300 bytes
try:
    w.write_many([{"n": 2, "event": "agent.place", "pad": "b" * 400}, {"n": 3}])
    failed = ""
except OSError as exc:
    failed = str(exc)
size = os.path.getsize(path)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))  # space freed
w.write({"n": 4})
w.close()
print(json.dumps({"failed": failed, "size": size}))
"""


def _run(tmp_path: Path, fsync: bool) -> tuple[dict, Path]:
    path = tmp_path / f"audit-{int(fsync)}.jsonl"
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path), "1" if fsync else "0"], cwd=root,
                         capture_output=True, text=True, timeout=60, check=True,
                         env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout), path


def test_failed_write_is_cut_off_and_never_written_later(tmp_path: Path) -> None:
    for fsync in (True, False):
        result, path = _run(tmp_path, fsync)
        assert "File too large" in result["failed"] and str(path) in result["failed"]
        first = len(json.dumps({"n": 1, "pad": "a" * 100}, separators=(",", ":"))) + 1
        assert result["size"] == first  # the part that went out is cut off again
        assert [e["n"] for e in read_json_lines(path)] == [1, 4]
        assert path.read_text().endswith('{"n":4}\n') and "agent.place" not in path.read_text()
