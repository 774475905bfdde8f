"""Two inference runs on one node share its node-exporter textfile directory (SRE report): under one
SLURM_JOB_ID both wrote fabric-infer-<job>-rank-00000.prom, overwrote each other's, and the first to
end removed the other's; outside Slurm the two files held the same series (duplicate series of one
scrape target). Each run now has its own file and its own ``run`` label (and ``step`` under srun)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fabric_hpc.inference.telemetry import MetricsWriter, run_label

from .builders import make_config, random_items, write_spool
from .test_mpi import FABRIC, REPO

SNAP = {"items_done": 7, "items_in": 9, "input_tokens": 100, "output_tokens": 50,
        "queue_depths": {"lanes": 2}, "budget": {"in_flight": 10}}
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def series(path: Path) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {(s.name, tuple(sorted(s.labels.items())))
            for fam in text_string_to_metric_families(path.read_text()) for s in fam.samples}


@pytest.mark.parametrize("env", [{"SLURM_JOB_ID": "999"}, {"SLURM_JOB_ID": "999", "SLURM_STEP_ID": "2"}, {}])
def test_two_runs_write_distinct_files_and_series(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  env: dict[str, str]) -> None:
    for var in ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_STEPID"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    textfiles = tmp_path / "tf2"
    textfiles.mkdir()
    a = MetricsWriter(tmp_path / "out-a", 0, textfile_dir=textfiles)
    b = MetricsWriter(tmp_path / "out-b", 0, textfile_dir=textfiles)
    assert a.textfile != b.textfile and a.textfile.parent == b.textfile.parent == textfiles
    a.write(SNAP)
    b.write(SNAP)
    assert not series(a.textfile) & series(b.textfile)          # no series in both files of one target
    labels = dict(next(iter(series(a.textfile)))[1])
    assert labels["run"] == run_label(tmp_path / "out-a") and len(labels["run"]) == 12
    assert labels.get("job_id") == env.get("SLURM_JOB_ID") and labels.get("step") == env.get("SLURM_STEP_ID")
    if "SLURM_JOB_ID" in env:  # the job's files stay findable by an epilog: fabric-infer-<job>[.-]*
        assert a.textfile.name.startswith(f"fabric-infer-{env['SLURM_JOB_ID']}")
    b.close()                                                   # one run ends: the other's file stays
    assert a.textfile.is_file() and not b.textfile.exists()
    a.close()
    assert list(textfiles.iterdir()) == []


def test_run_label_is_the_output_directory_however_spelled(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "out")
    assert run_label(tmp_path / "out") == run_label(tmp_path / "link") == run_label(f"{tmp_path}/out/")
    assert run_label(tmp_path / "out") != run_label(tmp_path / "other")


def _wait_for(predicate, what: str, proc: subprocess.Popen, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what}: never happened (run A rc={proc.poll()}, {proc.stderr.read()[-2000:]})")
        time.sleep(0.05)


def test_two_concurrent_cli_runs_in_one_job_keep_their_own_files(tmp_path: Path) -> None:
    """Run A (stdin input, held open, then stopped with SIGSTOP so it cannot rewrite its file) and
    run B (a spool) under one SLURM_JOB_ID with one --textfile-dir: B neither overwrote nor removed
    A's file."""
    cfg, textfiles = make_config(tmp_path), tmp_path / "tf2"
    textfiles.mkdir()
    env = {**ENV, "SLURM_JOB_ID": "999"}
    env.pop("SLURM_STEP_ID", None)
    common = ["infer", "run", "--engine-config", str(cfg), "--no-progress", "--textfile-dir", str(textfiles)]
    a = subprocess.Popen([str(FABRIC), *common, "--input", "-", "--output", str(tmp_path / "out-a")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env)
    try:
        a.stdin.write("".join(json.dumps(it) + "\n" for it in random_items(3, max_new=4, prefix="a")))
        a.stdin.flush()
        # the first snapshot (the phase alone) has no samples: wait for one with series
        _wait_for(lambda: any(p.suffix == ".prom" and series(p) for p in textfiles.iterdir()),
                  "run A's textfile with series", a)
        os.kill(a.pid, signal.SIGSTOP)
        (a_file,) = textfiles.iterdir()
        try:
            a_series = series(a_file)
            spool = write_spool(tmp_path, random_items(20, max_new=4, prefix="b"), files=1)
            b = subprocess.run([str(FABRIC), *common, "--input", str(spool), "--output",
                                str(tmp_path / "out-b")], capture_output=True, text=True, env=env,
                               timeout=120, check=False)
            assert b.returncode == 0, b.stderr[-2000:]
            assert sorted(textfiles.iterdir()) == [a_file]      # B removed its own file, not A's
            assert series(a_file) == a_series                   # ... and never wrote A's
            assert {dict(labels)["run"] for _, labels in a_series} == {run_label(tmp_path / "out-a")}
        finally:
            os.kill(a.pid, signal.SIGCONT)
        a.stdin.close()
        assert a.wait(timeout=120) == 0, a.stderr.read()[-2000:]
        assert list(textfiles.iterdir()) == []
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()


def test_the_job_script_removes_every_file_of_its_job_after_a_failed_run(tmp_path: Path) -> None:
    """After a failed srun jobscripts/infer_batch.sbatch removes the job's files by the new names
    (JOB-RUN, JOB.STEP-RUN) and keeps other jobs' (770 is not 77)."""
    from .test_infer_batch_textfile import _run

    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    run = run_label(tmp_path / "out")
    kept = [f"fabric-infer-770-{run}-rank-00000.prom", f"fabric-infer-78-{run}-rank-00000.prom", "node.prom"]
    for name in (f"fabric-infer-77-{run}-rank-00000.prom", f"fabric-infer-77.3-{run}-rank-00001.prom", *kept):
        (textfiles / name).write_text("")
    rc, _log = _run(tmp_path, 137, textfiles)
    assert rc == 137 and sorted(p.name for p in textfiles.iterdir()) == sorted(kept)
