"""The corpus of nasty inputs (issue 17): each is a regression test through the real CLI.

Every case must end with one clear line on stderr and an exit code in {2, 3, 4, 5}: no traceback,
no hang (the per-test timeout is the hang guard), no file created outside the output path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from .harness import run_cli

pytestmark = pytest.mark.timeout(30)
REPO = Path(__file__).resolve().parents[2]

ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
DEEP_JSON = "[" * 100_000 + "]" * 100_000
DEEP_YAML = "a:\n" + "".join("  " * i + "- \n" for i in range(1, 200))
TIRESIAS_HEAD = "job_id,num_gpu,submit_time,iterations,model_name,duration,interval\n"
SWF_LINE = "1 {submit} 0 {run} 8 -1 -1 8 3600 -1 1 1 1 1 1 -1 -1 -1\n"


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# (id, setup(tmp) -> argv, fragment expected in the message)
TOPOLOGY_CASES = [
    ("yaml-alias-bomb", lambda t: ["topology", "validate", str(_write(t / "bomb.yaml", ALIAS_BOMB))], "alias"),
    ("yaml-deep", lambda t: ["topology", "validate", str(_write(t / "deep.yaml", DEEP_YAML))], "deep"),
    ("yaml-not-utf8", lambda t: ["topology", "validate", str(_write(t / "b.yaml", b"fabric: 1\nname: \xff\xfe\n"))],
     "UTF-8"),
    ("yaml-directory", lambda t: ["topology", "validate", str((t / "d.yaml").mkdir() or t / "d.yaml")], "directory"),
    ("yaml-fifo", lambda t: ["topology", "validate", str(_fifo(t / "f.yaml"))], "FIFO"),
    ("yaml-huge-hostlist", lambda t: ["topology", "validate", str(_write(t / "h.yaml", (
        (REPO / "topology/leaf-spine-16.yaml").read_text().replace("n[1-16]", "n[1-100000000]"))))], "names"),
    ("gen-racks-huge", lambda t: ["topology", "show", "nvl72:racks=1000000"], "racks"),
    ("gen-gpus-negative", lambda t: ["topology", "show", "fat-tree:k=4,gpus_per_host=-1"], "gpus_per_host"),
    ("gen-spine-zero", lambda t: ["topology", "show", "superpod:sus=8,sus_per_spine_group=0"], "sus_per_spine_group"),
    ("gen-racks-per-su-zero", lambda t: ["topology", "show", "nvl72:racks=2,racks_per_su=0"], "racks_per_su"),
    ("gen-nan", lambda t: ["topology", "show", "fat-tree:k=4,nic_gbps=nan"], "finite"),
    ("gen-repeated", lambda t: ["topology", "show", "superpod:sus=1,sus=2"], "more than once"),
    ("gen-empty-prefix", lambda t: ["topology", "show", "leaf-spine:hosts=4,prefix="], "prefix"),
    ("gen-spaced-prefix", lambda t: ["topology", "show", "leaf-spine:hosts=4,prefix=a b"], "prefix"),
    ("export-missing-dir", lambda t: ["topology", "export", "leaf-spine:hosts=4", "--format", "slurm-nodes",
                                      "-o", str(t / "nope" / "x.conf")], "does not exist"),
    ("export-to-dir", lambda t: ["topology", "export", "leaf-spine:hosts=4", "--format", "slurm-nodes",
                                 "-o", str(t) + "/"], "directory"),
]

PLACE_CASES = [
    ("request-repeated-key", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r", "nodes=2,gpus=8,nodes=3"],
     "more than once"),
    ("request-huge-include", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r",
                                        "gpus=1,include=a[1-1000000]b[1-1000000]"], "names"),
    ("request-spaced-hosts", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r", "gpus=1,include=n 1"],
     "white space"),
    ("time-limit-negative", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r", "gpus=1", "--time-limit", "-1"],
     "time-limit"),
    ("time-limit-nan", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r", "gpus=1", "--time-limit", "nan"],
     "finite"),
    ("workers-negative", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r", "gpus=1", "--workers", "-3"],
     "workers"),
    ("state-deep-json", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r", "gpus=1", "-s",
                                   str(_write(t / "s.json", DEEP_JSON))], "deep"),
    ("state-not-utf8", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r", "gpus=1", "-s",
                                  str(_write(t / "s.json", b'{"version": 1, "down": ["\xff"]}'))], "UTF-8"),
    ("state-fifo", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r", "gpus=1", "-s", str(_fifo(t / "s.json"))],
     "FIFO"),
    ("state-directory", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r", "gpus=1", "-s",
                                   str((t / "sd").mkdir() or t / "sd")], "directory"),
    ("state-gpus-int", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r", "gpus=1", "-s",
                                  str(_write(t / "s.json", '{"version": 1, "jobs": {"j": {"gpus": 5}}}'))], "gpus"),
    ("state-huge-down", lambda t: ["place", "-t", "leaf-spine:hosts=4", "-r", "gpus=1", "-s",
                                   str(_write(t / "s.json", '{"version": 1, "down": ["n[1-99999999]"]}'))], "names"),
]


def _sim(t: Path, trace: str, *extra: str) -> list[str]:
    return ["sim", "run", "--trace", trace, "-t", "leaf-spine:hosts=4", "--out", str(t / "out"),
            "--no-progress", "--no-topology-report", *extra]


SIM_CASES = [
    ("tiresias-nan", lambda t: _sim(t, "tiresias:" + str(_write(t / "t.csv", TIRESIAS_HEAD + "0,1,nan,1,vgg,10,1\n"))),
     "submit_time"),
    ("tiresias-inf-duration", lambda t: _sim(t, "tiresias:" + str(_write(t / "t.csv", TIRESIAS_HEAD + "0,1,0,1,vgg,inf,1\n"))),
     "duration"),
    ("swf-nan", lambda t: _sim(t, "swf:" + str(_write(t / "t.swf", SWF_LINE.format(submit="nan", run=10)))), "submit"),
    ("swf-inf-run", lambda t: _sim(t, "swf:" + str(_write(t / "t.swf", SWF_LINE.format(submit=0, run="inf")))),
     "run_time"),
    ("trace-not-utf8", lambda t: _sim(t, "tiresias:" + str(_write(t / "t.csv", TIRESIAS_HEAD.encode() + b"\xff\n"))),
     "UTF-8"),
    ("trace-directory", lambda t: _sim(t, "tiresias:" + str(t)), "directory"),
    ("trace-fifo", lambda t: _sim(t, "swf:" + str(_fifo(t / "t.swf"))), "FIFO"),
    ("synthetic-jobs-zero", lambda t: _sim(t, "synthetic:jobs=0"), "jobs"),
    ("synthetic-load-nan", lambda t: _sim(t, "synthetic:load=nan"), "load"),
    ("synthetic-cluster-zero", lambda t: _sim(t, "synthetic:cluster_gpus=0"), "cluster_gpus"),
    ("sim-time-scale-inf", lambda t: _sim(t, "synthetic:jobs=5", "--time-scale", "inf"), "finite"),
    ("sim-out-is-file", lambda t: _sim(t, "synthetic:jobs=5")[:-4] + [
        "--out", str(_write(t / "o", "x")), "--no-progress", "--no-topology-report"], ""),
    ("sim-strict-misfit", lambda t: _sim(t, f"tiresias:{REPO / 'data/traces/tiresias_60_job.csv'}", "--gpus-per-host",
                                         "8", "--strict", "-t", "nvl72:racks=1"), "never fit"),
]


def _engine_cfg(t: Path, text: str, suffix: str = ".yaml") -> list[str]:
    return ["infer", "run", "--engine-config", str(_write(t / f"e{suffix}", text)), "--input", str(t / "in.jsonl"),
            "--output", str(t / "out")]


INFER_CASES = [
    ("engine-alias-bomb", lambda t: _engine_cfg(t, ALIAS_BOMB), "alias"),
    ("engine-deep-json", lambda t: _engine_cfg(t, DEEP_JSON, ".json"), "deep"),
    ("engine-not-utf8", lambda t: _engine_cfg(t, "engine: \xff", ".yaml") if False else
     ["infer", "run", "--engine-config", str(_write(t / "e.yaml", b"engine: \xff\n")), "--input", "x",
      "--output", str(t / "out")], "UTF-8"),
    ("status-garbage", lambda t: ["infer", "status", str((t / "o").mkdir() or _write(t / "o" / "run.json", "{nope").parent)],
     "JSON"),
    ("status-deep", lambda t: ["infer", "status", str((t / "o").mkdir() or _write(t / "o" / "run.json", DEEP_JSON).parent)],
     "deep"),
    ("merge-list-json", lambda t: ["infer", "merge", str((t / "o").mkdir() or _write(t / "o" / "run.json", "[1]").parent)],
     "run file"),
]

AGENT_CASES = [
    ("agent-status-garbage", lambda t: ["agent", "status", "--state-dir",
                                        str((t / "a").mkdir() or _write(t / "a" / "status.json", "{x").parent)], "JSON"),
    ("agent-status-fifo", lambda t: ["agent", "status", "--state-dir",
                                     str((t / "a").mkdir() or _fifo(t / "a" / "status.json").parent)], "FIFO"),
    ("agent-status-file", lambda t: ["agent", "status", "--state-dir", str(_write(t / "a", "x"))], "directory"),
    ("agent-rest-bad-port", lambda t: ["agent", "run", "--topology", "leaf-spine:hosts=4", "--backend", "rest",
                                       "--rest-url", "http://127.0.0.1:99999", "--state-dir", str(t / "s"),
                                       "--cycles", "1"], "port"),
]

CASES = TOPOLOGY_CASES + PLACE_CASES + SIM_CASES + INFER_CASES + AGENT_CASES


@pytest.mark.parametrize(("setup", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_corpus_case(setup, fragment, tmp_path, capsys):
    argv = setup(tmp_path)
    _, err = run_cli(argv, capsys, cwd=tmp_path, allowed_new=("out", "s"))
    assert fragment.lower() in err.lower(), err


# -- checkpoints -------------------------------------------------------------------------------------
def _save(root: Path, step: int = 1) -> Path:
    from fabric_hpc.checkpoint import save

    save(root, {"w": np.arange(64, dtype=np.float32).reshape(8, 8), "b": np.ones(3, np.float32)}, step=step)
    return root / f"step-{step:010d}"


def _chunk(step: Path) -> Path:
    return next((step / "w").glob("c.*"))


def _manifest_edit(step: Path, edit) -> None:
    doc = json.loads((step / "zarr.json").read_text())
    edit(doc["attributes"]["fabric_checkpoint"])
    (step / "zarr.json").write_text(json.dumps(doc))


def _symlink_out(step: Path, tmp: Path) -> None:
    chunk = _chunk(step)
    outside = _write(tmp / "secret.bin", chunk.read_bytes())  # same bytes: the manifest still matches
    chunk.unlink()
    chunk.symlink_to(outside)


def _dir_symlink_out(step: Path, tmp: Path) -> None:
    import shutil
    shutil.copytree(step / "w", tmp / "outside-w")
    shutil.rmtree(step / "w")
    (step / "w").symlink_to(tmp / "outside-w")


def _huge_tensor(step: Path, tmp: Path) -> None:
    def edit(m):
        n = 1 << 40  # float32: a 4 TiB tensor in one chunk
        m["tensors"]["w"].update(shape=[n], chunk_shape=[n], chunks=[{"index": [0], "nbytes": 4 * n, "crc32c": 0}])
    _manifest_edit(step, edit)


CKPT_DAMAGE = [
    ("chunk-fifo", lambda s, t: (_chunk(s).unlink(), _fifo(_chunk_path(s))), "FIFO"),
    ("chunk-symlink-out", _symlink_out, "symlink"),
    ("tensor-dir-symlink-out", _dir_symlink_out, "symlink"),
    ("manifest-4tib", _huge_tensor, "missing"),
    ("manifest-deep", lambda s, t: _write(s / "zarr.json", DEEP_JSON), "manifest"),
    ("manifest-fifo", lambda s, t: ((s / "zarr.json").unlink(), _fifo(s / "zarr.json")), ""),
]


def _chunk_path(step: Path) -> Path:
    return step / "w" / "c.0.0"


@pytest.mark.parametrize(("damage", "fragment"), [c[1:] for c in CKPT_DAMAGE], ids=[c[0] for c in CKPT_DAMAGE])
@pytest.mark.parametrize("command", ["verify", "restore", "export"])
def test_checkpoint_damage(damage, fragment, command, tmp_path, capsys):
    root = tmp_path / "ck"
    step = _save(root)
    damage(step, tmp_path)
    argv = {"verify": ["ckpt", "verify", str(root)],
            "restore": ["ckpt", "restore", str(root), "--to-world-size", "2", "--out", str(tmp_path / "out")],
            "export": ["ckpt", "export", str(root), "--h5", str(tmp_path / "out.h5")]}[command]
    code, err = run_cli(argv, capsys, cwd=tmp_path, allowed_new=("out", "ck"))
    assert code == 3
    if command == "verify":
        assert fragment.lower() in err.lower(), err


def test_restore_never_reads_outside(tmp_path):
    """A chunk symlinked to an outside file whose bytes match the manifest is refused, not restored."""
    from fabric_hpc.checkpoint import CheckpointCorruptError, open_checkpoint, verify

    step = _save(tmp_path / "ck")
    _symlink_out(step, tmp_path)
    assert not verify(tmp_path / "ck").ok
    with pytest.raises(CheckpointCorruptError, match="symlink"):
        open_checkpoint(tmp_path / "ck").read("w")


def test_latest_outside_root_is_refused_not_followed(tmp_path):
    """A ``latest`` naming a step symlinked out of the root is damage: refused, never read, and not
    replaced silently by an older step (restore and verify agree; a probe found them differ)."""
    from fabric_hpc.checkpoint import CheckpointCorruptError, resolve

    _save(tmp_path / "ck", 1)
    other = _save(tmp_path / "other", 5)
    (tmp_path / "ck" / "step-0000000005").symlink_to(other)
    (tmp_path / "ck" / "latest").write_text("step-0000000005\n")
    with pytest.raises(CheckpointCorruptError, match="symlink .*not falling back silently"):
        resolve(tmp_path / "ck")
    assert resolve(tmp_path / "ck", 1).step == 1  # an explicit older step is still there


def test_latest_fifo_does_not_block_and_is_refused(tmp_path):
    from fabric_hpc.checkpoint import CheckpointCorruptError, resolve

    _save(tmp_path / "ck", 2)
    (tmp_path / "ck" / "latest").unlink()
    os.mkfifo(tmp_path / "ck" / "latest")
    with pytest.raises(CheckpointCorruptError, match="latest: not a regular file"):
        resolve(tmp_path / "ck")
    assert resolve(tmp_path / "ck", 2).step == 2


def test_ckpt_list_shows_damaged_step_and_the_rest(tmp_path, capsys):
    from fabric_hpc.cli.main import main

    root = tmp_path / "ck"
    for s in (1, 2, 3):
        _save(root, s)
    _write(root / "step-0000000002" / "zarr.json", "{broken")
    assert main(["ckpt", "list", str(root), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert [bool(r.get("damaged")) for r in rows] == [False, True, False]
    assert main(["ckpt", "list", str(root)]) == 0
    assert "DAMAGED" in capsys.readouterr().out


def test_corrupt_error_is_a_checkpoint_error():
    from fabric_hpc.checkpoint import CheckpointCorruptError, CheckpointError

    assert issubclass(CheckpointCorruptError, CheckpointError)


@pytest.mark.parametrize("what", ["not-hdf5", "directory", "fifo"])
def test_ckpt_import_refuses_non_hdf5(what, tmp_path, capsys):
    path = tmp_path / "in.h5"
    {"not-hdf5": lambda: _write(path, "hello, not HDF5"), "directory": lambda: path.mkdir(),
     "fifo": lambda: _fifo(path)}[what]()
    code, _ = run_cli(["ckpt", "import", "--h5", str(path), str(tmp_path / "ck")], capsys, cwd=tmp_path)
    assert code == 3


@pytest.mark.parametrize("target", ["missing-parent", "directory"])
def test_ckpt_export_bad_target(target, tmp_path, capsys):
    _save(tmp_path / "ck")
    h5 = {"missing-parent": tmp_path / "nope" / "x.h5", "directory": tmp_path}[target]
    code, err = run_cli(["ckpt", "export", str(tmp_path / "ck"), "--h5", str(h5)], capsys, cwd=tmp_path,
                        allowed_new=("ck",))
    assert code == 3 and "wrote" not in err


@pytest.mark.parametrize("target", ["file", "missing"])
def test_ckpt_list_bad_root(target, tmp_path, capsys):
    root = _write(tmp_path / "f", "x") if target == "file" else tmp_path / "missing"
    code, _ = run_cli(["ckpt", "list", str(root)], capsys, cwd=tmp_path)
    assert code == 3


@pytest.mark.parametrize("what", ["not-utf8", "directory", "fifo", "huge-field"])
def test_topology_import_bad_file(what, tmp_path, capsys):
    path = tmp_path / "n.csv"
    {"not-utf8": lambda: _write(path, b"sn,cpu_milli,memory_mib,gpu,model\n\xff,1,1,1,x\n"),
     "directory": lambda: path.mkdir(), "fifo": lambda: _fifo(path),
     "huge-field": lambda: _write(path, "sn,cpu_milli,memory_mib,gpu,model\n\"" + "x" * 200_000 + "\",1,1,1,x\n")}[what]()
    run_cli(["topology", "import", str(path)], capsys, cwd=tmp_path)


@pytest.mark.parametrize("url", ["unix:/run/slurmrestd.sock", "http://127.0.0.1:6820", "http://restd.example"])
def test_rest_url_accepts_good_addresses(url):
    from fabric_hpc.slurm.client import check_rest_url

    check_rest_url(url)


# https: slurmrestd serves no TLS itself (refused at the check, not at the first request)
@pytest.mark.parametrize("url", ["http://127.0.0.1:99999", "http://h:0", "unix:", "ftp://h", "http://:80", "h:x",
                                 "https://restd.example"])
def test_rest_url_refuses_bad_addresses(url):
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.slurm.client import check_rest_url

    with pytest.raises(ConfigError):
        check_rest_url(url)


def test_hostlist_budget_counts_before_expanding():
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.hostlist import count, expand

    assert count("a[1-1000000]b[1-1000000]") == 10**12
    with pytest.raises(ConfigError, match="names"):
        expand("a[1-1000000]b[1-1000000]")
    assert len(expand("n[1-5]", budget=5)) == 5
    with pytest.raises(ConfigError, match="more than 4"):
        expand("n[1-5]", budget=4)
