"""Fixes from a cluster-admin probe of ``fabric ckpt`` (real files, real commands through main())."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import save
from tests.checkpoint.builders import run_cli


def _steps(root: Path, steps: range | list[int]) -> Path:
    for s in steps:
        save(root, {"model": {"w": np.full(4, s, np.float32)}, "b": np.ones(2)}, step=s)
    return root


def test_restore_rerun_with_a_0d_tensor_keeps_the_same_reshard(tmp_path: Path, capsys) -> None:
    save(tmp_path / "ck", {"optim": {"step": np.int64(5)}, "w": np.ones(3, np.float32)}, step=1)
    args = ("ckpt", "restore", str(tmp_path / "ck"), "--to-world-size", "2", "--out", str(tmp_path / "o"))
    assert run_cli(capsys, *args)[0] == 0
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and "already holds this reshard" in out, err


_EXPORT = """
import sys
import fabric_hpc.checkpoint.hdf5 as h
if sys.argv[3] == "no-precheck":  # the disk filling up while writing (another job's files)
    h.check_free_space = lambda *a: None
from fabric_hpc.cli.main import main
sys.exit(main(["ckpt", "export", sys.argv[1], "--h5", sys.argv[2]]))
"""


@pytest.mark.parametrize("how", ["precheck", "no-precheck"])
def test_export_onto_a_full_disk_is_one_line_exit_5_and_no_crash(tmp_path: Path, how: str) -> None:
    import shutil
    import subprocess
    import sys
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare -m to mount a small tmpfs")
    save(tmp_path / "big", {"l": {str(i): {"w": np.ones((256, 1024), np.float32), "b": np.ones(7)}
                                  for i in range(12)}}, step=1)
    full = tmp_path / "full"
    full.mkdir()
    (tmp_path / "export.py").write_text(_EXPORT)
    root = Path(__file__).resolve().parents[2]
    script = (f"mount -t tmpfs -o size=1m tmpfs {full} || exit 99; "
              f"PYTHONPATH={root} {sys.executable} {tmp_path / 'export.py'} {tmp_path / 'big'} "
              f"{full / 'x.h5'} {how}; "
              f"rc=$?; ls -A {full}; exit $rc")
    r = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=120)
    if r.returncode == 99:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    assert r.returncode == 5, r.stdout + r.stderr
    assert "the disk is full" in r.stderr and "Traceback" not in r.stderr and "RuntimeError" not in r.stderr
    assert r.stderr.startswith("error: cannot write file") and str(full / "x.h5") in r.stderr
    assert r.stdout.strip() == ""  # no temporary file left on the full filesystem


def _edit_manifest(step_dir: Path, edit) -> None:
    doc = json.loads((step_dir / "zarr.json").read_text())
    edit(doc["attributes"]["fabric_checkpoint"])
    (step_dir / "zarr.json").write_text(json.dumps(doc))


def _list(capsys, root: Path) -> tuple[int, list[dict], str]:
    code, out, err = run_cli(capsys, "ckpt", "list", str(root), "--json")
    return code, json.loads(out) if out.strip() else [], err


def test_prune_and_list_check_each_step_before_counting_it(tmp_path: Path, capsys) -> None:
    """rm -rf step-5/model: prune kept only the damaged 5 and removed the rest; list said healthy."""
    import shutil
    root = _steps(tmp_path / "run", range(6))
    shutil.rmtree(root / "step-0000000005" / "model")
    n = 1 << 39  # float64: 4 TiB declared over a 16-byte file
    _edit_manifest(root / "step-0000000004", lambda m: (m["tensors"]["b"].update(shape=[n], chunk_shape=[n]),
                                                        m["tensors"]["b"]["chunks"][0].update(nbytes=8 * n),
                                                        m.update(nbytes=8 * n + 16)))
    code, rows, _ = _list(capsys, root)
    by_step = {r["step"]: r for r in rows}
    assert code == 0 and by_step[5]["damaged"] and "model/w/zarr.json: missing" in by_step[5]["error"]
    assert by_step[4]["damaged"] and "b/c.0: 16 bytes, manifest says 4398046511104" in by_step[4]["error"]
    assert not any(by_step[s].get("damaged") for s in range(4))
    code, _, err = run_cli(capsys, "ckpt", "prune", str(root), "--keep-last", "1", "--dry-run")
    assert code == 3 and "latest: names step-0000000005, which is damaged" in err and "--force" in err
    code, out, _ = run_cli(capsys, "ckpt", "prune", str(root), "--keep-last", "1", "--force", "--json")
    res = json.loads(out)
    assert code == 0 and res["removed"] == [0, 1, 2] and res["kept"] == [3, 4, 5] and res["damaged"] == [4, 5]
    assert sorted(p.name for p in root.iterdir() if p.name.startswith("step-")) == [
        "step-0000000003", "step-0000000004", "step-0000000005"]


def test_a_step_whose_manifest_names_another_step_is_damage(tmp_path: Path, capsys) -> None:
    root = _steps(tmp_path / "run", [58, 59])
    import shutil
    shutil.rmtree(root / "step-0000000058")
    _edit_manifest(root / "step-0000000059", lambda m: m.update(step=58))
    code, out, err = run_cli(capsys, "ckpt", "verify", str(root), "--json")
    assert code == 3 and "directory says 59, manifest says 58" in json.loads(out)[0]["problems"][0]
    code, _, err = run_cli(capsys, "ckpt", "show", str(root))
    assert code == 3 and "directory says 59, manifest says 58" in err
    code, _, err = run_cli(capsys, "ckpt", "restore", str(root), "--to-world-size", "2",
                           "--out", str(tmp_path / "o"))
    assert code == 3 and "directory says 59, manifest says 58" in err and not (tmp_path / "o").exists()
    assert _list(capsys, root)[1][0]["damaged"]


def test_verify_all_lists_the_root_once(tmp_path: Path, capsys, monkeypatch) -> None:
    """verify --all resolved each step through the root (two listings per step: quadratic)."""
    from fabric_hpc.checkpoint import store
    calls: list[Path] = []
    real = store.list_checkpoints
    monkeypatch.setattr(store, "list_checkpoints", lambda r: calls.append(r) or real(r))
    counts = []
    for n in (3, 12):
        root = _steps(tmp_path / f"run{n}", range(n))
        calls.clear()
        code, out, _ = run_cli(capsys, "ckpt", "verify", str(root), "--all", "--json")
        assert code == 0 and [r["step"] for r in json.loads(out)] == list(range(n))
        counts.append(len(calls))
    assert counts[0] == counts[1] <= 4, counts  # was 2 per step


def test_list_verify_prune_agree_on_what_is_a_root(tmp_path: Path, capsys) -> None:
    root = _steps(tmp_path / "run", [1])
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "hosts").write_text("x")
    (tmp_path / "empty").mkdir()
    for path, want in ((tmp_path / "etc", "is not a checkpoint root"),
                       (root / "step-0000000001", "it is a checkpoint itself")):
        for cmd in (["list"], ["verify", "--all"], ["prune", "--keep-last", "1"]):
            code, out, err = run_cli(capsys, "ckpt", cmd[0], str(path), *cmd[1:], "--json")
            assert code == 3 and want in json.loads(out)["error"], (cmd, out)
    for cmd in (["list"], ["verify", "--all"]):
        code, out, _ = run_cli(capsys, "ckpt", cmd[0], str(tmp_path / "empty"), *cmd[1:], "--json")
        assert code == 0 and json.loads(out) == []
    code, out, _ = run_cli(capsys, "ckpt", "prune", str(tmp_path / "empty"), "--keep-last", "1")
    assert code == 0 and "nothing to prune" in out
    (tmp_path / "started").mkdir()  # a training run started there and has not saved yet
    (tmp_path / "started" / ".train.lock").write_text("1\n")
    assert _list(capsys, tmp_path / "started")[:2] == (0, [])


def test_verify_json_root_report_has_step_null(tmp_path: Path, capsys) -> None:
    root = _steps(tmp_path / "run", [1])
    (root / "step-0000000002").mkdir()
    code, out, _ = run_cli(capsys, "ckpt", "verify", str(root), "--all", "--json")
    reports = json.loads(out)
    assert code == 3 and reports[0]["step"] is None and "step-0000000002" in reports[0]["problems"][0]


def test_a_broken_latest_is_said_by_list_and_stops_prune(tmp_path: Path, capsys) -> None:
    root = _steps(tmp_path / "run", range(3))
    (root / "latest").write_text("../../etc\n")
    code, rows, err = _list(capsys, root)
    assert code == 0 and "warning:" in err and "latest: not a regular file naming" in err
    assert all("latest: not a regular file" in r["latest_problem"] for r in rows)
    code, _, err = run_cli(capsys, "ckpt", "prune", str(root), "--keep-last", "1")
    assert code == 3 and "refusing to prune" in err and "echo step-NNNNNNNNNN >" in err
    assert len(list(root.glob("step-*"))) == 3
    assert run_cli(capsys, "ckpt", "prune", str(root), "--keep-last", "1", "--force")[0] == 0
    assert [p.name for p in root.glob("step-*")] == ["step-0000000002"]


def test_prune_removes_leftovers_of_dead_writers_only_and_list_shows_them(tmp_path: Path, capsys) -> None:
    import socket
    import subprocess
    root = _steps(tmp_path / "run", [1, 2])
    p = subprocess.Popen(["true"])  # a pid that is gone
    p.wait()
    host = socket.gethostname()
    killed = root / f".tmp-step-0000000003-{host}-{p.pid}-abcdef12"
    live = root / f".tmp-step-0000000004-{host}-{os.getpid()}-12345678"
    other = root / f".tmp-step-0000000005-elsewhere-{p.pid}-0badcafe"
    trash = root / ".trash-step-0000000000-ffffffff"
    for d in (killed, live, other, trash):
        (d / "model").mkdir(parents=True)
        (d / "model" / "c.0").write_bytes(b"x" * 1000)
    code, out, _ = run_cli(capsys, "ckpt", "list", str(root))
    assert code == 0 and f"leftover {killed}: 1000 B, pid {p.pid}, abandoned" in out
    assert f"leftover {live}" in out and "in progress" in out and "writer unknown" in out
    code, out, _ = run_cli(capsys, "ckpt", "prune", str(root), "--keep-last", "5", "--json")
    assert code == 0 and sorted(json.loads(out)["leftovers_removed"]) == sorted([str(killed), str(trash)])
    assert not killed.exists() and not trash.exists() and live.exists() and other.exists()


def test_a_save_names_its_host_and_pid_in_its_temporary_directory() -> None:
    import socket
    from fabric_hpc.checkpoint.health import _TMP_HOST, tmp_name
    m = _TMP_HOST.match(tmp_name("step-0000000007"))
    ns = os.stat("/proc/self/ns/pid").st_ino  # the PID namespace too: a container's pid is not ours
    assert m and m.group("host") == f"{socket.gethostname()}@{ns}" and int(m.group("pid")) == os.getpid()


#: File permission checks apply to root once these capabilities are gone (capabilities(7)).
_DAC_CAPS = "-dac_override,-dac_read_search"


def _as_another_user(*args: str) -> tuple[int, str, str]:
    """``fabric ARGS`` as a user to whom another user's private files are closed: root without the
    capabilities that bypass permission checks. Unlike switching to nobody, this needs no access for
    nobody to the checkout and its venv (a clone in ``mktemp -d`` is 0700)."""
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(["setpriv", f"--bounding-set={_DAC_CAPS}", f"--inh-caps={_DAC_CAPS}", sys.executable,
                        "-c", f"import sys; sys.path.insert(0, {str(root)!r}); "
                        "from fabric_hpc.cli.main import main; "
                        "sys.exit(main(sys.argv[1:]))", *args], capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout, r.stderr


def _theirs(path: Path, mode: int) -> None:
    """``path`` owned by another user (nobody) with ``mode``."""
    os.chown(path, 65534, 65534)
    path.chmod(mode)


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A directory for files of two users: this one (root, less its bypassing capabilities) and nobody."""
    import shutil
    import subprocess
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run a command as another user")
    probe = tmp_path / "theirs"
    probe.write_text("x")
    _theirs(probe, 0o600)
    # without CAP_SETPCAP (a container's root) setpriv keeps the capabilities and says nothing
    drop = ["setpriv", f"--bounding-set={_DAC_CAPS}", f"--inh-caps={_DAC_CAPS}"]
    if subprocess.run([*drop, "cat", str(probe)], capture_output=True, timeout=30).returncode == 0:
        pytest.skip("this root cannot drop CAP_DAC_OVERRIDE (no CAP_SETPCAP): another user's files stay open")
    probe.unlink()
    return tmp_path


def test_permission_denied_is_exit_5_naming_the_full_path(shared: Path) -> None:
    root = _steps(shared / "run", [1, 2])
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    assert _as_another_user("ckpt", "list", str(root))[0] == 0
    _theirs(root / "step-0000000002", 0o700)  # another user's step
    for cmd in (["list"], ["verify", "--all"], ["prune", "--keep-last", "1"]):
        code, out, err = _as_another_user("ckpt", cmd[0], str(root), *cmd[1:])
        assert code == 5 and f"{root / 'step-0000000002'}" in err, (cmd, out, err)
        assert "permission denied" in err
        assert "DAMAGED" not in out and "Usage:" not in err
    assert (root / "step-0000000001").exists()
    (root / "step-0000000002").chmod(0o755)
    _theirs(root / "latest", 0o600)
    code, _, err = _as_another_user("ckpt", "list", str(root))
    assert code == 5 and f"{root / 'latest'}: permission denied" in err
    _theirs(root, 0o700)  # the path argument itself: one line, exit 5 (was click's usage error, exit 2)
    for cmd in (["list"], ["show"], ["verify"]):
        code, _, err = _as_another_user("ckpt", cmd[0], str(root))
        assert code == 5 and "Usage:" not in err, (cmd, err)
        assert str(root) in err and "ermission denied" in err


@pytest.mark.parametrize("var", ["PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK"])
def test_the_rank_comes_from_mpi_launchers_without_slurm(monkeypatch, var: str) -> None:
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.trainer import RANK_VARIABLES, env_rank
    for v in RANK_VARIABLES:
        monkeypatch.delenv(v, raising=False)
    assert env_rank() == 0
    monkeypatch.setenv(var, "1")
    assert env_rank() == 1
    monkeypatch.setenv("SLURM_PROCID", "3")  # srun's own variable first
    assert env_rank() == 3
    monkeypatch.delenv("SLURM_PROCID")
    monkeypatch.setenv(var, "x")
    with pytest.raises(ConfigError, match=f"{var}='x' is not a rank"):
        env_rank()


@pytest.mark.mpi
def test_train_demo_under_plain_mpiexec_runs_both_ranks(tmp_path: Path) -> None:
    """The second rank failed "in use by another training run": it believed it was rank 0."""
    import subprocess
    import sys
    from tests.real import require_real
    root = Path(__file__).resolve().parents[2]
    mpiexec = root / ".venv" / "bin" / "mpiexec"
    require_real("mpi", mpiexec.exists(), f"{mpiexec} missing (pip install '.[mpi]')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")} | {"PYTHONPATH": str(root)}
    r = subprocess.run([str(mpiexec), "-n", "2", sys.executable, "-m", "fabric_hpc.slurm.train_demo",
                        "--ckpt-dir", str(tmp_path / "ck"), "--steps", "3", "--step-seconds", "0.01"],
                       env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "in use by another" not in r.stderr, r.stdout + r.stderr
    # mpiexec forwards both ranks' output through one pipe: a report may share a line with the other's
    dec, text = json.JSONDecoder(), r.stdout
    ranks = sorted(dec.raw_decode(text, m.start())[0]["rank"] for m in re.finditer(r'\{"rank"', text))
    assert ranks == [0, 1]


def test_restore_out_into_a_directory_of_other_files_is_refused(tmp_path: Path, capsys) -> None:
    root = _steps(tmp_path / "run", [1])
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "notes.txt").write_text("mine")
    code, _, err = run_cli(capsys, "ckpt", "restore", str(root), "--to-world-size", "2",
                           "--out", str(tmp_path / "home"))
    assert code == 3 and "holds other files and is not a checkpoint root" in err
    assert os.listdir(tmp_path / "home") == ["notes.txt"]
    for out in ("new", "run2"):  # a new directory, then an existing root (another step there)
        if out == "run2":
            _steps(tmp_path / "run2", [7])
        code, _, err = run_cli(capsys, "ckpt", "restore", str(root), "--to-world-size", "2",
                               "--out", str(tmp_path / out))
        assert code == 0 and (tmp_path / out / "step-0000000001").is_dir(), err


def test_verify_says_a_symlinked_tensor_directory_once(tmp_path: Path, capsys) -> None:
    root = _steps(tmp_path / "run", [1])
    w = root / "step-0000000001" / "model" / "w"
    w.rename(tmp_path / "wdir")
    w.symlink_to(tmp_path / "wdir")
    code, out, _ = run_cli(capsys, "ckpt", "verify", str(root), "--json")
    assert code == 3 and json.loads(out)[0]["problems"] == ["model/w: is a symlink (not followed)"]


def test_show_of_a_root_without_a_good_step_gives_a_real_fix(tmp_path: Path, capsys) -> None:
    (tmp_path / "e" / "step-0000000003").mkdir(parents=True)
    (tmp_path / "e" / "latest").write_text("step-0000000003\n")
    code, _, err = run_cli(capsys, "ckpt", "show", str(tmp_path / "e"))
    assert code == 3 and "steps: []" not in err and "holds no other committed step" in err


def test_a_save_records_who_saved_it_and_show_says_so(tmp_path: Path, capsys, monkeypatch) -> None:
    import socket
    from fabric_hpc.checkpoint.format import ATTR, PROVENANCE_ATTR, parse_provenance
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    root = _steps(tmp_path / "run", [1])
    doc = json.loads((root / "step-0000000001" / "zarr.json").read_text())
    prov = doc["attributes"][PROVENANCE_ATTR]
    assert prov["host"] == socket.gethostname() and prov["slurm_job_id"] == "4242"
    assert "." in prov["saved_at"].split("T")[1]  # sub-second
    assert "provenance" not in doc["attributes"][ATTR]  # the manifest older readers parse is unchanged
    code, out, _ = run_cli(capsys, "ckpt", "show", str(root), "--json")
    assert code == 0 and json.loads(out)["provenance"]["slurm_job_id"] == "4242"
    code, out, _ = run_cli(capsys, "ckpt", "show", str(root))
    assert code == 0 and f"on {socket.gethostname()} at" in out and "(Slurm job 4242)" in out
    # a reshard is a new save (its own provenance) that compares equal to its source
    code, _, err = run_cli(capsys, "ckpt", "restore", str(root), "--to-world-size", "2",
                           "--out", str(tmp_path / "o"))
    assert code == 0, err
    # an older checkpoint (no attribute) and a garbled one still read, without provenance
    for garbage in (None, "junk", {"host": 5, "future_field": "x"}):
        if garbage is None:
            doc["attributes"].pop(PROVENANCE_ATTR, None)
        else:
            doc["attributes"][PROVENANCE_ATTR] = garbage
        (root / "step-0000000001" / "zarr.json").write_text(json.dumps(doc))
        assert parse_provenance((root / "step-0000000001" / "zarr.json").read_bytes()) is None
        assert run_cli(capsys, "ckpt", "show", str(root))[0] == 0
        assert run_cli(capsys, "ckpt", "verify", str(root))[0] == 0


def test_an_unreadable_h5_file_is_exit_5_not_a_usage_error(shared: Path) -> None:
    from fabric_hpc.checkpoint.hdf5 import export_h5
    root = _steps(shared / "run", [1])
    export_h5(root, shared / "x.h5")
    _theirs(shared / "x.h5", 0o600)
    code, _, err = _as_another_user("ckpt", "import", "--h5", str(shared / "x.h5"), str(shared / "new"))
    assert code == 5 and "Usage:" not in err and f"'{shared / 'x.h5'}'" in err and "ermission denied" in err, err
