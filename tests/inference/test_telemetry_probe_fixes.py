"""Telemetry: textfile-collector copy, no _created series, NVML device mapping, degrading on
failure, a bounded metrics log, infer.finish and a bounded infer.spool_ignored."""

from __future__ import annotations

import os
import resource
import signal
import stat
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fabric_hpc.inference import telemetry
from fabric_hpc.inference.mpi import exit_code_of
from fabric_hpc.inference.pipeline import PipelineOptions
from fabric_hpc.inference.runner import FAULT_ENV, merge_job, run_job
from fabric_hpc.inference.simulated import VirtualClock
from fabric_hpc.inference.telemetry import MetricsWriter, nvml_target, prometheus_text, textfile_name
from tests.inference.builders import make_config, random_items, write_spool

SNAP = {"items_done": 7, "items_in": 9, "input_tokens": 100, "output_tokens": 50, "padding_waste": 0.1,
        "queue_depths": {"lanes": 2}, "budget": {"in_flight": 10}}


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event"] == name]


def test_textfile_copy_is_world_readable_and_removed_at_the_end(tmp_path: Path, events) -> None:
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    spool = write_spool(tmp_path, random_items(30))
    seen: list[tuple[list[str], int]] = []

    def progress(_snap: dict[str, Any]) -> None:
        files = sorted(p.name for p in textfiles.iterdir())
        seen.append((files, stat.S_IMODE((textfiles / files[0]).stat().st_mode) if files else 0))

    old = os.umask(0o077)
    try:
        run_job(make_config(tmp_path), str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()},
                progress=progress, metrics_interval=0.0, textfile_dir=textfiles)
    finally:
        os.umask(old)
    name = seen[0][0][0]
    assert name.startswith("fabric-infer-") and name.endswith("-rank-00000.prom")
    assert all(files == [name] and mode == 0o644 for files, mode in seen), seen
    assert list(textfiles.iterdir()) == []                      # the job's series end with it
    # the output directory stays private (results can be confidential)
    assert stat.S_IMODE((tmp_path / "out/metrics/rank-00000.prom").stat().st_mode) == 0o600


def test_textfile_name_is_per_job_and_rank(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    writer = MetricsWriter(tmp_path / "out", 3, textfile_dir=tmp_path)
    run = telemetry.run_label(tmp_path / "out")  # two runs of one job: tests/inference/test_textfile_runs.py
    assert writer.textfile == tmp_path / textfile_name(3, f"4242-{run}") == \
        tmp_path / f"fabric-infer-4242-{run}-rank-00003.prom"
    writer.write(SNAP)
    fams = {f.name: f for f in text_string_to_metric_families(writer.textfile.read_text())}
    assert fams["fabric_infer_items_completed"].samples[0].labels == {"rank": "3", "job_id": "4242", "run": run}
    writer.close()
    assert not writer.textfile.exists()


def test_no_created_series() -> None:
    text = prometheus_text(SNAP, rank=0).decode()
    assert "_created" not in text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert [s.name for s in fams["fabric_infer_items_completed"].samples] == ["fabric_infer_items_completed_total"]
    assert fams["fabric_infer_items_completed"].samples[0].value == 7


@pytest.mark.parametrize(("rank", "visible", "count", "want"), [
    (0, None, 4, 0), (5, None, 4, 1), (0, None, 0, None),         # no CUDA_VISIBLE_DEVICES: all GPUs
    (0, "3,1", 4, 3), (1, "3,1", 4, 1), (2, "3,1", 4, 3),          # reordered by the TaskProlog
    (0, "", 4, None), (0, "-1", 4, None), (0, "2,9,1", 4, 2), (1, "2,9,1", 4, 2),  # CUDA stops at a bad entry
    (1, "GPU-aaaa-bbbb,GPU-cccc", 2, "GPU-cccc"), (0, " MIG-1234 ", 8, "MIG-1234"),
])
def test_nvml_target_maps_the_visible_device(rank: int, visible: str | None, count: int,
                                             want: int | str | None) -> None:
    assert nvml_target(rank, visible, count) == want


class _BrokenNvml:
    """NVML's place when the driver fails a query (no GPU here to make it fail for real)."""
    index = 0

    def __init__(self) -> None:
        self.calls = 0

    def sample(self) -> dict[str, float | None]:
        self.calls += 1
        if self.calls <= 2:
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
        return {"gpu_util": 50.0, "gpu_sm_util": None}


def test_nvml_error_degrades_once_and_recovers(tmp_path: Path, events) -> None:
    writer = MetricsWriter(tmp_path / "out", 0)
    writer.nvml = _BrokenNvml()  # type: ignore[assignment]
    snaps = [writer.write(SNAP) for _ in range(3)]
    assert [s["gpu_util"] for s in snaps] == [None, None, 50.0]
    assert [e["part"] for e in named(events, "infer.telemetry_failed")] == ["nvml"]
    assert len(named(events, "infer.telemetry_recovered")) == 1
    writer.close()


def test_a_failing_prom_write_does_not_end_the_run(tmp_path: Path, events) -> None:
    import hashlib

    blocker = tmp_path / "not-a-dir"   # a textfile dir that is not a directory is refused at the start;
    tag = hashlib.sha256(os.fsencode((tmp_path / "out").resolve())).hexdigest()[:12]
    (blocker / textfile_name(0, tag)).mkdir(parents=True)  # a directory in the file's way: every write fails
    items = random_items(40)
    spool = write_spool(tmp_path, items)
    run_job(make_config(tmp_path), str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()},
            options=PipelineOptions(chunk_size=8), metrics_interval=0.0, textfile_dir=blocker)
    assert merge_job(tmp_path / "out")["items"] == 40           # results are complete
    failed = named(events, "infer.telemetry_failed")
    assert len(failed) == 1 and failed[0]["part"] == "prometheus file" and "not-a-dir" in failed[0]["error"]
    assert (tmp_path / "out/metrics/rank-00000.jsonl").stat().st_size > 0  # the other part went on


def test_a_failing_metrics_log_is_reopened_after_cutting_its_torn_tail(tmp_path: Path, events) -> None:
    writer = MetricsWriter(tmp_path / "out", 0)
    writer.write(SNAP)
    size = writer.jsonl.stat().st_size
    # a file size limit: the next line is written in part, then EFBIG (as a full disk's ENOSPC)
    old_signal = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 50, old_limit[1]))
    try:
        writer.write(SNAP)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_signal)
    # the line was written in part, then EFBIG (as a full disk's ENOSPC): the writer cut it back at once
    assert writer.jsonl.stat().st_size == size
    assert [e["part"] for e in named(events, "infer.telemetry_failed")] == ["metrics log"]
    writer.write(SNAP)
    writer.close()
    from fabric_hpc.events import read_json_lines

    assert [e["items_done"] for e in read_json_lines(writer.jsonl)] == [7, 7]
    assert len(named(events, "infer.telemetry_recovered")) == 1


def test_metrics_log_is_rotated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert telemetry.METRICS_LOG_MAX_BYTES == 64 << 20
    monkeypatch.setattr(telemetry, "METRICS_LOG_MAX_BYTES", 3000)
    writer = MetricsWriter(tmp_path / "out", 0)
    for _ in range(40):
        writer.write(SNAP)
    writer.close()
    rotated = writer.jsonl.with_name(writer.jsonl.name + ".1")
    assert rotated.is_file()
    assert writer.jsonl.stat().st_size <= 3000 and rotated.stat().st_size <= 3000


def test_infer_finish_per_rank(tmp_path: Path, events) -> None:
    spool = write_spool(tmp_path, random_items(30))
    run_job(make_config(tmp_path), str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()})
    (finish,) = named(events, "infer.finish")
    assert finish["exit_code"] == 0 and finish["rank"] == 0 and finish["items_done"] == 30
    assert finish["seconds"] >= 0 and "error" not in finish
    assert events[-1]["event"] == "infer.finish"


def test_infer_finish_on_failure(tmp_path: Path, events, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULT_ENV, "0:5")
    textfiles = tmp_path / "textfile"
    textfiles.mkdir()
    spool = write_spool(tmp_path, random_items(60))
    with pytest.raises(RuntimeError, match="injected fault") as err:
        run_job(make_config(tmp_path), str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()},
                options=PipelineOptions(chunk_size=4), metrics_interval=0.0, textfile_dir=textfiles)
    (finish,) = named(events, "infer.finish")
    assert finish["exit_code"] == exit_code_of(err.value) != 0 and "injected fault" in finish["error"]
    assert list(textfiles.iterdir()) == []


def test_spool_ignored_event_is_bounded(tmp_path: Path, events) -> None:
    spool = write_spool(tmp_path, random_items(5))
    for i in range(300):
        (spool / f"skipped-{i:04d}.JSONL").write_text("")
    result = run_job(make_config(tmp_path), str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()})
    (event,) = named(events, "infer.spool_ignored")
    assert event["count"] == 300 and len(event["entries"]) == 20
    assert len(result["ignored_inputs"]) == 300                 # the summary keeps every one


def test_status_reads_the_last_whole_line_of_a_metrics_log(tmp_path: Path) -> None:
    from fabric_hpc.inference.runner import job_status

    spool = write_spool(tmp_path, random_items(20))
    run_job(make_config(tmp_path), str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()})
    log = tmp_path / "out/metrics/rank-00000.jsonl"
    with open(log, "a") as f:
        f.write('{"torn')                                      # a write cut short
    assert job_status(tmp_path / "out")["ranks"]["rank-00000"]["items_done"] == 20


def test_a_symlinked_metrics_log_is_refused_not_followed(tmp_path: Path) -> None:
    from fabric_hpc.errors import ConfigError

    spool = write_spool(tmp_path, random_items(10))
    run_job(make_config(tmp_path), str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()})
    victim = tmp_path / "victim"
    victim.write_text("precious, no newline")
    log = tmp_path / "out/metrics/rank-00000.jsonl"
    log.unlink()
    log.symlink_to(victim)
    with pytest.raises(ConfigError, match="symbolic link") as err:  # the resume's torn-tail cut refuses
        run_job(make_config(tmp_path), str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()})
    assert err.value.exit_code == 3 and str(log) in err.value.hint
    assert victim.read_text() == "precious, no newline"
