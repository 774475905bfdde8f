"""Fixes from a second ML-engineer probe of ``fabric ckpt`` (real files, real commands through main())."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fabric_hpc.checkpoint import save
from fabric_hpc.checkpoint.format import FORMAT_VERSION
from tests.checkpoint.builders import run_cli


def _root_with_a_newer_and_a_damaged_step(root: Path) -> None:
    for step in (1, 2, 3):
        save(root, {"w": np.full(4, step, np.float32)}, step=step)
    doc = json.loads((root / "step-0000000002" / "zarr.json").read_text())
    doc["attributes"]["fabric_checkpoint"]["format_version"] = FORMAT_VERSION + 1
    (root / "step-0000000002" / "zarr.json").write_text(json.dumps(doc))
    chunk = root / "step-0000000001" / "w" / "c.0"
    data = bytearray(chunk.read_bytes())
    data[0] ^= 1
    chunk.write_bytes(bytes(data))


def test_verify_all_reports_every_step_past_a_newer_format_one(tmp_path: Path, capsys) -> None:
    """Before: one step a newer fabric-hpc wrote stopped `verify --all` with that step's error
    alone: no report at all, so the damaged step 1 beside it went unnamed (list and prune go on)."""
    _root_with_a_newer_and_a_damaged_step(tmp_path / "ck")
    code, out, err = run_cli(capsys, "ckpt", "verify", str(tmp_path / "ck"), "--all", "--json")
    reports = {r["step"]: r for r in json.loads(out)}
    assert code == 3 and sorted(reports) == [1, 2, 3]
    assert not reports[1]["ok"] and "checksum" in " ".join(reports[1]["problems"])
    assert reports[2]["newer_format"] and not reports[2]["ok"] and "upgrade" not in reports[2]["problems"][0]
    assert "newer than this fabric-hpc" in reports[2]["problems"][0]
    assert reports[3]["ok"] and not reports[3]["newer_format"]
    assert "1 checkpoint(s) damaged" in err and "newer fabric-hpc" in err and "upgrade fabric-hpc" in err
    code, out, err = run_cli(capsys, "ckpt", "verify", str(tmp_path / "ck"), "--all")
    lines = out.splitlines()
    damaged = "step-0000000001  1 tensors, 1 chunks, 16 B"
    assert code == 3 and any(ln.startswith("DAMAGED") and ln.endswith(damaged) for ln in lines), out
    assert any(ln.startswith("NEWER FORMAT") and ln.endswith("step-0000000002") for ln in lines), out
    assert any(ln.startswith("OK") and "step-0000000003" in ln for ln in lines), out


def test_verify_all_with_only_a_newer_step_says_upgrade_not_damaged(tmp_path: Path, capsys) -> None:
    _root_with_a_newer_and_a_damaged_step(tmp_path / "ck")
    (tmp_path / "ck" / "step-0000000001").rename(tmp_path / "step-1-aside")
    code, out, err = run_cli(capsys, "ckpt", "verify", str(tmp_path / "ck"), "--all")
    assert code == 3 and "damaged" not in err and "1 checkpoint(s) written by a newer fabric-hpc" in err
    assert "fix: upgrade fabric-hpc" in err and "OK" in out


def test_list_names_leftovers_in_the_same_words_with_and_without_json(tmp_path: Path, capsys) -> None:
    """Before: `list --json` said "0 bytes, pid None, unknown writer" on stderr where the table's
    line (and the docs) say "writer unknown (another host, or an older name): kept"."""
    save(tmp_path / "ck", {"w": np.ones(2)}, step=1)
    (tmp_path / "ck" / ".tmp-step-0000000002-otherhost-12345-0badcafe").mkdir()
    (tmp_path / "ck" / ".trash-step-0000000000-0badcafe").mkdir()
    code, out, _ = run_cli(capsys, "ckpt", "list", str(tmp_path / "ck"))
    text = [ln for ln in out.splitlines() if ln.startswith("leftover ")]
    code_json, _, err = run_cli(capsys, "ckpt", "list", str(tmp_path / "ck"), "--json")
    assert code == code_json == 0 and len(text) == 2
    assert [ln for ln in err.splitlines() if ln.startswith("leftover ")] == text
    assert "pid 12345, writer unknown (another host, or an older name): kept" in text[0]
    assert "abandoned (its writer is gone)" in text[1]


def test_show_names_the_plain_value_leaves_its_json_holds(tmp_path: Path, capsys) -> None:
    """Before: `show --json` listed an optimizer's param_groups and a config under `values`, while
    the text said nothing of them (only "format v3")."""
    save(tmp_path / "ck", {"w": np.ones(2), "cfg": {"lr": 0.1, "name": "run"},
                           "optim": {"param_groups": [{"lr": 0.1}]}}, step=1)
    code, out, _ = run_cli(capsys, "ckpt", "show", str(tmp_path / "ck"), "--json")
    assert code == 0 and sorted(json.loads(out)["values"]["leaves"]) == ["cfg", "optim"]
    code, out, _ = run_cli(capsys, "ckpt", "show", str(tmp_path / "ck"))
    assert code == 0 and "values cfg, optim  (plain Python leaves" in out


def test_show_json_gives_the_plain_values_as_a_reader_expects(tmp_path: Path, capsys) -> None:
    """Before: `show --json` gave the values only in the manifest's internal encoding (`{"$d": [[k, v]]}`,
    `{"$t": [...]}`, `{"$f": "nan"}`), which no user expects; `plain_values` now gives them plainly."""
    save(tmp_path / "ck", {"w": np.ones(2), "cfg": {"lr": 0.1, "betas": (0.9, 0.95), 3: None,
                                                     "best": float("inf"), "tags": ["a"]}}, step=1)
    code, out, _ = run_cli(capsys, "ckpt", "show", str(tmp_path / "ck"), "--json")
    doc = json.loads(out)
    assert code == 0 and "$d" in doc["values"]["leaves"]["cfg"]  # the exact encoding stays
    assert doc["plain_values"] == {"cfg": {"lr": 0.1, "betas": [0.9, 0.95], "3": None, "best": "Infinity",
                                           "tags": ["a"]}}


def test_the_fix_of_an_export_inside_a_step_names_a_file_export_accepts(tmp_path: Path, capsys) -> None:
    """Before: `export ck --h5 ck/step-N/a.h5` said "fix: … e.g. ck/step-N.h5", inside the root
    ck, which the next export refused in turn."""
    import re
    save(tmp_path / "ck", {"w": np.ones(2)}, step=1)
    inside = tmp_path / "ck" / "step-0000000001" / "w" / "a.h5"
    code, _, err = run_cli(capsys, "ckpt", "export", str(tmp_path / "ck"), "--h5", str(inside))
    hinted = re.search(r"e\.g\. (\S+\.h5)", err)
    assert code == 3 and hinted, err
    assert Path(hinted.group(1)) == tmp_path / "ck.h5"
    code, _, err = run_cli(capsys, "ckpt", "export", str(tmp_path / "ck"), "--h5", hinted.group(1))
    assert code == 0, err


@pytest.mark.parametrize("command", ["export-hf", "export-dcp"])
@pytest.mark.parametrize("where", ["step", "group"])
def test_an_export_into_the_checkpoint_it_reads_is_refused(tmp_path: Path, capsys, command: str,
                                                           where: str) -> None:
    """Before: `export-hf ck ck/step-N/hf` (and export-dcp) wrote the export inside the committed step
    (which `prune` later deletes with it, and a killed export leaves its staging directory there),
    while `export --h5` and `infer prepare` refuse that."""
    pytest.importorskip("torch")
    save(tmp_path / "ck", {"model": {"w": np.ones((2, 2), np.float32)}}, step=1)
    step = tmp_path / "ck" / "step-0000000001"
    out = step / "hf" if where == "step" else step / "model" / "hf"
    before = sorted(p.name for p in step.rglob("*"))
    code, _, err = run_cli(capsys, "ckpt", command, str(tmp_path / "ck"), str(out))
    assert code == 3 and "inside the checkpoint" in err and str(step) in err, err
    assert sorted(p.name for p in step.rglob("*")) == before
    code, _, err = run_cli(capsys, "ckpt", command, str(tmp_path / "ck"), str(tmp_path / "out"))
    assert code == 0, err


@pytest.mark.parametrize("link", ["/dev/stdout", "/dev/stderr", "/proc/self/fd/1", "/dev/fd/2", None])
def test_export_to_a_standard_stream_is_refused_like_dash(tmp_path: Path, capsys, link: str | None) -> None:
    """Before: with stdout redirected to a file (an sbatch log), `export --h5 /dev/stdout --force`
    passed the regular-file check and the atomic rename replaced the link itself: as root, the
    node's /dev/stdout became an HDF5 file (seen in this probe). '-' was already refused. The test
    goes through a link of its own (a regression replaces that link, not the node's), or /dev/fd/1,
    which cannot take a new file."""
    save(tmp_path / "ck", {"w": np.ones(2)}, step=1)
    target = tmp_path / "log.h5"
    if link is not None:
        target.symlink_to(link)
    code, _, err = run_cli(capsys, "ckpt", "export", str(tmp_path / "ck"), "--h5",
                           str(target) if link else "/dev/fd/1", "--force")
    assert code == 3 and "this output is a file, not a standard stream" in err, err
    assert link is None or target.is_symlink()


@pytest.mark.parametrize("form", ["dotdot", "thread-self"])
def test_a_stream_reached_through_a_link_and_dotdot_or_a_threads_fd_is_refused(tmp_path: Path, capsys,
                                                                               form: str) -> None:
    """``shmlink/../stdout`` (``shmlink`` a link to /dev/shm) is /dev/stdout to the kernel, which follows the
    link before ``..``; the check shortened it as text to ``./stdout``. ``/proc/thread-self/fd/1`` was not
    known as a descriptor link. The output names a link of the test's own (a regression replaces it, never
    the machine's /dev/stdout)."""
    save(tmp_path / "ck", {"w": np.ones(2)}, step=1)
    target = tmp_path / "log.h5"
    if form == "dotdot":
        (tmp_path / "shmlink").symlink_to("/dev/shm")
        target.symlink_to(tmp_path / "shmlink" / ".." / "stdout")
    else:
        target.symlink_to("/proc/thread-self/fd/1")
    code, _, err = run_cli(capsys, "ckpt", "export", str(tmp_path / "ck"), "--h5", str(target), "--force")
    assert code == 3 and "this output is a file, not a standard stream" in err, err
    assert target.is_symlink()
