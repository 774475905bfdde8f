"""End-to-end single-rank runs: bounded stages, resume, exactly-once, telemetry, CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from fabric_hpc.cli.main import cli
from fabric_hpc.errors import ConfigError
from fabric_hpc.inference import (
    ChunkSink,
    Pipeline,
    PipelineOptions,
    SimulatedEngine,
    VirtualClock,
    job_status,
    merge_job,
    run_job,
)
from fabric_hpc.inference.telemetry import NvmlSampler

from .builders import (
    SMALL,
    make_config,
    random_items,
    read_results,
    reference_tokens,
    work_items,
    write_spool,
)


def test_run_merge_results_equal_reference(tmp_path: Path) -> None:
    items = random_items(300, seed=1)
    spool = write_spool(tmp_path, items, extra_lines=["oops"])
    cfg = make_config(tmp_path)
    res = run_job(cfg, str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()},
                  options=PipelineOptions(chunk_size=32))
    assert res["items_done"] == 300 and res["dead_letter"] == 1
    assert res["padding_waste"] < 0.1
    merge_job(tmp_path / "out")
    got = {r["id"]: r["tokens"] for r in read_results(tmp_path / "out")}
    assert got == reference_tokens(items)
    st = job_status(tmp_path / "out")
    assert st["done"] == 300 and st["dead_letter"] == 1 and st["merged"]
    # a later attempt adds work: the earlier merge no longer holds every result
    more = random_items(20, seed=2)
    for item in more:
        item["id"] = "late-" + str(item["id"])
    (spool / "late.jsonl").write_text("".join(json.dumps(i) + "\n" for i in more))
    run_job(cfg, str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()},
            options=PipelineOptions(chunk_size=32))
    assert job_status(tmp_path / "out")["merged"] is False
    merge_job(tmp_path / "out")
    assert job_status(tmp_path / "out")["merged"] is True


def test_rerun_skips_finished_and_partial_output_resumes(tmp_path: Path) -> None:
    items = random_items(200, seed=2)
    spool = write_spool(tmp_path, items[:120], files=1)
    cfg = make_config(tmp_path)
    opts = PipelineOptions(chunk_size=16)
    run_job(cfg, str(spool), tmp_path / "out", options=opts, engine_options={"clock": VirtualClock()})
    # more work arrives in the spool; the rerun does only the new items
    write_spool(tmp_path / "more", items[120:], files=1)
    (tmp_path / "more" / "spool" / "part-000.jsonl").rename(spool / "part-001.jsonl")
    res = run_job(cfg, str(spool), tmp_path / "out", options=opts,
                  engine_options={"clock": VirtualClock()})
    assert res["resumed"] == 120 and res["items_done"] == 80 and res["attempt"] == 2
    merge_job(tmp_path / "out")
    assert {r["id"] for r in read_results(tmp_path / "out")} == {it["id"] for it in items}


def test_resume_refuses_a_different_engine_config(tmp_path: Path) -> None:
    spool = write_spool(tmp_path, random_items(20))
    run_job(make_config(tmp_path), str(spool), tmp_path / "out",
            engine_options={"clock": VirtualClock()})
    from fabric_hpc.inference import EngineLimits

    other = make_config(tmp_path, EngineLimits(8, 1024, 128, 192, 2048), name="other")
    with pytest.raises(ConfigError, match="different engine_config"):
        run_job(other, str(spool), tmp_path / "out", engine_options={"clock": VirtualClock()})


def test_resume_refuses_other_weights_behind_the_same_engine_config(tmp_path: Path) -> None:
    """run.json recorded only the config fields: an engine directory re-prepared with other weights
    (same config, same limits) resumed the same output and mixed two models' results."""
    from fabric_hpc.inference.simulated import write_simulated_artefact

    from .builders import FAST

    spool = write_spool(tmp_path, random_items(20))
    cfg, out = make_config(tmp_path), tmp_path / "out"
    run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()})
    assert json.loads((out / "run.json").read_text())["weights"]["kind"] == "files"
    write_simulated_artefact(tmp_path / "engine", limits=SMALL, cost=FAST)  # rewritten, same bytes: resumes
    assert run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()})["resumed"] == 20
    write_simulated_artefact(tmp_path / "engine", limits=SMALL, cost=FAST, seed=1)  # other "weights"
    with pytest.raises(ConfigError, match=r"served engine files sha256 \w{12}; the engine now serves engine "
                                          r"files sha256 \w{12}: cannot resume") as info:
        run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()})
    assert "new --output" in info.value.hint and "--step" in info.value.hint
    assert len(list((out / "attempts").iterdir())) == 2  # the refused run opened no attempt
    doc = json.loads((out / "run.json").read_text())
    del doc["weights"]  # a run.json written before weights were recorded: resumes, unchecked
    (out / "run.json").write_text(json.dumps(doc))
    assert run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()})["resumed"] == 20


def test_a_second_run_on_a_busy_output_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    """While a run holds ``<output>/.run.lock`` another run (which would remove the first one's
    unjournalled chunks as orphans) and a merge are refused; status says it is running."""
    import fcntl
    import os

    items = random_items(40, seed=5)
    spool = write_spool(tmp_path, items)
    cfg, out = make_config(tmp_path), tmp_path / "out"
    run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()})
    assert not job_status(out)["running"]
    before = sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*") if p.name != ".run.lock")
    fd = os.open(out / ".run.lock", os.O_RDWR)  # another run holds the lock
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, b"4242\n", 0)
        with pytest.raises(ConfigError, match=r"\(pid 4242\) is writing to"):
            run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()})
        with pytest.raises(ConfigError, match="still writing"):
            merge_job(out)
        assert job_status(out)["running"]
    finally:
        os.close(fd)
    assert sorted((p.relative_to(out), p.stat().st_mtime_ns) for p in out.rglob("*") if p.name != ".run.lock") == before
    merge_job(out)
    assert {r["id"] for r in read_results(out)} == {it["id"] for it in items}


class _SlowSink(ChunkSink):
    def commit(self) -> list[str]:
        time.sleep(0.01)
        return super().commit()


def test_slow_sink_backpressure_keeps_every_stage_bounded(tmp_path: Path) -> None:
    """A producer far faster than the sink: every queue stays within its bound."""
    opts = PipelineOptions(chunk_size=8, admit_queue=4, done_queue=4, admit_batch=16)
    eng = SimulatedEngine(SMALL, clock=VirtualClock())
    sink = _SlowSink(tmp_path, rank=0, attempt=1, chunk_size=8)
    items = work_items([(5 + i % 100, 1 + i % 20) for i in range(2000)])
    min_cost = min(it.cost for it in items)
    pipe = Pipeline(eng, iter(items), sink, opts)
    peaks: dict[str, int] = {}

    def tick() -> None:
        snap = pipe.snapshot()
        for k, v in snap["queue_depths"].items():
            peaks[k] = max(peaks.get(k, 0), v)
        peaks["in_flight"] = max(peaks.get("in_flight", 0), snap["budget"]["in_flight"])
        peaks["ahead"] = max(peaks.get("ahead", 0), pipe.intake_count - pipe.acked)

    snap = pipe.run(tick=tick)
    assert snap["items_done"] == 2000
    assert peaks["admit_q"] <= opts.admit_queue and peaks["done_q"] <= opts.done_queue
    assert peaks["engine_active"] <= SMALL.max_batch_size and peaks["sink"] <= opts.chunk_size
    assert peaks["in_flight"] <= pipe.budget.high + SMALL.max_seq_len
    # items admitted but not journalled: lanes (token budget) + queues; never the whole input
    bound = (pipe.budget.high // min_cost + (opts.admit_queue + 1) * opts.admit_batch
             + opts.done_queue * SMALL.max_batch_size + opts.chunk_size)
    assert peaks["ahead"] <= bound < 2000


def test_stage_failure_stops_pipeline_and_flushes(tmp_path: Path) -> None:
    class Boom(SimulatedEngine):
        def step(self):  # type: ignore[no-untyped-def]
            if self.steps == 30:
                raise RuntimeError("device fell off the bus")
            return super().step()

    sink = ChunkSink(tmp_path, rank=0, attempt=1, chunk_size=1000)
    pipe = Pipeline(Boom(SMALL, clock=VirtualClock()), iter(work_items([(8, 3)] * 500)), sink)
    from fabric_hpc.errors import ExternalError

    with pytest.raises(ExternalError, match="device fell off the bus"):
        pipe.run()
    assert not pipe.alive()
    # what completed before the failure was committed and journalled on the way out
    from fabric_hpc.inference import committed_ids

    assert len(committed_ids(tmp_path)) == pipe.acked > 0


def test_metrics_json_lines_and_prometheus(tmp_path: Path) -> None:
    spool = write_spool(tmp_path, random_items(100))
    run_job(make_config(tmp_path), str(spool), tmp_path / "out",
            engine_options={"clock": VirtualClock()})
    metrics = (tmp_path / "out/metrics/rank-00000.jsonl").read_text().splitlines()
    lines = [json.loads(x) for x in metrics]
    last = lines[-1]
    assert last["items_done"] == 100 and 0 <= last["padding_waste"] < 1
    assert set(last["queue_depths"]) == {"admit_q", "lanes", "engine_active", "done_q", "sink"}
    prom = (tmp_path / "out/metrics/rank-00000.prom").read_text()
    fams = {f.name: f for f in text_string_to_metric_families(prom)}
    assert fams["fabric_infer_items_completed"].samples[0].value == 100
    stages = {s.labels["stage"] for s in fams["fabric_infer_queue_depth"].samples}
    assert stages >= {"lanes", "done_q"}
    if NvmlSampler().handle is None:       # no GPU here: NVML fields present and null
        assert last["gpu_util"] is None and "DCGM_FI_DEV_GPU_UTIL" not in fams


def test_cli_run_status_merge(tmp_path: Path) -> None:
    spool = write_spool(tmp_path, random_items(60, seed=5), extra_lines=['{"id": 1}'])
    cfg = make_config(tmp_path)
    out = tmp_path / "out"
    runner = CliRunner()
    r = runner.invoke(cli, ["infer", "run", "--engine-config", str(cfg), "--input", str(spool),
                            "--output", str(out), "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["items_done_all_ranks"] == 60
    r = runner.invoke(cli, ["infer", "status", str(out), "--json"])
    assert json.loads(r.output)["done"] == 60 and json.loads(r.output)["dead_letter"] == 1
    r = runner.invoke(cli, ["infer", "merge", str(out)])
    assert r.exit_code == 0 and "exactly once" in r.output


def test_cli_run_where_every_item_is_dead_lettered_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing ran (every item is malformed or too long for the engine): exit 3 naming the
    dead-letter file, not a success."""
    from fabric_hpc.cli.main import main

    spool = write_spool(tmp_path, [], extra_lines=['{"id": 1}', "oops"])
    assert main(["infer", "run", "--engine-config", str(make_config(tmp_path)), "--input", str(spool),
                 "--output", str(tmp_path / "out"), "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "every item of the input (2) was dead-lettered" in err and "dead-letter.jsonl" in err


def test_cli_bad_config_exit_code_3(tmp_path: Path) -> None:
    from fabric_hpc.cli.main import main

    cfg = make_config(tmp_path)
    data = json.loads(cfg.read_text())
    data["max_batch_size"] = 17
    cfg.write_text(json.dumps(data))
    spool = write_spool(tmp_path, random_items(5))
    code = main(["infer", "run", "--engine-config", str(cfg), "--input", str(spool),
                 "--output", str(tmp_path / "o")])
    assert code == 3
    assert main(["infer", "merge", str(tmp_path / "nothing")]) == 3


def test_stdin_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    items = random_items(30, seed=9)
    data = ("\n".join(json.dumps(i) for i in items) + "\nbad\n").encode()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    res = run_job(make_config(tmp_path), "-", tmp_path / "out",
                  engine_options={"clock": VirtualClock()})
    assert res["items_done"] == 30 and res["dead_letter"] == 1
    (tmp_path / "in.jsonl").write_bytes(data)
    assert merge_job(tmp_path / "out", str(tmp_path / "in.jsonl"))["items"] == 30
    with pytest.raises(ConfigError, match="stdin"):
        merge_job(tmp_path / "out")


def _modes(out: Path) -> dict[str, int]:
    import stat

    return {str(p.relative_to(out)): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]}


@pytest.mark.parametrize("umask", [0o022, 0o000, 0o277])
def test_outputs_are_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    import os

    spool = write_spool(tmp_path, random_items(40, seed=3), extra_lines=["bad"])
    out = tmp_path / "out"
    old = os.umask(umask)
    try:
        run_job(make_config(tmp_path), str(spool), out, options=PipelineOptions(chunk_size=8),
                engine_options={"clock": VirtualClock()})
        merge_job(out)
    finally:
        assert os.umask(old) == umask               # the job's umask is given back
    modes = _modes(out)
    for name in ("results.jsonl", "run.json", "spool-snapshot.json", "dead-letter.jsonl",
                 "journal/rank-00000.jsonl", "metrics/rank-00000.prom", "metrics/rank-00000.jsonl"):
        assert modes[name] == 0o600, (name, oct(modes[name]))
    for name in (".", "chunks", "journal", "metrics", "attempts"):
        assert modes[name] == 0o700, (name, oct(modes[name]))
    assert all(m in (0o600, 0o700) for m in modes.values()), {k: oct(v) for k, v in modes.items()}


def test_output_mode_umask_follows_the_jobs_umask(tmp_path: Path) -> None:
    import os

    spool = write_spool(tmp_path, random_items(10, seed=3))
    out = tmp_path / "out"
    old = os.umask(0o022)
    try:
        r = CliRunner().invoke(cli, ["infer", "run", "--engine-config", str(make_config(tmp_path)),
                                     "--input", str(spool), "--output", str(out), "--no-progress",
                                     "--output-mode", "umask"])
        assert r.exit_code == 0, r.output
        merge_job(out)
    finally:
        os.umask(old)
    modes = _modes(out)
    assert modes["results.jsonl"] == modes["run.json"] == 0o644
    assert modes["chunks"] == 0o755


def test_poisoned_items_never_stop_the_run(tmp_path: Path) -> None:
    items = random_items(50, seed=4)
    poison = ["[" * 100_000, '{"id": "p", "prompt": [' + "9" * 30 + '], "max_new_tokens": 1}',
              '{"id": "q", "prompt": [1], "max_new_tokens": ' + "9" * 5000 + "}"]
    spool = write_spool(tmp_path, items, extra_lines=poison)
    res = run_job(make_config(tmp_path), str(spool), tmp_path / "out",
                  engine_options={"clock": VirtualClock()})
    assert res["items_done"] == 50 and res["dead_letter"] == 3
    assert merge_job(tmp_path / "out")["items"] == 50
    # a rerun does not fail the same way either: nothing left to do
    res = run_job(make_config(tmp_path), str(spool), tmp_path / "out",
                  engine_options={"clock": VirtualClock()})
    assert res["items_done"] == 0 and res["resumed"] == 50 and res["dead_letter"] == 3


def test_sigterm_commits_the_finished_work_and_exits_143(tmp_path: Path) -> None:
    """Slurm ends a job at its time limit with SIGTERM: the CLI unwinds as for Ctrl-C (no
    traceback, locks released), says so and exits 143; a rerun resumes from the committed chunks
    (an open chunk is not committed: resume removes it) and merges exactly once."""
    import signal
    import subprocess
    import sys
    import time

    from tests.inference.builders import CostModel

    items = random_items(3000, seed=9, max_new=20)
    spool = write_spool(tmp_path, items)
    slow = CostModel(base_s=2e-3, prefill_s_per_token=1e-7, decode_s_per_seq=2e-6, ctx_s_per_token=0.0)
    cfg = make_config(tmp_path, cost=slow)
    out = tmp_path / "out"
    argv = [sys.executable, "-c", "import sys; from fabric_hpc.cli.main import main; sys.exit(main())",
            "infer", "run", "--engine-config", str(cfg), "--input", str(spool), "--output", str(out),
            "--chunk-size", "16", "--no-progress"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((out / "chunks").glob("*.jsonl")):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err and "Traceback" not in err, err[-2000:]
    runner = CliRunner()
    r = runner.invoke(cli, ["infer", "run", "--engine-config", str(cfg), "--input", str(spool),
                            "--output", str(out), "--json", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["resumed"] > 0
    assert runner.invoke(cli, ["infer", "merge", str(out)]).exit_code == 0
