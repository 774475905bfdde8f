"""The TaskProlog's fast path (fabric_hpc/slurm/task_fast.py) against its full path.

The root Prolog (prepare_node, as the real plugins/prolog.py does) writes the hints file; the
fast path must then give exactly what task_exports gives for any task environment, fall back
(None) whenever the hints file is missing, stale, tampered with or untrusted, import nothing but
the standard library, and cost a fraction of the full path's CPU time.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fabric_hpc.slurm import task_fast
from fabric_hpc.testing.nccl_facts import write_facts
from fabric_hpc.slurm.prolog import hints_path, prepare_node, task_exports, topo_path
from tests.real import require_real
from tests.slurm.prolog_site import make_site

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugins" / "task_prolog.py"
NAMES = ["train", "../../etc", ".hidden", "a b;rm -rf", "x" * 90, "ünï", "$(id)", "", "%s%d", "job.1"]


def _pcie_spec() -> dict:
    """Hosts of 4 GPUs on PCIe only (no NVLink, no NVSwitch), two NICs: two rails per host."""
    from fabric_hpc.topology import generators

    spec = generators.leaf_spine(4, hosts_per_leaf=2, gpus=4, cpus=8).model_dump(mode="json")
    spec["host_types"]["node"].update(nvlink_gbps=0, nvswitches=0, nics=2)
    return spec


def _spec(kind: str):
    from fabric_hpc.topology import generators

    if kind == "superpod":
        return generators.superpod(1, hosts_per_su=4)
    if kind == "nvl72":
        return generators.nvl72(1)
    return _pcie_spec()


@pytest.fixture(params=["superpod", "nvl72", "pcie"])
def site(request: pytest.FixtureRequest) -> Iterator[dict]:
    """A fabric file, prolog.json and a root-owned topo_dir, as the root Prolog leaves them."""
    require_real("slurm", os.geteuid() == 0, "the hints file is trusted only when root's: run as root")
    from fabric_hpc.topology import build

    fab = build(_spec(request.param))
    base, cfg = make_site(fab, "fabric-fast-")
    hosts = fab.hosts[:2]
    for host in hosts:
        write_facts(base / "nccl", fab, host)  # discovered bus ids: the hosts get NCCL topology files
        prepare_node(base / "prolog.json", {"SLURMD_NODENAME": host})
    yield {"kind": request.param, "base": base, "cfg": cfg, "fab": fab, "hosts": hosts,
           "config": base / "prolog.json"}
    shutil.rmtree(base)


def _full(site: dict, env: dict) -> tuple[dict, list]:
    notes: list = []
    out = task_exports(site["fab"], env, topo_dir=site["cfg"]["topo_dir"], ckpt_root=site["cfg"]["ckpt_root"],
                       notes=notes)
    return out, notes


def _random_env(rng: random.Random, site: dict) -> dict:
    host = rng.choice(site["hosts"])
    n = len(site["fab"].host_gpus(host))
    gpus = rng.sample(range(n), rng.randint(0, n))
    env = {"SLURM_JOB_ID": str(rng.randint(1, 10**7))}
    if rng.random() < 0.5:
        env["SLURMD_NODENAME"] = host
    else:
        env["SLURM_TOPOLOGY_ADDR"] = f"spine.leaf.{host}"
    name = rng.choice(NAMES)
    if name:
        env["SLURM_JOB_NAME"] = name
    style = rng.choice(["plain", "step", "job", "unpaired"])
    if style == "plain":
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
    elif gpus:  # ConstrainDevices=yes: visible ids from 0, host indices in SLURM_STEP_GPUS/SLURM_JOB_GPUS
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, range(len(gpus))))
        extra = [0] if style == "unpaired" else []
        env["SLURM_STEP_GPUS" if style == "step" else "SLURM_JOB_GPUS"] = ",".join(map(str, gpus + extra))
    return env


def test_fast_path_equals_task_exports_for_random_tasks(site: dict) -> None:
    rng = random.Random(f"fast-{site['fab'].name}")
    seen = set()
    for _ in range(150):
        env = _random_env(rng, site)
        full, notes = _full(site, env)
        assert not notes, notes
        assert task_fast.fast_exports(site["config"], env) == full, env
        seen.add(full.get("FABRIC_CPU_BIND", "-"))
    assert len(seen) > 5, seen  # the draws covered many GPU orders


def test_a_gpu_outside_the_host_or_an_unknown_host_takes_the_full_path(site: dict) -> None:
    host = site["hosts"][0]
    n = len(site["fab"].host_gpus(host))
    for env in ({"SLURMD_NODENAME": host, "CUDA_VISIBLE_DEVICES": f"0,{n}"},
                {"SLURMD_NODENAME": host, "CUDA_VISIBLE_DEVICES": "0,0"},
                {"SLURMD_NODENAME": site["fab"].hosts[-1], "CUDA_VISIBLE_DEVICES": "0"},  # no Prolog there
                {"SLURMD_NODENAME": "nohost", "CUDA_VISIBLE_DEVICES": "0"}):
        assert task_fast.fast_exports(site["config"], env) is None, env


def _tamper(site: dict, how: str) -> None:
    host = site["hosts"][0]
    hints = hints_path(site["cfg"]["topo_dir"], host)
    doc = json.loads(hints.read_bytes())
    if how == "missing":
        hints.unlink()
    elif how == "stale-config":
        site["config"].write_text(json.dumps(site["cfg"], indent=1))
    elif how == "stale-fabric":
        with open(site["cfg"]["topology"], "a") as f:
            f.write("# edited\n")
    elif how == "topo-file-changed":
        path = topo_path(site["cfg"]["topo_dir"], host)
        path.write_text(path.read_text().replace("<system", "<system ", 1))
    elif how == "world-writable":
        hints.chmod(0o666)
    elif how == "not-root":
        os.chown(hints, 12345, 12345)
    elif how == "symlink":
        copy = site["base"] / "copy.json"
        copy.write_bytes(hints.read_bytes())
        hints.unlink()
        hints.symlink_to(copy)
    elif how == "dir-writable":
        os.chmod(hints.parent, 0o777)
    elif how == "extra-key":
        hints.write_text(json.dumps({**doc, "x": 1}))
    elif how == "bad-gpus":
        hints.write_text(json.dumps({**doc, "gpus": [[True, 0]] * len(doc["gpus"])}))
    elif how == "bad-format":
        hints.write_text(json.dumps({**doc, "format": 2}))
    elif how == "huge":
        hints.write_text(json.dumps({**doc, "host": doc["host"] + " " * task_fast.MAX_HINTS_BYTES}))
    elif how == "not-json":
        hints.write_bytes(b"\xff{")


@pytest.mark.parametrize("how", ["missing", "stale-config", "stale-fabric", "topo-file-changed",
                                 "world-writable", "not-root", "symlink", "dir-writable", "extra-key",
                                 "bad-gpus", "bad-format", "huge", "not-json"])
@pytest.mark.parametrize("site", ["superpod"], indirect=True)
def test_a_missing_stale_or_untrusted_hints_file_takes_the_full_path(site: dict, how: str) -> None:
    env = {"SLURMD_NODENAME": site["hosts"][0], "CUDA_VISIBLE_DEVICES": "1,0", "SLURM_JOB_NAME": "t"}
    assert task_fast.fast_exports(site["config"], env) is not None
    _tamper(site, how)
    assert task_fast.fast_exports(site["config"], env) is None
    if how in ("stale-config", "stale-fabric", "missing", "not-json", "world-writable"):
        prepare_node(site["config"], {"SLURMD_NODENAME": site["hosts"][0]})  # the next Prolog repairs it
        assert task_fast.fast_exports(site["config"], env) == _full(site, env)[0]


def configured(config: Path) -> Path:
    """The TaskProlog with its CONFIG set to ``config`` (it reads no FABRIC_PROLOG_CONFIG), as installed."""
    from fabric_hpc.slurm.plugins import render_script

    path = config.parent / "task_prolog.py"
    path.write_text(render_script(PLUGIN.name, config=str(config), python=sys.executable))
    path.chmod(0o755)
    return path


def _plugin(site: dict, wrap: list[str] | None = None, **env: str) -> tuple[str, float]:
    """plugins/task_prolog.py's output and the CPU seconds (user + system) it took (``wrap``: e.g.
    setpriv, to run it as a user)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    full = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **env}
    plugin = str(configured(site["config"]))
    proc = subprocess.run([*(wrap or []), sys.executable, plugin], capture_output=True, text=True,
                          check=True, timeout=120, cwd=site["base"], env=full)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc.stdout, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.mark.slow
def test_the_plugin_takes_the_fast_path_and_prints_what_the_full_path_prints(site: dict) -> None:
    env = {"SLURMD_NODENAME": site["hosts"][1], "CUDA_VISIBLE_DEVICES": "3,0,2", "SLURM_JOB_NAME": "a b"}
    fast, _ = _plugin(site, **env)
    full, _ = _plugin(site, **env, FABRIC_TASK_PROLOG="full")
    assert fast == full + "export FABRIC_TASK_PROLOG=fast\n" and "CUDA_VISIBLE_DEVICES" in full, (fast, full)
    hints_path(site["cfg"]["topo_dir"], site["hosts"][1]).unlink()
    assert _plugin(site, **env)[0] == full


@pytest.mark.slow
def test_the_fast_path_imports_only_the_standard_library(site: dict) -> None:
    code = ("import runpy, sys; out = runpy.run_path(sys.argv[1])['fast'](); "
            "print(out is not None, sorted(m for m in sys.modules if m.split('.')[0] in "
            "('fabric_hpc', 'networkx', 'numpy', 'yaml', 'pydantic', 'xml')))")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "SLURMD_NODENAME": site["hosts"][0],
           "CUDA_VISIBLE_DEVICES": "0"}
    plugin = str(configured(site["config"]))
    proc = subprocess.run([sys.executable, "-c", code, plugin], capture_output=True, text=True,
                          check=True, env=env)
    assert proc.stdout.strip() == "True []", proc


@pytest.mark.slow
@pytest.mark.parametrize("site", ["superpod"], indirect=True)
def test_the_fast_path_is_several_times_cheaper_in_cpu_time(site: dict) -> None:
    env = {"SLURMD_NODENAME": site["hosts"][0], "CUDA_VISIBLE_DEVICES": "0,1,2,3", "SLURM_JOB_NAME": "t"}
    fast = sum(_plugin(site, **env)[1] for _ in range(5))
    hints_path(site["cfg"]["topo_dir"], site["hosts"][0]).unlink()
    full = sum(_plugin(site, **env)[1] for _ in range(5))
    print(f"task_prolog CPU: fast {fast / 5:.3f} s, full {full / 5:.3f} s, ratio {full / fast:.1f}")
    assert full / fast >= 4, (fast, full)


@pytest.mark.slow
@pytest.mark.parametrize("site", ["pcie"], indirect=True)
def test_each_user_gets_from_the_fast_path_what_the_full_path_gives(site: dict) -> None:
    require_real("slurm", shutil.which("setpriv") is not None,
                 "setpriv (util-linux) runs the TaskProlog as each user")
    from tests.slurm.test_prolog_users import USERS, _user

    seen = set()
    for user in map(_user, USERS):
        for name in ("train", "../x y", ".h"):
            env = {"SLURMD_NODENAME": site["hosts"][0], "CUDA_VISIBLE_DEVICES": "2,1", "SLURM_JOB_NAME": name}
            wrap = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
            fast = _plugin(site, wrap, **env)[0]
            full = _plugin(site, wrap, **env, FABRIC_TASK_PROLOG="full")[0]
            if "ModuleNotFoundError" in full:
                pytest.skip(f"{sys.executable} or {REPO} cannot be read by other users here")
            assert fast == full + "export FABRIC_TASK_PROLOG=fast\n", (fast, full)
            seen.add(next(line for line in full.splitlines() if "FABRIC_CKPT_DIR" in line))
    assert len(seen) == 6 and all(f"/ckpt/{u}/" in " ".join(seen) for u in USERS), seen


def test_a_host_outside_the_model_takes_the_fast_path_too(site: dict) -> None:
    """A node the fabric model does not know (a CPU node, one added since) had no hints file, so each of
    its tasks loaded the whole model only to learn that (about ten times the CPU). The Prolog now writes
    one saying so: the fast path gives what the full path gives (the checkpoint directory, the note)."""
    from fabric_hpc.errors import ConfigError

    with pytest.raises(ConfigError, match="not a host of the fabric model"):
        prepare_node(site["config"], {"SLURMD_NODENAME": "cpu-node-7"})
    for extra in ({}, {"CUDA_VISIBLE_DEVICES": "0,1"}, {"CUDA_VISIBLE_DEVICES": "1", "SLURM_STEP_GPUS": "5"}):
        env = {"SLURMD_NODENAME": "cpu-node-7", "SLURM_JOB_NAME": "etl", "SLURM_JOB_ID": "12", **extra}
        full, notes = _full(site, env)
        assert task_fast.fast_result(site["config"], env) == (full, notes), env
        assert "FABRIC_CKPT_DIR" in full and bool(notes) == bool(extra), (full, notes)
    env = {"SLURMD_NODENAME": "cpu-node-7", "CUDA_VISIBLE_DEVICES": "0"}
    fast, full = _plugin(site, **env)[0], _plugin(site, **env, FABRIC_TASK_PROLOG="full")[0]
    assert "not a host of the fabric model" in fast and "export FABRIC_TASK_PROLOG=fast\n" in fast, fast
    assert fast.replace("export FABRIC_TASK_PROLOG=fast\n", "") == full, (fast, full)
