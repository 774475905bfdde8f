"""The job's totals over its ranks (telemetry.job_totals): padding waste over every rank's token
slots, the engine's busy share over every rank's wall time, and the end-to-end time beside the
pipeline's. Before: plain means over ranks (2 items on 3 ranks: busy 0.36, 0.24, 0.0 averaged)."""

from __future__ import annotations

import pytest

from fabric_hpc.inference.telemetry import job_totals


def _rank(*, prompt: int, padded: int, out: int, busy: float, wall: float, elapsed: float | None = None) -> dict:
    snap = {"items_in": 1, "items_done": 1, "input_tokens": prompt, "output_tokens": out, "engine_steps": 1,
            "padded_prefill_tokens": padded, "engine_busy_fraction": busy, "wall_s": wall,
            "padding_waste": (padded - prompt) / (padded + out) if padded + out else 0.0}
    return snap if elapsed is None else {**snap, "elapsed_s": elapsed}


def test_padding_is_weighted_by_token_slots_and_an_idle_rank_weighs_nothing() -> None:
    ranks = [_rank(prompt=900, padded=1000, out=100, busy=0.5, wall=10.0),
             _rank(prompt=10, padded=20, out=0, busy=0.5, wall=10.0),
             _rank(prompt=0, padded=0, out=0, busy=0.0, wall=10.0)]
    job = job_totals(ranks)
    assert job["padding_waste"] == pytest.approx((1020 - 910) / (1020 + 100))
    assert job["prefill_padding_waste"] == pytest.approx((1020 - 910) / 1020)
    # the plain mean over ranks would be (0.0909 + 0.5 + 0) / 3 = 0.197: the small rank dominated
    assert job["padding_waste"] < 0.1


def test_busy_share_is_over_the_jobs_gpu_time() -> None:
    ranks = [_rank(prompt=1, padded=1, out=1, busy=0.36, wall=4.0),
             _rank(prompt=1, padded=1, out=1, busy=0.24, wall=2.0),
             _rank(prompt=0, padded=0, out=0, busy=0.0, wall=2.0)]
    job = job_totals(ranks)
    assert job["engine_busy_fraction"] == pytest.approx((0.36 * 4 + 0.24 * 2) / (3 * 4))  # 3 GPUs x 4 s
    assert job["wall_s"] == 4.0


def test_elapsed_includes_start_up_and_rates_stay_over_the_pipeline() -> None:
    ranks = [_rank(prompt=5, padded=5, out=100, busy=1.0, wall=2.0, elapsed=9.0),
             _rank(prompt=5, padded=5, out=100, busy=1.0, wall=1.0, elapsed=7.5)]
    job = job_totals(ranks)
    assert job["elapsed_s"] == 9.0 and job["output_tokens_per_s"] == pytest.approx(200 / 2.0)


def test_a_run_end_to_end_reports_its_elapsed_time(tmp_path) -> None:
    """A real run (simulated engine): elapsed covers the pipeline and the start before it."""
    from fabric_hpc.inference.runner import run_job
    from tests.inference.builders import make_config, random_items, write_spool

    cfg = make_config(tmp_path)
    write_spool(tmp_path, random_items(40, max_new=4), files=1)
    res = run_job(cfg, str(tmp_path / "spool"), tmp_path / "out")
    assert res["job"]["elapsed_s"] >= res["job"]["wall_s"] > 0
    assert res["elapsed_s"] >= res["wall_s"] and 0 <= res["job"]["padding_waste"] < 1


def test_cannot_resume_names_every_changed_field(tmp_path) -> None:
    """Before: the first five changed fields, and nothing said more had changed."""
    import json

    from fabric_hpc.errors import ConfigError
    from fabric_hpc.inference.runner import _check_same_run

    before = {f"f{k}": k for k in range(8)}
    (tmp_path / "run.json").write_text(json.dumps({"input": "x", "engine_config": "e", "limits": before}))
    with pytest.raises(ConfigError) as exc:
        _check_same_run(tmp_path / "run.json", {"input": "x", "engine_config": "e",
                                                "limits": {k: v + 1 for k, v in before.items()}})
    assert "f4: 4 then, 5 now" in exc.value.message and "and 3 more (f5, f6, f7)" in exc.value.message


def test_the_python_api_refuses_a_folder_no_run_wrote(tmp_path) -> None:
    """run_job as the CLI: a non-empty output directory without run.json is someone else's folder;
    before, run_job wrote run.json into it (the CLI alone checked)."""
    from fabric_hpc.errors import ConfigError
    from fabric_hpc.inference.runner import run_job
    from tests.inference.builders import make_config, random_items, write_spool

    cfg = make_config(tmp_path)
    write_spool(tmp_path, random_items(4, max_new=2), files=1)
    mine = tmp_path / "mine"
    (mine / "chunks").mkdir(parents=True)
    (mine / "chunks" / "notes.jsonl").write_text("important\n")
    with pytest.raises(ConfigError, match="holds no fabric run"):
        run_job(cfg, str(tmp_path / "spool"), mine)
    assert sorted(p.name for p in mine.rglob("*")) == ["chunks", "notes.jsonl"]
