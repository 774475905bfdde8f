"""Prolog and TaskProlog with two real users on one host (setpriv), and hostile files in place.

The TaskProlog (plugins/task_prolog.py) runs as each user with a Slurm-like environment; the
Prolog (plugins/prolog.py) runs as root. Files planted by another uid, symlinks, FIFOs,
group/other-writable files and unparsable files are never exported; each user's checkpoint
directory stays inside that user's own directory whatever the job is called.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from fabric_hpc.testing.nccl_facts import write_facts
from tests.real import require_real

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
USERS = ("fabric-test-u1", "fabric-test-u2")
HOST = "n1"


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                       check=True, capture_output=True)
        return pwd.getpwnam(name)


@pytest.fixture(scope="module")
def users() -> list[pwd.struct_passwd]:
    require_real("slurm", os.geteuid() == 0 and shutil.which("setpriv") is not None,
                 "two-user TaskProlog tests create users and need root and setpriv (util-linux)")
    return [_user(n) for n in USERS]


@pytest.fixture(scope="module")
def fabric_yaml(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, str]:
    """The site's fabric model and its YAML text, built once for the module (each site writes a copy)."""
    from fabric_hpc.topology import build, generators, save_spec

    fab = build(generators.leaf_spine(4, hosts_per_leaf=2, gpus=8, cpus=8))
    assert HOST in fab.host_pos, fab.hosts
    path = tmp_path_factory.mktemp("prolog-fabric") / "topology.yaml"
    save_spec(fab.spec, path)
    return fab, path.read_text()


@pytest.fixture(scope="module")
def readable() -> dict[str, Any]:
    """The first site's probe run as users[0] (can other users run this interpreter and checkout?),
    kept for the module: the answer does not change between tests, and the probe writes no file."""
    return {}


@pytest.fixture()
def site(users: list[pwd.struct_passwd], fabric_yaml: tuple[Any, str], readable: dict[str, Any]) -> dict:
    fab, yaml_text = fabric_yaml
    base = Path(tempfile.mkdtemp(prefix="fabric-prolog-", dir="/tmp"))
    base.chmod(0o755)
    (base / "topology.yaml").write_text(yaml_text)
    (base / "ckpt").mkdir(mode=0o755)
    os.chmod(base / "ckpt", 0o1777)               # a shared scratch root: sticky, like /tmp
    for u in users:                               # the admin creates each user's directory
        (base / "ckpt" / u.pw_name).mkdir()
        os.chown(base / "ckpt" / u.pw_name, u.pw_uid, u.pw_gid)
    cfg = {"topology": str(base / "topology.yaml"), "topo_dir": str(base / "nccl"),
           "ckpt_root": str(base / "ckpt")}
    site = {"base": base, "cfg": cfg, "users": users, "fab": fab}
    write_facts(base / "nccl", fab, HOST)  # the host's discovery sidecar: its NCCL file needs real bus ids
    write_cfg(site)
    if not readable:
        readable.update(task_prolog(site, users[0]))
    if "no topology hints (ModuleNotFoundError" in readable["notes"] or readable["rc"] == 126:
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"{sys.executable} or {REPO} cannot be read by other users here")
    yield site
    shutil.rmtree(base, ignore_errors=True)
    for u in users:
        shutil.rmtree(f"/tmp/{base.name}-u-{u.pw_uid}", ignore_errors=True)


def write_cfg(site: dict, **changes: str) -> None:
    path = site["base"] / "prolog.json"
    path.write_text(json.dumps({**site["cfg"], **changes}))
    path.chmod(0o644)


def configured_task_prolog(config: Path) -> Path:
    """plugins/task_prolog.py with its CONFIG set to ``config``, next to it (mode 0755)."""
    from fabric_hpc.slurm.plugins import render_script

    path = config.parent / "task_prolog.py"
    path.write_text(render_script("task_prolog.py", config=str(config), python=sys.executable))
    path.chmod(0o755)
    return path


def task_prolog(site: dict, user: pwd.struct_passwd | None, **env: str | bytes) -> dict:
    """Run plugins/task_prolog.py as ``user`` (root when None); its exports and notes."""
    argv = [sys.executable, str(REPO / "plugins" / "prolog.py")]
    if user is not None:  # the TaskProlog reads only its CONFIG line: a configured copy, as an install writes
        argv = [sys.executable, str(configured_task_prolog(site["base"] / "prolog.json"))]
    if user is not None:
        argv = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", *argv]
    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "FABRIC_PROLOG_CONFIG": str(site["base"] /
            "prolog.json"), "SLURMD_NODENAME": HOST, "CUDA_VISIBLE_DEVICES": "5,0", "SLURM_JOB_ID": "42",
            "SLURM_JOB_NAME": "train", **env}
    proc = subprocess.run(argv, env=full, cwd=site["base"], capture_output=True, timeout=60)
    out = proc.stdout.decode("utf-8", "replace")
    exports = dict(line[len("export "):].split("=", 1) for line in out.splitlines()
                   if line.startswith("export "))
    notes = "\n".join(line for line in out.splitlines() if line.startswith("print "))
    return {"rc": proc.returncode, "exports": exports, "notes": notes, "raw": out,
            "stderr": proc.stderr.decode(errors="replace")}


def root_prolog(site: dict) -> Path:
    res = task_prolog(site, None)
    assert res["rc"] == 0 and not res["stderr"], res
    return site["base"] / "nccl" / f"nccl-topo-{HOST}.xml"


def test_root_prolog_file_is_exported_to_both_users(site: dict) -> None:
    path = root_prolog(site)
    st, dst = path.stat(), path.parent.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644)
    assert (dst.st_uid, stat.S_IMODE(dst.st_mode)) == (0, 0o755)
    for u in site["users"]:
        res = task_prolog(site, u)
        assert res["rc"] == 0 and res["exports"]["NCCL_TOPO_FILE"] == str(path), res
        assert res["exports"]["CUDA_VISIBLE_DEVICES"] == "0,5"
        assert res["exports"]["FABRIC_CKPT_DIR"] == str(site["base"] / "ckpt" / u.pw_name / "train")
    # the Prolog rewrites nothing when the file is right, and repairs it when it is not
    mtime = path.stat().st_mtime_ns
    root_prolog(site)
    assert path.stat().st_mtime_ns == mtime
    path.write_text("garbage")
    assert root_prolog(site).read_text().lstrip().startswith("<system")


def test_without_a_root_file_each_user_keeps_a_private_copy(site: dict) -> None:
    write_cfg(site, user_topo_dir=f"/tmp/{site['base'].name}-u-{{uid}}")
    got = []
    for u in site["users"]:
        res = task_prolog(site, u)
        path = Path(res["exports"]["NCCL_TOPO_FILE"])
        d = path.parent.stat()
        assert path.parent == Path(f"/tmp/{site['base'].name}-u-{u.pw_uid}"), res
        assert (d.st_uid, stat.S_IMODE(d.st_mode), path.stat().st_uid) == (u.pw_uid, 0o700, u.pw_uid)
        got.append(path)
    assert got[0] != got[1]


def _plant(site: dict, kind: str) -> None:
    """A hostile entry where the root-written file belongs; topo_dir itself root-owned 0755."""
    good = root_prolog(site)
    text = good.read_text()
    good.unlink()
    u1 = site["users"][0]
    if kind == "other-uid":
        good.write_text(text)
        os.chown(good, u1.pw_uid, u1.pw_gid)
    elif kind == "symlink":
        (site["base"] / "elsewhere.xml").write_text(text)
        good.symlink_to(site["base"] / "elsewhere.xml")
    elif kind == "fifo":
        os.mkfifo(good, 0o644)
    elif kind == "world-writable":
        good.write_text(text)
        good.chmod(0o666)
    elif kind == "unparsable":
        good.write_text("<system><cpu>")
    elif kind == "not-nccl":
        good.write_text("<html/>")
    elif kind == "entity":
        good.write_text('<!DOCTYPE s [<!ENTITY a "aaaa">]><system>&a;</system>')
    elif kind == "directory":
        good.mkdir()
    elif kind == "dir-world-writable":
        good.write_text(text)
        good.parent.chmod(0o777)
    elif kind == "dir-other-owner":
        good.write_text(text)
        os.chown(good.parent, u1.pw_uid, u1.pw_gid)
    else:
        raise AssertionError(kind)


HOSTILE = ["other-uid", "symlink", "fifo", "world-writable", "unparsable", "not-nccl", "entity",
           "directory", "dir-world-writable", "dir-other-owner"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_topology_file_is_never_exported(site: dict, kind: str) -> None:
    _plant(site, kind)
    u2 = site["users"][1]
    res = task_prolog(site, u2)
    assert res["rc"] == 0 and "NCCL_TOPO_FILE" not in res["exports"], res
    assert "no NCCL_TOPO_FILE" in res["notes"], res
    assert res["exports"]["CUDA_VISIBLE_DEVICES"] == "0,5"       # the other hints still come
    # with a per-user directory configured, the user gets its own checked copy instead
    write_cfg(site, user_topo_dir=f"/tmp/{site['base'].name}-u-{{uid}}")
    res = task_prolog(site, u2)
    if kind.startswith("dir-"):  # the host's facts live in topo_dir too: an untrusted one gives no file
        assert "NCCL_TOPO_FILE" not in res["exports"] and ".facts.json: not used" in res["notes"], res
    else:
        own = f"/tmp/{site['base'].name}-u-{u2.pw_uid}/nccl-topo-{HOST}.xml"
        assert res["exports"]["NCCL_TOPO_FILE"] == own


@pytest.mark.parametrize("plant", ["dir-of-other-user", "symlink", "file"])
def test_hostile_per_user_directory_is_refused(site: dict, plant: str) -> None:
    u1, u2 = site["users"]
    target = Path(f"/tmp/{site['base'].name}-u-{u2.pw_uid}")
    if plant == "dir-of-other-user":              # u1 creates u2's directory first
        target.mkdir(mode=0o777)
        target.chmod(0o777)
        os.chown(target, u1.pw_uid, u1.pw_gid)
    elif plant == "symlink":
        target.symlink_to(site["base"])
    else:
        target.write_text("x")
    try:
        write_cfg(site, user_topo_dir=f"/tmp/{site['base'].name}-u-{{uid}}")
        res = task_prolog(site, u2)
        assert res["rc"] == 0 and "NCCL_TOPO_FILE" not in res["exports"], res
        assert "no NCCL_TOPO_FILE" in res["notes"]
    finally:
        if target.is_symlink() or target.is_file():
            target.unlink()


@pytest.mark.parametrize("name", ["..", ".", "../../etc", "x" * 5000, "a\nb", b"\xff\xfe..", "/abs/path",
                                  ".hidden", "%s%d"])
def test_hostile_job_names_stay_inside_the_users_directory(site: dict, name: str | bytes) -> None:
    root_prolog(site)
    u = site["users"][1]
    res = task_prolog(site, u, SLURM_JOB_NAME=name, SLURM_JOB_USER="root")   # a forged user too
    ck = res["exports"]["FABRIC_CKPT_DIR"]
    own = site["base"] / "ckpt" / u.pw_name
    assert Path(ck).parent == own and os.path.realpath(ck).startswith(str(own) + "/"), res
    comp = Path(ck).name
    assert comp not in (".", "..") and not comp.startswith(".") and len(comp) <= 64
    assert all(ch.isalnum() or ch in "_.-+" for ch in comp)  # '+' and a hash: a name that had to change
    assert res["raw"].count("\n") == len(res["raw"].splitlines())   # one line per export


def test_checkpoint_dir_planted_by_another_user_is_refused(site: dict) -> None:
    u1, u2 = site["users"]
    own = site["base"] / "ckpt" / u2.pw_name
    shutil.rmtree(own)
    own.symlink_to(site["base"] / "ckpt" / u1.pw_name)     # into u1's checkpoints
    res = task_prolog(site, u2)
    assert "FABRIC_CKPT_DIR" not in res["exports"] and "no FABRIC_CKPT_DIR" in res["notes"], res
    own.unlink()
    (site["base"] / "ckpt" / u2.pw_name).mkdir()
    (site["base"] / "ckpt" / u2.pw_name / "train").symlink_to("/etc")
    os.lchown(site["base"] / "ckpt" / u2.pw_name / "train", u2.pw_uid, u2.pw_gid)
    res = task_prolog(site, u2)
    assert "FABRIC_CKPT_DIR" not in res["exports"], res


def test_constrained_devices_are_mapped_to_the_hosts_gpus(tmp_path: Path) -> None:
    """Under ConstrainDevices=yes a task holding host GPUs 7,5,6,4 sees CUDA_VISIBLE_DEVICES=0..3
    and the host indices in SLURM_STEP_GPUS (SLURM_JOB_GPUS in the batch step): the hints follow
    the host's GPUs (NUMA 1), the exported ids stay the task's own."""
    from fabric_hpc.slurm.prolog import task_exports
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("superpod:sus=1")  # su01-h01: GPUs 0-3 on NUMA 0, 4-7 on NUMA 1, rail = index
    base = {"SLURMD_NODENAME": "su01-h01", "SLURM_JOB_NAME": "t"}

    def hints(**env: str) -> tuple[str, str, str]:
        out = task_exports(fab, {**base, **env}, topo_dir=tmp_path / "nccl", ckpt_root=tmp_path / "ckpt")
        return out["CUDA_VISIBLE_DEVICES"], out["FABRIC_NUMA_NODES"], out["FABRIC_CPU_BIND"]

    local = hints(CUDA_VISIBLE_DEVICES="0,1,2,3", SLURM_STEP_GPUS="4,5,6,7")
    assert local == ("0,1,2,3", "1", "map_ldom:1,1,1,1")
    assert hints(CUDA_VISIBLE_DEVICES="0,1,2,3", SLURM_JOB_GPUS="4,5,6,7") == local       # batch step
    assert hints(CUDA_VISIBLE_DEVICES="1,0", SLURM_STEP_GPUS="5,0") == ("0,1", "0,1", "map_ldom:0,1")
    assert hints(CUDA_VISIBLE_DEVICES="7,6,5,4") == ("4,5,6,7", "1", "map_ldom:1,1,1,1")  # no cgroup: global ids
    assert hints(CUDA_VISIBLE_DEVICES="4,6", SLURM_STEP_GPUS="4,6") == ("4,6", "1", "map_ldom:1,1")  # equal: global
    # a global list that cannot be paired (another length) is not guessed at
    assert hints(CUDA_VISIBLE_DEVICES="0,1", SLURM_STEP_GPUS="4,5,6") == ("0,1", "0", "map_ldom:0,0")


def test_safe_component_unit() -> None:
    import hashlib

    from fabric_hpc.slurm.prolog import safe_component

    def tag(v: str) -> str:
        return "+" + hashlib.sha256(v.encode("utf-8", "surrogateescape")).hexdigest()[:16]

    assert [safe_component(v) for v in ("..", ".", "", "probe", "a/b", "\udcff")] == [
        "_." + tag(".."), "_" + tag("."), "job", "probe", "a_b" + tag("a/b"), "_" + tag("\udcff")]
    long = safe_component("y" * 300)
    assert len(long) == 64 and long != safe_component("y" * 301)


def test_safe_component_keeps_safe_names_and_never_merges_two() -> None:
    """Names that are already one safe component keep their directory (as before); every other name
    is told apart from them and from each other (`-J .hidden` and `-J _hidden` were one directory)."""
    import hashlib
    import re

    from fabric_hpc.slurm.prolog import safe_component

    safe = ["probe", "train_gang", "a-b.c", "_hidden", "a_b___id_", "run.2024-01-01", "x" * 64, "_.", "_"]
    assert [safe_component(v) for v in safe] == safe
    assert safe_component("y" * 300) == "y" * 55 + "-" + hashlib.sha256(b"y" * 300).hexdigest()[:8]  # kept
    unsafe = [".hidden", "a b;$(id)", "..", ".", "a/b", "a b", "a\tb", "a\nb", "é", "\udcff", "../../etc",
              "%s%d", "z" * 70 + " ", "z" * 70 + "!", ".x" * 40, "x+y", "a_b+0000000000000000"]
    names = safe + unsafe + ["y" * 300, "y" * 301]
    out = [safe_component(v) for v in names]
    assert len(set(out)) == len(names), [o for o in out if out.count(o) > 1]
    for comp in out:
        assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.+-]{0,63}", comp), comp
    assert safe_component(".hidden") != "_hidden" and safe_component("a b;$(id)") != "a_b___id_"
    # user names keep the earlier mapping (their directories stay; another uid's directory is refused)
    assert [safe_component(u, tag=False) for u in ("ann@example.org", ".x", "probe", "é")] == [
        "ann_example.org", "_x", "probe", "__"]


def test_topo_files_cli_writes_root_owned_files(site: dict) -> None:
    from fabric_hpc.cli.main import main

    d = site["base"] / "nccl-cli"
    write_facts(d, site["fab"], HOST)
    assert main(["slurm", "topo-files", "--topology", site["cfg"]["topology"], "--dir", str(d),
                 "--host", HOST, "--json"]) == 0
    f = d / f"nccl-topo-{HOST}.xml"
    assert stat.S_IMODE(f.stat().st_mode) == 0o644 and f.stat().st_uid == 0
    write_cfg(site, topo_dir=str(d))
    assert task_prolog(site, site["users"][0])["exports"]["NCCL_TOPO_FILE"] == str(f)


def test_topo_files_takes_a_generator_reference(tmp_path: Path) -> None:
    from fabric_hpc.cli.main import main
    from fabric_hpc.topology import open_fabric

    write_facts(tmp_path / "n", open_fabric("superpod:sus=1"), "su01-h01")
    assert main(["slurm", "topo-files", "--topology", "superpod:sus=1", "--dir", str(tmp_path / "n"),
                 "--host", "su01-h01"]) == 0
    assert (tmp_path / "n" / "nccl-topo-su01-h01.xml").read_text().lstrip().startswith("<system")


def test_topo_files_writes_every_host_with_facts_and_names_those_without(tmp_path: Path, capsys) -> None:
    """Before, the first host without usable discovery facts stopped the command: hosts after it got no
    file."""
    from fabric_hpc.cli.main import main
    from fabric_hpc.topology import open_fabric

    fab = open_fabric("superpod:sus=1")
    first, second, third = list(fab.hosts)[:3]
    d = tmp_path / "n"
    write_facts(d, fab, first)
    write_facts(d, fab, third)  # the second host has no facts
    argv = ["slurm", "topo-files", "--topology", "superpod:sus=1", "--dir", str(d)]
    assert main([*argv, "--host", first, "--host", second, "--host", third]) == 3
    err = capsys.readouterr().err
    assert f"2 topology file(s) written in {d}; none for 1 host(s) {second}:" in err, err
    assert (d / f"nccl-topo-{first}.xml").is_file() and (d / f"nccl-topo-{third}.xml").is_file()
    assert not (d / f"nccl-topo-{second}.xml").exists()
