"""``fabric sim run``'s results directory is never left mixed: an output that cannot be written (a
directory where a run writes topology.html or state.json, an --out this user cannot create or write)
is refused before the replay, not after it, and
results.json, the file ``compare`` reads, is written last, once the other files are, with the previous
run's removed first, so a run stopped while writing leaves no results.json rather than new results
beside an old topology report (probe 2026-12-07)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.sim import Simulator, load_trace, write_results
from fabric_hpc.scheduler import make_policy
from fabric_hpc.topology import open_fabric

TOPO = "leaf-spine:hosts=2"


def _run(out: Path, trace: str = "synthetic:jobs=5") -> int:
    return main(["sim", "run", "--trace", trace, "--topology", TOPO, "--out", str(out), "--no-progress",
                 "--json"])


@pytest.mark.parametrize("name", ["topology.html", "state.json"])
def test_a_directory_where_a_run_writes_a_file_is_refused_before_the_replay(tmp_path: Path, capsys,
                                                                            name: str) -> None:
    out = tmp_path / "o"
    (out / name / "sub").mkdir(parents=True)
    assert _run(out) == 3
    err = capsys.readouterr().err
    assert f"--out {name}" in err and "directory" in err and "another directory" in err
    assert sorted(p.name for p in out.iterdir()) == [name]  # nothing written


def test_results_json_is_written_last_and_the_old_one_removed_first(tmp_path: Path) -> None:
    out = tmp_path / "o"
    assert _run(out, "synthetic:jobs=5,seed=1") == 0
    old = json.loads((out / "results.json").read_text())
    (out / "topology.html").unlink()
    (out / "topology.html").mkdir()  # the report cannot be written now: the write stops there
    fab = open_fabric(TOPO)
    res = Simulator(fab, make_policy("fabric"), load_trace("synthetic:jobs=7,seed=2")).run()
    with pytest.raises(ConfigError, match="topology.html"):
        write_results(res, out, trace="synthetic:jobs=7,seed=2", topology_report=True)
    assert old["summary"]["jobs"] == 5
    assert not (out / "results.json").exists()  # neither the old results nor new ones beside a stale page


@pytest.mark.skipif(not Path("/sys/fs").is_dir(), reason="needs sysfs, where no one may create a directory")
def test_an_out_that_cannot_be_created_is_refused_before_the_replay(tmp_path: Path, capsys) -> None:
    assert _run(Path("/sys/fs/fabric-sim-out")) == 5  # mkdir: EPERM (root too), EACCES elsewhere
    err = capsys.readouterr().err
    assert "error: --out '/sys/fs/fabric-sim-out': " in err and "permissions" in err


def test_an_out_this_user_may_not_write_is_refused_before_the_replay(tmp_path: Path, capsys) -> None:
    """Root may write any directory: as root, the check ``sim run`` makes before the replay runs as nobody
    in a forked child (nobody may not read this Python's files, so it runs no new import)."""
    import os

    from fabric_hpc.cli.sim import _writable_out

    if os.geteuid() != 0:
        out = tmp_path / "ro"
        out.mkdir(mode=0o555)
        assert _run(out) == 5
        assert f"error: --out '{out}': Permission denied" in capsys.readouterr().err
        return
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="fabric-sim-out-"))  # nobody reaches it (pytest's dirs are 0700)
    top.chmod(0o755)
    out = top / "ro"
    out.mkdir(mode=0o555)
    try:
        _as_nobody(_writable_out, out)
    finally:
        shutil.rmtree(top)


def _as_nobody(check, out: Path) -> None:  # noqa: ANN001 - _writable_out
    """``check(out)`` as nobody in a forked child: it must refuse ``out`` as not writable."""
    import os

    from fabric_hpc.errors import FabricError

    pid = os.fork()
    if pid == 0:  # the child: nobody, then the check alone, then out without cleanup
        code = 3
        try:
            os.setgid(65534)
            os.setuid(65534)
            check(str(out))
        except FabricError as exc:
            code = 0 if exc.message == f"--out '{out}': Permission denied" else 4
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # 3: nobody could write it, 4: another error



def test_an_out_on_a_read_only_filesystem_is_said_as_such(tmp_path: Path, capsys) -> None:
    """A real read-only tmpfs (root mounts it; root's os.access says yes there): the hint names the mount,
    not the permissions (the reviewer's finding)."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    at = tmp_path / "mnt"
    at.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(at)], capture_output=True)
    assert done.returncode == 0, done.stderr
    try:
        assert _run(at) == 5
        err = capsys.readouterr().err
        assert f"error: --out '{at}'" in err and "read-only" in err, err
    finally:
        subprocess.run(["umount", "-l", str(at)], check=False, capture_output=True)
