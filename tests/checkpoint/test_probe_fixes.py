"""Fixes from a new-user probe of ``fabric ckpt`` (real files and real commands through main())."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import Shard, save
from fabric_hpc.checkpoint.reshard import reshard
from tests.checkpoint.builders import run_cli

STEP = "step-0000000200"


@pytest.fixture
def ck3(tmp_path: Path) -> Path:
    """Step 200 saved by 3 ranks (a reshard of a one-rank save), layout {"tp": 3}."""
    w = np.arange(60, dtype=np.float32).reshape(12, 5)
    state = {"model": {"w": Shard.of(w, 0, 0, 1)}, "b": np.ones(3)}
    save(tmp_path / "src", state, step=200, layout={"tp": 3})
    reshard(tmp_path / "src", tmp_path / "ck3", 3)
    return tmp_path / "ck3"


def _tree(root: Path) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.mark.parametrize("size", ["2", "3"])
@pytest.mark.parametrize("how", ["same", "inside", "holds", "symlink"])
def test_restore_out_overlapping_the_source_is_refused_up_front(ck3: Path, tmp_path: Path, capsys, how: str,
                                                               size: str) -> None:
    """--out == the source root was refused with advice to delete the only copy (or a layout blame)."""
    os.symlink(ck3, tmp_path / "link")
    src, out = {"same": (ck3, ck3), "inside": (ck3, ck3 / "sub"), "holds": (ck3 / STEP, ck3),
                "symlink": (tmp_path / "link", ck3)}[how]
    before = _tree(ck3)
    code, _, err = run_cli(capsys, "ckpt", "restore", str(src), "--to-world-size", size, "--out", str(out))
    assert code == 3, err
    assert "the checkpoint being read" in err and "fix: give another directory as --out" in err
    assert "delete" not in err and "differs" not in err
    assert _tree(ck3) == before


def test_restore_refuses_what_verify_calls_damaged(ck3: Path, tmp_path: Path, capsys) -> None:
    """An array's zarr.json deleted: verify said DAMAGED (3), restore went ahead (0)."""
    from fabric_hpc.checkpoint import CheckpointCorruptError, restore
    (ck3 / STEP / "model" / "w" / "zarr.json").unlink()
    code, _, _ = run_cli(capsys, "ckpt", "verify", str(ck3))
    assert code == 3
    code, _, err = run_cli(capsys, "ckpt", "restore", str(ck3), "--to-world-size", "2",
                           "--out", str(tmp_path / "o"))
    assert code == 3 and "model/w/zarr.json: missing" in err and not (tmp_path / "o").exists()
    with pytest.raises(CheckpointCorruptError, match="model/w/zarr.json: missing"):
        restore(ck3)
    os.mkfifo(ck3 / STEP / "b" / "stray")  # a FIFO no manifest names: verify lists it, so restore refuses
    with pytest.raises(CheckpointCorruptError, match="b/stray: is a FIFO"):
        restore(ck3, names=["b"])


def test_a_damaged_latest_is_refused_by_restore_and_reported_once_by_verify(ck3: Path, tmp_path: Path,
                                                                             capsys) -> None:
    (ck3 / "latest").write_text("../../etc\n")
    code, out, _ = run_cli(capsys, "ckpt", "verify", str(ck3), "--json")
    reports = json.loads(out)
    assert code == 3 and len(reports) == 1 and "latest: not a regular file" in reports[0]["problems"][0]
    code, _, err = run_cli(capsys, "ckpt", "restore", str(ck3), "--to-world-size", "2",
                           "--out", str(tmp_path / "o"))
    assert code == 3 and "not falling back silently" in err and "fix: give --step explicitly" in err
    code, _, err = run_cli(capsys, "ckpt", "restore", str(ck3), "--step", "200", "--to-world-size", "2",
                           "--out", str(tmp_path / "o"))
    assert code == 0, err  # an explicit step still restores


def test_a_symlinked_step_is_refused_the_same_way_by_list_verify_and_restore(ck3: Path, tmp_path: Path,
                                                                           capsys) -> None:
    """latest -> a symlinked step-999: list starred it, restore used 200, restore --step 999 said 'no
    checkpoint for step 999'."""
    import shutil
    shutil.copytree(ck3 / STEP, tmp_path / "elsewhere")
    doc = json.loads((tmp_path / "elsewhere" / "zarr.json").read_text())
    doc["attributes"]["fabric_checkpoint"]["step"] = 999
    (tmp_path / "elsewhere" / "zarr.json").write_text(json.dumps(doc))
    os.symlink(tmp_path / "elsewhere", ck3 / "step-0000000999")
    (ck3 / "latest").write_text("step-0000000999\n")
    code, out, _ = run_cli(capsys, "ckpt", "list", str(ck3), "--json")
    row = json.loads(out)[-1]
    assert code == 0 and row["step"] == 999 and row["damaged"] and "a symlink (not followed)" in row["error"]
    code, out, _ = run_cli(capsys, "ckpt", "verify", str(ck3), "--json")
    assert code == 3 and "step-0000000999: a symlink (not followed)" in json.loads(out)[0]["problems"][0]
    for extra in ([], ["--step", "999"]):
        code, _, err = run_cli(capsys, "ckpt", "restore", str(ck3), *extra, "--to-world-size", "2",
                               "--out", str(tmp_path / "o"))
        assert code == 3 and "step-0000000999" in err and "is a symlink (not followed)" in err, err
        assert "fix: put the directory itself at" in err and not (tmp_path / "o").exists()


def _edit_manifest(step_dir: Path, **fields: object) -> None:
    doc = json.loads((step_dir / "zarr.json").read_text())
    doc["attributes"]["fabric_checkpoint"].update(fields)
    (step_dir / "zarr.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("format_version", 0, "format_version: 0 is not a format version (versions start at 1"),
    ("world_size", 0, "world_size: world size 0: a checkpoint is saved by at least one rank"),
    ("step", -1, "step: step -1 is outside 0..9999999999"),
    ("nbytes", -5, "nbytes: size -5 is negative"),
])
def test_impossible_manifest_values_are_damage(ck3: Path, tmp_path: Path, capsys, field: str, value: int,
                                               needle: str) -> None:
    """format_version 0 or world_size 0 got OK from verify, and restore went ahead."""
    _edit_manifest(ck3 / STEP, **{field: value})
    code, out, _ = run_cli(capsys, "ckpt", "verify", str(ck3), "--step", "200", "--json")
    problems = json.loads(out)[0]["problems"]
    assert code == 3 and any(needle in p for p in problems), problems
    assert "Value error" not in problems[0]
    code, _, err = run_cli(capsys, "ckpt", "restore", str(ck3), "--step", "200", "--to-world-size", "2",
                           "--out", str(tmp_path / "o"))
    assert code == 3 and needle in err and "fix: run `fabric ckpt verify` and restore an older step" in err


def test_a_crc_that_is_not_32_bits_is_damage(ck3: Path) -> None:
    from fabric_hpc.checkpoint import verify
    doc = json.loads((ck3 / STEP / "zarr.json").read_text())
    doc["attributes"]["fabric_checkpoint"]["tensors"]["b"]["chunks"][0]["crc32c"] = -1
    (ck3 / STEP / "zarr.json").write_text(json.dumps(doc))
    assert any("crc32c -1 is not an unsigned 32-bit value" in p for p in verify(ck3).problems)


def test_a_newer_format_is_labelled_so_by_list_and_prune_and_never_pruned(tmp_path: Path, capsys) -> None:
    """list and prune called a newer-format checkpoint DAMAGED (verify said: upgrade)."""
    from fabric_hpc.checkpoint.format import FORMAT_VERSION
    for step in (1, 2, 3):
        save(tmp_path / "ck", {"b": np.full(3, step)}, step=step)
    _edit_manifest(tmp_path / "ck" / "step-0000000001", format_version=FORMAT_VERSION + 1)
    code, out, _ = run_cli(capsys, "ckpt", "list", str(tmp_path / "ck"), "--json")
    row = json.loads(out)[0]
    assert code == 0 and row["newer_format"] and "damaged" not in row and "upgrade fabric-hpc" in row["error"]
    code, out, _ = run_cli(capsys, "ckpt", "list", str(tmp_path / "ck"))
    assert code == 0 and "NEWER FORMAT" in out and "DAMAGED" not in out
    code, out, _ = run_cli(capsys, "ckpt", "prune", str(tmp_path / "ck"), "--keep-last", "1", "--json")
    data = json.loads(out)
    assert code == 0 and data["newer_format"] == [1] and data["damaged"] == [] and data["removed"] == [2]
    assert (tmp_path / "ck" / "step-0000000001").is_dir()
    code, out, _ = run_cli(capsys, "ckpt", "prune", str(tmp_path / "ck"), "--keep-last", "1")
    assert code == 0 and "NEWER FORMAT" in out and "DAMAGED" not in out


def _unshare() -> list[str]:
    """A command prefix that runs in a private mount namespace (to mount a tiny or read-only
    tmpfs), or a skip where this machine allows none."""
    import subprocess
    for cmd in (["unshare", "-m"], ["unshare", "-Urm"]):
        try:
            if subprocess.run([*cmd, "true"], capture_output=True, timeout=30).returncode == 0:
                return cmd
        except (OSError, subprocess.TimeoutExpired):
            break
    pytest.skip("no private mount namespace here (unshare -m): cannot mount a small tmpfs")


def _fabric_on_tmpfs(mnt: Path, opts: str, *args: str) -> tuple[int, str, list[str]]:
    """``fabric ARGS`` with a fresh tmpfs (mount options ``opts``) on ``mnt``: (exit code, stderr,
    what was left on the tmpfs)."""
    import shlex
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[2]
    script = (f"mount -t tmpfs -o {opts} tmpfs {shlex.quote(str(mnt))} && "
              f"{shlex.quote(sys.executable)} -m fabric_hpc.cli {' '.join(map(shlex.quote, args))}; rc=$?; "
              f"find {shlex.quote(str(mnt))} -mindepth 1 >&2; exit $rc")
    proc = subprocess.run([*_unshare(), "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(repo), "COLUMNS": "200"})
    lines = proc.stderr.splitlines()
    left = [ln for ln in lines if ln.startswith(str(mnt))]
    return proc.returncode, "\n".join(ln for ln in lines if ln not in left), left


@pytest.fixture
def big(tmp_path: Path) -> Path:
    save(tmp_path / "big", {"w": np.ones((256, 1024), np.float32)}, step=1)  # 1 MiB
    return tmp_path / "big"


def test_export_h5_on_a_full_disk_names_the_file_and_the_cause_in_one_line(big: Path, tmp_path: Path) -> None:
    """ENOSPC during export --h5 said 'cannot write a file (the system did not say which)', then
    h5py's dump naming the temporary file."""
    (tmp_path / "mnt").mkdir()
    code, err, left = _fabric_on_tmpfs(tmp_path / "mnt", "size=256k", "ckpt", "export", str(big),
                                       "--h5", str(tmp_path / "mnt" / "big.h5"))
    assert code == 5 and left == []
    assert err.splitlines() == [
        f"error: cannot write file '{tmp_path}/mnt/big.h5': the disk is full (No space left on device)",
        "  fix: free space on that filesystem (or quota), then run the command again"], err


def test_restore_on_a_full_disk_leaves_no_new_out_directory(big: Path, tmp_path: Path) -> None:
    """After ENOSPC the new --out directory stayed, holding only .lock."""
    (tmp_path / "mnt").mkdir()
    code, err, left = _fabric_on_tmpfs(tmp_path / "mnt", "size=256k", "ckpt", "restore", str(big),
                                       "--to-world-size", "2", "--out", str(tmp_path / "mnt" / "out"))
    assert code == 5 and "No space left on device" in err and "fix: free disk space" in err
    assert left == []


def test_restore_and_export_onto_a_read_only_mount_give_a_fix(big: Path, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    code, err, _ = _fabric_on_tmpfs(tmp_path / "mnt", "ro", "ckpt", "restore", str(big),
                                    "--to-world-size", "2", "--out", str(tmp_path / "mnt" / "out"))
    assert code == 5 and "Read-only file system" in err and "fix: that filesystem is mounted read-only" in err
    code, err, _ = _fabric_on_tmpfs(tmp_path / "mnt", "ro", "ckpt", "export", str(big),
                                    "--h5", str(tmp_path / "mnt" / "x.h5"))
    assert code == 5 and f"'{tmp_path}/mnt/x.h5': Read-only file system" in err and ".tmp" not in err
    assert "fix: that filesystem is mounted read-only" in err


def test_export_h5_into_proc_names_the_target_and_the_real_cause(big: Path, capsys) -> None:
    """It said "path '/proc/.x.h5.<host>-<pid>-<hex>.tmp': does not exist / fix: check the path"."""
    code, _, err = run_cli(capsys, "ckpt", "export", str(big), "--h5", "/proc/x.h5")
    assert code == 5 and "'/proc/x.h5': /proc does not accept new files" in err, err
    assert ".tmp" not in err and "does not exist" not in err and "fix: give a path on a filesystem" in err
    assert not [n for n in os.listdir("/proc") if n.startswith(".x.h5")]


def test_prune_keeps_a_step_an_engine_pinned_and_names_what_it_removed(tmp_path: Path, capsys) -> None:
    """prune --keep-last 1 deleted the step `fabric infer prepare` served; the engine then failed
    with 'no checkpoint for step 12'."""
    from fabric_hpc.checkpoint.pins import pin_step, unpin
    root = tmp_path / "ck"
    for step in (12, 24, 36, 48):
        save(root, {"b": np.full(3, step)}, step=step)
    pin = pin_step(root, 12, key="engine-a", by="fabric infer prepare", target="/engines/a")
    assert pin == root / ".pins" / "engine-a.json" and json.loads(pin.read_text())["step"] == 12
    (root / ".pins" / "junk.json").write_text("{not json")
    code, out, _ = run_cli(capsys, "ckpt", "prune", str(root), "--keep-last", "2", "--json")
    data = json.loads(out)
    assert code == 0 and data["removed"] == [24]
    assert data["pinned"] == {"12": "fabric infer prepare /engines/a"}
    assert data["removed_paths"] == [str(root / "step-0000000024")] and 12 in data["kept"]
    assert len(data["pin_problems"]) == 1 and ".pins/junk.json: not a pin" in data["pin_problems"][0]
    assert (root / "step-0000000012").is_dir() and not (root / "step-0000000024").exists()
    assert unpin(root, "engine-a") and not unpin(root, "engine-a")
    code, out, _ = run_cli(capsys, "ckpt", "prune", str(root), "--keep-last", "1")
    assert code == 0 and f"removed step 12 ({root / 'step-0000000012'}), step 36" in out, out
    assert "junk.json" in out


def test_reshard_layout_keeps_the_content_layout_and_records_the_source_world_size(ck3: Path,
                                                                                    tmp_path: Path) -> None:
    """Documents what {'tp': 3, 'resharded_from': 3} means after a reshard to 1,000,000 ranks
    (docs/checkpoint.md): tp is the content's layout (unchanged), world_size and split are the
    chunking. This passed before the fix too: the fix is the documentation."""
    from fabric_hpc.checkpoint import open_checkpoint
    res = reshard(ck3, tmp_path / "r", 7)
    m = open_checkpoint(res.path).manifest
    assert m.layout == {"tp": 3, "resharded_from": 3} and m.world_size == 7
    assert m.tensors["model/w"].split.mesh == [7]
    again = open_checkpoint(reshard(res.path.parent, tmp_path / "r2", 2).path).manifest
    assert again.layout == {"tp": 3, "resharded_from": 7} and again.world_size == 2


# --- a PyTorch engineer's probe: optimizer state, async errors, error texts -------------------------------

def _train(model, opt, sched, steps: int, seed: int) -> None:
    import torch
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        model(torch.randn(5, 4, generator=g)).pow(2).sum().backward()
        opt.step()
        sched.step()


def _model_opt_sched():
    import torch
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    return model, opt, torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)


def test_adam_scheduler_and_scaler_state_round_trip_exactly(tmp_path: Path) -> None:
    """save({"model": ..., "optim": opt.state_dict()}) was refused; the workaround restored the
    state keys as '0', '1', which torch accepts silently, resetting Adam's moments."""
    torch = pytest.importorskip("torch")
    from fabric_hpc.checkpoint import restore
    model, opt, sched = _model_opt_sched()
    _train(model, opt, sched, 3, seed=1)
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
              "_growth_tracker": 7, "odd": [float("inf"), float("-inf"), None, (1, "a")]}
    save(tmp_path / "ck", {"model": model.state_dict(), "optim": opt.state_dict(),
                           "sched": sched.state_dict(), "scaler": scaler}, step=3)
    back = restore(tmp_path / "ck", as_torch=True)
    assert list(back["optim"]["state"]) == [0, 1]
    assert back["optim"]["param_groups"] == opt.state_dict()["param_groups"]
    assert back["optim"]["param_groups"][0]["betas"] == (0.8, 0.99) and back["sched"] == sched.state_dict()
    assert back["scaler"] == scaler and type(back["scaler"]["odd"][3]) is tuple
    model2, opt2, sched2 = _model_opt_sched()
    model2.load_state_dict(back["model"])
    opt2.load_state_dict(back["optim"])
    sched2.load_state_dict(back["sched"])
    _train(model, opt, sched, 1, seed=2)
    _train(model2, opt2, sched2, 1, seed=2)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), model2.parameters()))
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_non_tensor_leaves_keep_nan_and_nesting_and_survive_reshard_and_async(tmp_path: Path) -> None:
    import math
    from fabric_hpc.checkpoint import AsyncSaver, restore
    state = {"w": Shard.of(np.arange(8.0), 0, 0, 1),
             "meta": {"nan": float("nan"), "e": {}, "k": {3: [1, 2.0]}},
             "state": {7: {"m": np.ones(2)}}}
    save(tmp_path / "a", state, step=1)
    reshard(tmp_path / "a", tmp_path / "b", 2)
    with AsyncSaver(tmp_path / "c") as saver:
        saver.save(state, step=1)
        state["meta"]["k"][3].append("edited after the save")  # the staged copy is a snapshot
    for root in ("a", "b", "c"):
        back = restore(tmp_path / root)
        assert math.isnan(back["meta"]["nan"]) and back["meta"]["e"] == {}
        assert back["meta"]["k"] == {3: [1, 2.0]}
        assert list(back["state"]) == [7] and back["state"][7]["m"].tolist() == [1.0, 1.0]
    assert restore(tmp_path / "a", names=["meta/k"]) == {"meta": {"k": {3: [1, 2.0]}}}


def test_a_version_2_reader_refuses_values_as_a_newer_format(tmp_path: Path) -> None:
    """The leaves sit beside the manifest: a version-2 reader (strict model) parses the manifest,
    sees format version 3 and says NEWER FORMAT (upgrade) instead of calling it damaged."""
    from fabric_hpc.checkpoint.format import ATTR, PROVENANCE_ATTR, Manifest
    save(tmp_path / "ck", {"w": np.ones(2), "lr": 0.1}, step=1)
    save(tmp_path / "ck", {"w": np.ones(2)}, step=2)
    docs = [json.loads((tmp_path / "ck" / f"step-000000000{s}" / "zarr.json").read_text()) for s in (1, 2)]
    old_view = Manifest.model_validate(docs[0]["attributes"][ATTR])  # what a v2 reader validates
    assert old_view.format_version == 3 and old_view.values is None
    assert docs[1]["attributes"][ATTR]["format_version"] == 1
    assert set(docs[1]["attributes"]) == {ATTR, PROVENANCE_ATTR}  # no values attribute


def test_damaged_values_are_reported_by_verify(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint import verify
    save(tmp_path / "ck", {"w": np.ones(2), "lr": 0.1}, step=1)
    path = tmp_path / "ck" / "step-0000000001" / "zarr.json"
    doc = json.loads(path.read_text())
    doc["attributes"]["fabric_checkpoint_values"]["leaves"]["lr"] = {"$x": 1}
    path.write_text(json.dumps(doc))
    assert any("not an encoded value" in p for p in verify(tmp_path / "ck").problems)
    del doc["attributes"]["fabric_checkpoint_values"]
    path.write_text(json.dumps(doc))
    assert any("format version 3 without the fabric_checkpoint_values attribute" in p
               for p in verify(tmp_path / "ck").problems)


def test_unsupported_leaves_and_keys_name_the_key_path(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint.errors import CheckpointError
    from fabric_hpc.checkpoint.values import MAX_VALUES_BYTES
    cases = [({"optim": {"groups": [{"fn": object()}]}}, "state['optim']['groups'][0]['fn']: it is a object"),
             ({"a": [np.ones(2)]}, "state['a'][0]: it is a tensor inside a list"),
             ({"a": [{(1, 2): 3}]}, "the key (1, 2) is a tuple; dict keys must be str or int"),
             ({"a": {(1, 2): np.ones(1)}}, "state key (1, 2) at state['a'] is a tuple"),
             ({"a": "x" * (MAX_VALUES_BYTES + 1)}, "more than the 16 MiB the manifest holds")]
    for state, needle in cases:
        with pytest.raises(CheckpointError) as err:
            save(tmp_path / "ck", state, step=1)
        assert needle in str(err.value) and err.value.hint, str(err.value)
    assert not (tmp_path / "ck" / "step-0000000001").exists()


_ASYNC_EXIT = """
import sys, numpy as np
from fabric_hpc.checkpoint import AsyncSaver
saver = AsyncSaver(sys.argv[1], exit_timeout_s=float(sys.argv[2]))
saver.save({"w": np.ones(1 << 18)}, step=6)
if sys.argv[3] == "dup":
    saver.save({"w": np.ones(1)}, step=6)
print("leaving", flush=True)
"""


def test_async_close_raises_the_failed_save_naming_the_step(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint import AsyncSaver
    from fabric_hpc.checkpoint.errors import CheckpointError
    save(tmp_path / "ck", {"w": np.ones(3)}, step=5)
    with pytest.raises(CheckpointError, match="async save of step 5 failed: checkpoint for step 5 already"):
        with AsyncSaver(tmp_path / "ck") as saver:
            saver.save({"w": np.ones(3)}, step=5)
    with AsyncSaver(tmp_path / "ck") as saver:  # an error already raised by wait() is not raised again
        with pytest.raises(CheckpointError):
            saver.save({"w": np.ones(3)}, step=5).wait()


@pytest.mark.parametrize("how", ["finish", "dup"])
def test_an_unclosed_async_saver_finishes_its_saves_at_exit(tmp_path: Path, how: str) -> None:
    import subprocess
    import sys
    import fabric_hpc
    env = {**os.environ, "PYTHONPATH": str(Path(fabric_hpc.__file__).parents[1])}
    proc = subprocess.run([sys.executable, "-c", _ASYNC_EXIT, str(tmp_path / "ck"), "60", how],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "leaving" in proc.stdout, proc.stderr
    assert (tmp_path / "ck" / "step-0000000006" / "zarr.json").is_file()
    if how == "dup":
        assert "async save of step 6 failed: checkpoint for step 6 already exists" in proc.stderr
    else:
        assert proc.stderr == ""


def test_a_save_that_cannot_finish_at_exit_is_reported_not_waited_for_forever(tmp_path: Path) -> None:
    """The root's lock is held by this process, so the unclosed saver's save blocks: the exit
    hook waits exit_timeout_s, then warns that step 6 is lost."""
    import fcntl
    import subprocess
    import sys
    import fabric_hpc
    (tmp_path / "ck").mkdir()
    env = {**os.environ, "PYTHONPATH": str(Path(fabric_hpc.__file__).parents[1])}
    with open(tmp_path / "ck" / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run([sys.executable, "-c", _ASYNC_EXIT, str(tmp_path / "ck"), "0.5", "finish"],
                              capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0 and "leaving" in proc.stdout, proc.stderr
    assert "saves of steps [6] did not finish within 0.5s of interpreter exit and are lost" in proc.stderr
    assert not (tmp_path / "ck" / "step-0000000006").exists()


def test_restore_into_parameters_that_require_grad(tmp_path: Path) -> None:
    """restore(into={'model': {'weight': lin.weight}}) raised torch's "Can't call numpy() on Tensor
    that requires grad"; a cast into them raised torch's in-place error on a leaf."""
    torch = pytest.importorskip("torch")
    from fabric_hpc.checkpoint import restore
    src = torch.nn.Linear(3, 2)
    save(tmp_path / "ck", {"model": src.state_dict(), "w64": src.weight.detach().double()}, step=1)
    lin = torch.nn.Linear(3, 2)
    got = restore(tmp_path / "ck", into={"model": {"weight": lin.weight, "bias": lin.bias}})
    assert got["model"]["weight"] is lin.weight and lin.weight.requires_grad
    assert torch.equal(lin.weight, src.weight) and torch.equal(lin.bias, src.bias)
    with torch.no_grad():
        lin.weight.zero_()
    restore(tmp_path / "ck", into={"w64": lin.weight})  # float64 stored, cast into a float32 parameter
    assert torch.equal(lin.weight, src.weight)


def test_metadata_and_layout_keys_must_be_strings_and_say_so(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint.errors import CheckpointError
    for kw in ({"metadata": {3: "a"}}, {"layout": {("tp",): 2}}):
        with pytest.raises(CheckpointError) as err:
            save(tmp_path / "ck", {"w": np.ones(1)}, step=1, **kw)
        what = next(iter(kw))
        assert f"{what} key" in err.value.message and "must be strings" in err.value.message
        assert err.value.hint.startswith(f"use {what}={{'")


def test_an_array_like_that_is_not_numpy_or_torch_is_refused_by_key_path(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint.errors import CheckpointError

    class Fake:
        dtype = np.dtype("float32")
    with pytest.raises(CheckpointError) as err:
        save(tmp_path / "ck", {"model": {"w": Fake()}}, step=1)
    assert err.value.message == "cannot save 'model/w': it is a Fake" and "np.asarray" in err.value.hint


_DUP_PART = """
import sys, numpy as np
from mpi4py import MPI
from fabric_hpc.checkpoint import Shard, save
from fabric_hpc.errors import FabricError
comm = MPI.COMM_WORLD
try:
    save(sys.argv[1], {"w": Shard(np.ones((2, 3)), (4, 3), dim=0, part=0, parts=2)}, step=1, comm=comm)
except FabricError as exc:
    print(f"rank {comm.Get_rank()}: {exc.message} / {exc.hint}")
"""


def test_two_ranks_passing_the_same_part_are_told_so(tmp_path: Path) -> None:
    """Under mpiexec two ranks with part=0 got "File exists ... retry"."""
    import subprocess
    import sys
    from tests.real import require_real
    root = Path(__file__).resolve().parents[2]
    mpiexec = root / ".venv" / "bin" / "mpiexec"
    require_real("mpi", mpiexec.exists(), f"{mpiexec} missing (pip install '.[mpi]')")
    proc = subprocess.run([str(mpiexec), "-n", "2", sys.executable, "-c", _DUP_PART, str(tmp_path / "ck")],
                          cwd=root, env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("w: two ranks passed the same Shard part") == 2, proc.stdout  # on both ranks
    assert "retry" not in proc.stdout and "part=comm.Get_rank()" in proc.stdout


def test_torch_and_numpy_dtypes_are_accepted_where_a_dtype_is(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from fabric_hpc.checkpoint import open_checkpoint, restore
    save(tmp_path / "ck", {"w": np.arange(4, dtype=np.float32)}, step=1)
    assert restore(tmp_path / "ck", dtype=torch.bfloat16)["w"].dtype == torch.bfloat16
    assert restore(tmp_path / "ck", dtype=np.float64)["w"].dtype == np.float64
    assert restore(tmp_path / "ck", dtype=np.dtype("float16"), as_torch=True)["w"].dtype == torch.float16
    assert open_checkpoint(tmp_path / "ck").read("w", dtype=torch.float64).dtype == np.float64


def test_a_full_disk_names_the_checkpoint_not_its_temporary_directory(big: Path, tmp_path: Path) -> None:
    (tmp_path / "mnt").mkdir()
    code, err, _ = _fabric_on_tmpfs(tmp_path / "mnt", "size=256k", "ckpt", "restore", str(big),
                                    "--to-world-size", "2", "--out", str(tmp_path / "mnt" / "out"))
    assert code == 5 and "No space left on device" in err, err
    assert ".tmp-" not in err and f"checkpoint step 1 in {tmp_path}/mnt/out (file w/c." in err, err


def test_error_texts_give_python_fixes(tmp_path: Path) -> None:
    from fabric_hpc.checkpoint import restore
    from fabric_hpc.checkpoint.errors import CheckpointError, CheckpointNotFoundError
    torch = pytest.importorskip("torch")
    save(tmp_path / "ck", {"w": np.ones((2, 2))}, step=1)
    with pytest.raises(CheckpointError) as err:
        restore(tmp_path / "ck", rank=1)
    assert "world_size=comm.Get_size()" in err.value.hint
    with pytest.raises(CheckpointError) as err:
        restore(tmp_path / "ck", rank=5, world_size=2)
    assert "rank must be in 0..1" in err.value.hint
    with pytest.raises(CheckpointNotFoundError) as nf:
        restore(tmp_path / "ck" / "step-0000000001", step=2)
    assert "step=2 in Python" in nf.value.hint
    with pytest.raises(CheckpointError) as err:
        restore(tmp_path / "ck", into={"w": torch.empty(2, 2).t()})
    assert "contiguous" in err.value.message and "CPU tensor" not in err.value.hint
    with pytest.raises(CheckpointError) as err:
        save(tmp_path / "ck", {("a", "b"): np.ones(1)}, step=2)
    assert "is a tuple; keys must be str or int" in err.value.message and "'a/b'" in err.value.hint
