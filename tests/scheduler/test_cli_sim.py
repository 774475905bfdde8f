"""``fabric sim run`` / ``compare`` end to end, and clean errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

from fabric_hpc.cli.main import main

TIRESIAS = str(Path(__file__).resolve().parents[2] / "data" / "traces" / "tiresias_60_job.csv")


def test_run_and_compare(tmp_path, capsys):
    for policy in ("slurm", "fabric"):
        code = main(["sim", "run", "--trace", f"tiresias:{TIRESIAS}", "--topology", "leaf-spine:hosts=8",
                     "--policy", policy, "--out", str(tmp_path / policy), "--no-progress", "--json"])
        assert code == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["policy"] == policy and summary["finished"] == 60
        assert (tmp_path / policy / "topology.html").exists()
    code = main(["sim", "compare", str(tmp_path / "slurm"), str(tmp_path / "fabric"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["columns"] == ["metric", "slurm", "fabric"] and out["warnings"] == []
    # numbers for machines: the summaries' own values, unformatted, one per run
    summaries = [json.loads((tmp_path / p / "results.json").read_text())["summary"] for p in ("slurm", "fabric")]
    assert out["runs"] == ["slurm", "fabric"]
    assert out["metrics"]["mean_jct_s"] == [s["mean_jct_s"] for s in summaries]
    assert out["metrics"]["finished"] == [60, 60]
    assert Path(out["report"]).read_text().count("<img") == 3
    # runs over different jobs are still shown side by side, with a warning saying so
    assert main(["sim", "run", "--trace", "synthetic:jobs=20", "--topology", "leaf-spine:hosts=8",
                 "--out", str(tmp_path / "other"), "--no-progress", "--json"]) == 0
    capsys.readouterr()
    assert main(["sim", "compare", str(tmp_path / "slurm"), str(tmp_path / "other")]) == 0
    assert "warning: the runs replayed different traces" in capsys.readouterr().out


def test_bad_input_exit_codes(tmp_path, capsys):
    assert main(["sim", "run", "--trace", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]) == 3
    assert "no trace file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["sim", "compare", str(tmp_path / "empty")]) == 3
    assert main(["sim", "run", "--trace", "synthetic:jobs=5", "--policy", "slurm", "--backfill", "none",
                 "--out", str(tmp_path / "o")]) == 3
    for flags in (["--no-preemption"], ["--preempt-benefit-ratio", "2"]):
        assert main(["sim", "run", "--trace", "synthetic:jobs=5", "--policy", "slurm", *flags,
                     "--out", str(tmp_path / "o")]) == 3
        assert f"{flags[0]} applies to --policy fabric only" in capsys.readouterr().err
    assert main(["sim", "run", "--trace", "synthetic:jobs=5", "--preempt-benefit-ratio", "-1",
                 "--out", str(tmp_path / "o")]) != 0
    assert "Traceback" not in capsys.readouterr().err


def test_preemption_settings_reach_the_policy(tmp_path, capsys):
    """A replay with spot and high gangs on a small fabric: fabric's default preempts; with
    --no-preemption nothing is preempted; a very high benefit ratio preempts no more than the default."""
    runs = {}
    for name, flags in (("default", []), ("off", ["--no-preemption"]), ("ratio", ["--preempt-benefit-ratio", "1000"])):
        code = main(["sim", "run", "--trace", "synthetic:jobs=300,load=1.4,seed=3,cluster_gpus=64",
                     "--topology", "leaf-spine:hosts=8", *flags, "--out", str(tmp_path / name),
                     "--no-progress", "--no-topology-report", "--json"])
        assert code == 0
        runs[name] = json.loads(capsys.readouterr().out)
    assert runs["default"]["preemptions"] > 0
    assert runs["off"]["preemptions"] == 0
    assert runs["ratio"]["preemptions"] < runs["default"]["preemptions"]
    config = json.loads((tmp_path / "ratio" / "results.json").read_text())["config"]
    assert config["preempt_benefit_ratio"] == 1000.0


def test_time_scale_only_where_a_trace_takes_it_and_synthetic_fits_the_fabric(tmp_path, capsys):
    """--time-scale on a sacct log was a TypeError traceback and on synthetic silently ignored;
    synthetic gangs were sized for 8-GPU hosts on any fabric (45 % never fit NVL72's 4-GPU hosts)."""
    sacct = tmp_path / "sacct.txt"
    sacct.write_text("JobID|Submit|Start|End|Elapsed|Timelimit|NNodes|AllocTRES|Partition|Account|State\n"
                     "1|2024-01-01T00:00:00|2024-01-01T00:00:10|2024-01-01T01:00:00|00:59:50|02:00:00|1|"
                     "gres/gpu=8|gpu|a|COMPLETED\n")
    for ref in (f"sacct:{sacct}", "synthetic:jobs=5"):
        assert main(["sim", "run", "--trace", ref, "--time-scale", "2", "--out", str(tmp_path / "o")]) == 3
        err = capsys.readouterr().err
        assert "take no --time-scale" in err and "Traceback" not in err
    assert main(["sim", "run", "--trace", "synthetic:jobs=200,seed=1", "-t", "nvl72:racks=2",
                 "--out", str(tmp_path / "n"), "--no-progress", "--json", "--strict"]) == 0
    assert json.loads(capsys.readouterr().out)["rejected"] == 0


def test_a_trace_file_named_synthetic_is_a_file(tmp_path, capsys, monkeypatch):
    """`synthetic_jobs.csv` was taken for a synthetic workload: its 8-GPU gangs were sized to 8-GPU
    hosts and all rejected on a 4-GPU-host fabric, and --gpus-per-host was refused."""
    import shutil

    trace = tmp_path / "synthetic_jobs.csv"
    shutil.copy(TIRESIAS, trace)
    monkeypatch.chdir(tmp_path)
    code = main(["sim", "run", "--trace", "synthetic_jobs.csv", "--topology", "leaf-spine:hosts=8",
                 "--gpus-per-host", "8", "--out", str(tmp_path / "o"), "--no-progress", "--json",
                 "--no-topology-report"])
    assert code == 0 and json.loads(capsys.readouterr().out)["finished"] == 60


def test_skipped_rows_are_said_and_an_empty_trace_is_an_error(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("job_id,num_gpu,submit_time,iterations,model_name,duration,interval\n"
                     "1,0,0,1,x,10,1\n2,4,5,1,x,10,1\n")
    assert main(["sim", "run", "--trace", f"tiresias:{trace}", "--topology", "leaf-spine:hosts=4",
                 "--out", str(tmp_path / "o"), "--no-progress", "--no-topology-report", "--json"]) == 0
    assert "note: 1 row(s) of tiresias:t.csv are not GPU jobs (no GPUs asked) and were skipped" in capsys.readouterr().err
    trace.write_text("job_id,num_gpu,submit_time,iterations,model_name,duration,interval\n")
    assert main(["sim", "run", "--trace", f"tiresias:{trace}", "--topology", "leaf-spine:hosts=4",
                 "--out", str(tmp_path / "o2"), "--no-progress"]) == 3
    assert "holds no GPU job to replay" in capsys.readouterr().err and not (tmp_path / "o2").exists()


def test_the_run_table_formats_per_tier_waits(tmp_path, capsys):
    """mean_wait_by_tier_s was printed as a raw dict with 16 digits ({'high': 14.944444444444445, ...});
    a mapping reads ``key: value`` (rejected reasons end in a number themselves)."""
    code = main(["sim", "run", "--trace", "synthetic:jobs=60,seed=1", "-t", "superpod:sus=1", "--out",
                 str(tmp_path / "r"), "--no-progress", "--no-topology-report"])
    out = capsys.readouterr().out
    assert code == 0
    row = next(line for line in out.splitlines() if "mean_wait_by_tier_s" in line)
    assert "{" not in row and "high: 14.94" in row


def test_synthetic_tp_is_refused_where_no_gang_can_keep_its_groups(tmp_path, capsys):
    """synthetic tp=16 on DGX hosts made every multi-host gang a job that can never run (61 of 200
    rejected); it is refused naming the NVLink domain, and tp=16 on NVL72 racks runs every job."""
    code = main(["sim", "run", "--trace", "synthetic:jobs=200,tp=16,seed=1", "-t", "superpod:sus=1",
                 "--out", str(tmp_path / "d"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err
    assert "tp=16" in err and "every NVLink domain of the fabric is a single host" in err and "use tp <= 8" in err
    assert main(["sim", "run", "--trace", "synthetic:jobs=200,tp=16,seed=1", "-t", "nvl72:racks=2", "--strict",
                 "--out", str(tmp_path / "n"), "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["rejected"] == 0


def test_compare_shows_rejected_jobs_and_warns_when_they_differ(tmp_path, capsys):
    """A run that rejected 61 jobs showed a much lower mean JCT with only "jobs finished" hinting at
    it: compare has a rejected row and warns; per-job rows record tp/pp."""
    args = ["--no-progress", "--json", "--no-topology-report"]
    assert main(["sim", "run", "--trace", "synthetic:jobs=40,seed=2,tp=8,pp=2,cluster_gpus=256", "-t", "superpod:sus=1",
                 "--out", str(tmp_path / "fits"), *args]) == 0
    assert main(["sim", "run", "--trace", "synthetic:jobs=40,seed=2,tp=8,pp=2,cluster_gpus=256", "-t", "superpod:sus=1,hosts_per_su=4",
                 "--out", str(tmp_path / "small"), *args]) == 0
    capsys.readouterr()
    rows = json.loads((tmp_path / "fits" / "results.json").read_text())["jobs"]
    assert {r.get("tp") for r in rows if r["gpus"] % 8 == 0} == {8} and all("tp" not in r for r in rows if r["gpus"] < 8)
    assert {r.get("pp") for r in rows if r["gpus"] % 16 == 0} == {2}
    small = json.loads((tmp_path / "small" / "results.json").read_text())["summary"]["rejected"]
    assert small > 0
    assert main(["sim", "compare", str(tmp_path / "fits"), str(tmp_path / "small"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert ["jobs rejected (can never fit)", "0", str(small)] in out["rows"]
    assert out["metrics"]["rejected"] == [0, small]
    assert any(w.startswith(f"the runs rejected different numbers of jobs (fits: 0, small: {small})")
               for w in out["warnings"])
    assert main(["sim", "compare", str(tmp_path / "fits"), str(tmp_path / "small")]) == 0
    assert "warning: the runs rejected different numbers of jobs" in capsys.readouterr().out


def test_run_help_names_the_synthetic_parallel_keys(capsys):
    assert main(["sim", "run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "tp=K" in text and "pp=P" in text and "NVLink domain" in text


def test_run_refuses_an_out_whose_files_are_its_inputs(tmp_path, capsys):
    """`--trace tiresias:tr/results.json -t tr/state.json --out tr` overwrote both inputs."""
    run = tmp_path / "tr"
    assert main(["sim", "run", "--trace", f"tiresias:{TIRESIAS}", "-t", "leaf-spine:hosts=8", "--out", str(run),
                 "--no-progress", "--json"]) == 0
    capsys.readouterr()
    before = {f: (run / f).read_bytes() for f in ("results.json", "state.json", "topology.html")}
    for argv in (["--trace", f"tiresias:{run / 'results.json'}", "-t", str(run / "state.json")],
                 ["--trace", str(run / "state.json")],  # a bare path
                 ["--trace", f"tiresias:{TIRESIAS}", "-t", str(run / "topology.html")]):
        assert main(["sim", "run", *argv, "--out", str(run), "--no-progress"]) == 3
        err = capsys.readouterr().err
        assert "it would be overwritten" in err and "fix: give --out another directory" in err
    assert {f: (run / f).read_bytes() for f in before} == before


def test_compare_refuses_a_report_over_any_file_a_run_wrote(tmp_path, capsys):
    run = tmp_path / "cA"
    assert main(["sim", "run", "--trace", "synthetic:jobs=10", "-t", "leaf-spine:hosts=4", "--out", str(run),
                 "--no-progress", "--json"]) == 0
    capsys.readouterr()
    for name in ("topology.html", "state.json", "results.json"):
        before = (run / name).read_bytes()
        assert main(["sim", "compare", str(run), "--report", str(run / name)]) == 3
        assert "it would be overwritten" in capsys.readouterr().err
        assert (run / name).read_bytes() == before


_UNDEFINED = ["mean_jct_s", "p50_jct_s", "p99_jct_s", "mean_wait_s", "p50_wait_s", "p99_wait_s", "max_wait_s",
              "mean_bounded_slowdown", "gpu_utilisation", "mean_stretch", "jain_accounts", "makespan_s"]


def test_figures_over_no_jobs_are_null_and_listed_as_undefined(tmp_path, capsys):
    """No job completed (every job can never fit): mean JCT, p99, slowdown read 0.0 and Jain 1.0
    (and, until 2026-12-07, utilisation over no time 0.0)."""
    trace = tmp_path / "big.csv"
    trace.write_text("job_id,num_gpu,submit_time,iterations,model_name,duration,interval\n"
                     "1,64,0,1,vgg,100,1\n2,64,10,1,vgg,100,1\n")
    assert main(["sim", "run", "--trace", f"tiresias:{trace}", "-t", "leaf-spine:hosts=2", "--out",
                 str(tmp_path / "o"), "--no-progress", "--json"]) == 0
    cap = capsys.readouterr()
    printed = json.loads(cap.out)
    assert printed["finished"] == 0 and printed["rejected"] == 2
    assert all(printed[k] is None for k in _UNDEFINED) and printed["undefined"] == _UNDEFINED
    assert f"{len(_UNDEFINED)} value(s) undefined" in cap.err
    stored = json.loads((tmp_path / "o" / "results.json").read_text())
    assert all(stored["summary"][k] is None for k in _UNDEFINED)
    assert stored["undefined"] == [f"summary.{k}" for k in _UNDEFINED]
    assert main(["sim", "run", "--trace", f"tiresias:{trace}", "-t", "leaf-spine:hosts=2", "--out",
                 str(tmp_path / "h"), "--no-progress"]) == 0  # the table shows "–", not nan or 0
    table = capsys.readouterr().out
    assert "nan" not in table and all(line.rstrip(" │").endswith("–") for line in table.splitlines()
                                      if line.startswith("│ mean_jct_s") or line.startswith("│ jain_accounts"))
    assert main(["sim", "compare", str(tmp_path / "o"), str(tmp_path / "h"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["mean_jct_s"] == [None, None]


def test_run_refuses_a_fabric_without_gpus_up_front(tmp_path, capsys):
    fabric = tmp_path / "g0.yaml"
    assert main(["topology", "generate", "leaf-spine", "--hosts", "2", "--gpus", "0", "-o", str(fabric)]) == 0
    capsys.readouterr()
    assert main(["sim", "run", "--trace", "synthetic:jobs=3", "-t", str(fabric), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "has no GPUs: no job of a trace could ever run on it" in err and "fix: give --topology" in err
    assert not (tmp_path / "o").exists()
