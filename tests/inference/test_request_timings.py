"""Per-request timings in the output records, and the run's phase in `fabric infer status`.

Before: a result line held only ``id``, ``tokens`` and ``finish_reason`` (no way to analyse latency
per request), and ``status`` said only ``running: yes/no`` (not whether the run was reading its
input, draining, finished but unmerged, merging, or had stopped)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fabric_hpc.cli.main import cli
from fabric_hpc.errors import ConfigError
from fabric_hpc.events import read_json_lines
from fabric_hpc.inference import CostModel, PipelineOptions, VirtualClock, job_status, merge_job, run_job
from fabric_hpc.inference.intake import WorkItem, item_digest
from fabric_hpc.inference.runner import FAULT_ENV, _merge_lock

from .builders import FAST, make_config, random_items, read_results, reference_tokens, write_spool
from .test_mpi import finish, job, launch  # noqa: F401 - job: the module's mpiexec fixture

TIMES = ("arrival_time", "first_scheduled_time", "first_token_time", "finished_time")


def _chunk_records(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted((out / "chunks").glob("*.jsonl"))
            for line in p.read_text().splitlines() if line]


def test_every_result_carries_monotone_timings_and_token_counts(tmp_path: Path) -> None:
    items = random_items(120, seed=11)
    spool = write_spool(tmp_path, items)
    before = time.time()
    run_job(make_config(tmp_path), str(spool), tmp_path / "out", options=PipelineOptions(chunk_size=16))
    after = time.time()
    merge_job(tmp_path / "out")
    results = read_results(tmp_path / "out")
    by_id = {i["id"]: i for i in items}
    assert [r["id"] for r in results] == [i["id"] for i in items]
    for rec in results:
        m, item = rec["metrics"], by_id[rec["id"]]
        assert set(rec) == {"id", "tokens", "finish_reason", "metrics"}  # additive: the old keys kept
        stamps = [m[k] for k in TIMES]
        assert before <= stamps[0] <= stamps[1] <= stamps[2] <= stamps[3] <= after, (rec["id"], m)
        assert m["num_prompt_tokens"] == len(item["prompt"])
        assert m["num_output_tokens"] == len(rec["tokens"]) == item["max_new_tokens"]
        assert m["rank"] == 0 and m["attempt"] == 1
        assert m["time_in_queue"] == pytest.approx(m["first_scheduled_time"] - m["arrival_time"], abs=2e-6)
        assert m["time_to_first_token"] == pytest.approx(m["first_token_time"] - m["arrival_time"], abs=2e-6)
        assert m["e2e_latency"] == pytest.approx(m["finished_time"] - m["arrival_time"], abs=2e-6)
        # the simulated engine sleeps at least base_s a step, and an item makes one token a step
        decode = m["finished_time"] - m["first_token_time"]
        assert decode >= (item["max_new_tokens"] - 1) * FAST.base_s - 1e-5, (rec["id"], decode)


def test_rerun_reproduces_tokens_and_merge_stays_exactly_once(tmp_path: Path) -> None:
    items = random_items(160, seed=12)
    spool = write_spool(tmp_path, items[:100], files=1)
    cfg = make_config(tmp_path)
    opts = PipelineOptions(chunk_size=16)
    fresh, resumed = tmp_path / "fresh", tmp_path / "resumed"
    run_job(cfg, str(spool), resumed, options=opts, engine_options={"clock": VirtualClock()})
    (spool / "part-001.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items[100:]))
    res = run_job(cfg, str(spool), resumed, options=opts, engine_options={"clock": VirtualClock()})
    assert res["resumed"] == 100 and res["items_done"] == 60
    run_job(cfg, str(spool), fresh, options=opts, engine_options={"clock": VirtualClock()})
    for out in (fresh, resumed):
        assert merge_job(out)["items"] == 160
    a, b = read_results(fresh), read_results(resumed)
    assert [r["id"] for r in a] == [r["id"] for r in b] == [i["id"] for i in items]  # each once
    assert {r["id"]: r["tokens"] for r in a} == {r["id"]: r["tokens"] for r in b} == reference_tokens(items)
    assert [r["metrics"]["attempt"] for r in b] == [1] * 100 + [2] * 60  # timings of the attempt that ran it
    assert [r["metrics"]["arrival_time"] for r in a] != [r["metrics"]["arrival_time"] for r in b]
    # the journal's digests are the items' content, not the records: timings never enter them
    digests = {}
    for out in (fresh, resumed):
        recs = read_json_lines(out / "journal" / "rank-00000.jsonl")
        digests[out] = {i: d for r in recs for i, d in zip(r["ids"], r["digests"])}
    want = {i["id"]: item_digest(WorkItem(i["id"], i["prompt"], i["max_new_tokens"])) for i in items}
    assert digests[fresh] == digests[resumed] == want


def test_status_phase_after_a_run_a_merge_and_a_failure(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    spool = write_spool(tmp_path, random_items(60, seed=13))
    cfg, out = make_config(tmp_path), tmp_path / "out"
    run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()})
    st = job_status(out)
    assert (st["phase"], st["items_read"], st["in_flight"], st["done"]) == ("finished", 60, 0, 60)
    first = read_json_lines(out / "metrics" / "rank-00000.jsonl")[0]
    assert first["phase"] == "reading_input" and first["world_size"] == 1  # before the pipeline
    lock = _merge_lock(out)
    lock.acquire()
    try:
        assert job_status(out)["phase"] == "merging"
        with pytest.raises(ConfigError, match="fabric infer merge.*is merging"):
            # a run would remove results.jsonl under the merge
            run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()})
        with pytest.raises(ConfigError, match="is merging"):
            merge_job(out)
    finally:
        lock.release()
    merge_job(out)
    r = CliRunner().invoke(cli, ["infer", "status", str(out), "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["phase"] == "done"
    plain = CliRunner().invoke(cli, ["infer", "status", str(out)])
    assert plain.exit_code == 0 and f"{out}: done, engine" in plain.output
    assert "60 read, 0 in flight" in plain.output
    # a failed attempt: its rank never reported finished
    more = random_items(40, 14, prefix="m")
    (spool / "more.jsonl").write_text("".join(json.dumps(i) + "\n" for i in more))
    monkeypatch.setenv(FAULT_ENV, "0:5")
    with pytest.raises(RuntimeError, match="injected fault"):
        run_job(cfg, str(spool), out, engine_options={"clock": VirtualClock()},
                options=PipelineOptions(chunk_size=4))
    st = job_status(out)
    assert st["phase"] == "stopped" and st["latest_attempt"] == 2 and not st["merged"]
    assert st["ranks"]["rank-00000"]["phase"] in ("running", "draining")


def test_status_phase_while_running(tmp_path: Path) -> None:
    """Polled from another thread while a run with a slow engine goes: running/draining, in that
    order, with the lock held; the counts add up; finished afterwards."""
    slow = CostModel(base_s=4e-3, prefill_s_per_token=0.0, decode_s_per_seq=0.0, ctx_s_per_token=0.0)
    spool = write_spool(tmp_path, random_items(150, seed=15, max_new=24), files=1)
    cfg, out = make_config(tmp_path, cost=slow), tmp_path / "out"
    errors: list[BaseException] = []

    def go() -> None:
        try:
            run_job(cfg, str(spool), out, options=PipelineOptions(chunk_size=4), metrics_interval=0.02)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    job = threading.Thread(target=go)
    job.start()
    seen = []
    while job.is_alive():
        if (out / "run.json").is_file():
            st = job_status(out)
            if st["running"]:
                seen.append(st["phase"])
                assert st["in_flight"] == st["items_read"] - sum(
                    r.get("items_done") or 0 for r in st["ranks"].values())
        time.sleep(0.01)
    job.join()
    assert not errors, errors
    order = ("starting", "reading_input", "running", "draining")
    assert seen and set(seen) <= set(order), seen
    assert [order.index(p) for p in seen] == sorted(order.index(p) for p in seen), seen
    assert {"running", "draining"} & set(seen), seen
    assert job_status(out)["phase"] == "finished"


@pytest.mark.mpi
@pytest.mark.slow
def test_under_mpi_each_record_names_the_rank_that_served_it(job: dict, tmp_path: Path) -> None:
    out = tmp_path / "two"
    code, _, err = finish(launch(job, out, 2))
    assert code == 0, err
    for chunk in (out / "chunks").glob("*.jsonl"):
        rank = int(chunk.name.split("-r")[1][:5])
        assert {json.loads(line)["metrics"]["rank"] for line in chunk.read_text().splitlines()} == {rank}
    st = job_status(out)
    assert st["phase"] == "finished" and st["items_read"] == len(job["items"]) and st["in_flight"] == 0
    assert {r["phase"] for r in st["ranks"].values()} == {"finished"} and len(st["ranks"]) == 2
    for rank in (0, 1):
        first = read_json_lines(out / "metrics" / f"rank-{rank:05d}.jsonl")[0]
        assert (first["phase"], first["world_size"]) == ("reading_input", 2)
    merge_job(out)
    results = read_results(out)
    assert {r["id"]: r["tokens"] for r in results} == job["ref"]
    assert {r["metrics"]["rank"] for r in results} == {0, 1}
    assert all(r["metrics"]["first_scheduled_time"] <= r["metrics"]["first_token_time"]
               <= r["metrics"]["finished_time"] for r in results)
