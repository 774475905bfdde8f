"""The prepared GPU check (``python -m benchmarks.gpu_check``) rehearsed on the CPU: the same entry
point with ``--tiny`` runs every part (real ``mpiexec`` for the 2-rank part), writes the output
files with the schema the GPU run will have, reports NVML as unavailable without skipping, stops
an overrunning part and still runs the rest; its imports are all on the lent machine or carried.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import __main__ as gpu_check
from benchmarks.gpu_check.plan import PARTS, TOTAL_BUDGET_S
from benchmarks.gpu_check.report import validate
from benchmarks.gpu_check.wheels import pins
from tests.real import require_real

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "benchmarks" / "gpu_check"
OUTPUTS = ("gpu_check.json", "gpu_check.md", "gpu_check.log", "nvml-recording.json",
           "discovery.yaml", "discovery.facts.json", "sysfs-snapshot.tar.gz")
NOT_ON_DEVICE = ("ortools", "zarr", "numcodecs", "donfig")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess, Path]:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    require_real("mpi", mpiexec.exists() or shutil.which("mpiexec") is not None, "no mpiexec")
    out = tmp_path_factory.mktemp("gpu-check") / "out"
    return _run("--tiny", "--out", str(out)), out


@pytest.mark.slow
@pytest.mark.mpi
def test_tiny_rehearsal_runs_every_part_and_writes_the_schema(tiny_run) -> None:
    proc, out = tiny_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)  # <= 8 files come back
    doc = json.loads((out / "gpu_check.json").read_text())
    assert validate(doc) == [] and doc["schema_errors"] == []
    assert doc["mode"] == "tiny" and doc["finished"]
    status = {name: p["status"] for name, p in doc["parts"].items()}
    assert status == {q.name: ("skipped" if q.optional else "ok") for q in PARTS}
    parts = {name: p["result"] for name, p in doc["parts"].items()}
    # CPU: NVML is reported unavailable, not skipped
    import torch

    if not torch.cuda.is_available():
        assert parts["discovery"]["nvml"].startswith("unavailable: ")
        assert parts["fabric_1rank"]["row"]["nvml"].startswith("unavailable")
        assert parts["fabric_1rank"]["row"]["gpm_sm_util"] is None
    base, one, two = (parts[k]["row"] for k in ("baseline", "fabric_1rank", "fabric_2ranks"))
    assert base["requests"] == 16 and base["padding_waste"] > 0.2  # static batches pad
    for row in (one, two):
        assert row["requests"] == row["merged_items"] == 48 and row["exactly_once"] is True
        assert row["padding_waste"] < 0.01 and row["output_tokens_per_s"] > 0
    ck = parts["checkpoint"]
    assert ck["state_bytes"] >= 2**30 and ck["tensors"] > 100
    for method in ("fabric_async", "fabric_sync", "dcp_async"):
        assert ck[method]["total_s"] >= ck[method]["stall_s"] > 0
    md_text = (out / "gpu_check.md").read_text()
    assert "| fabric, 2 MPI ranks sharing one device | 48 |" in md_text
    assert "Async stall / sync save:" in md_text and "Targets (judged on the GPU run only): " in md_text
    assert set(doc["targets"]) == {"fabric 1 rank >= 10x the static baseline", "padding waste < 1 %",
                                   "GPM SM utilisation reported", "async stall <= 10 % of the sync save"}
    assert doc["targets"]["padding waste < 1 %"] is True
    from fabric_hpc.topology import discover

    replay = discover(nvml_recording=out / "nvml-recording.json", hostname="replayed")
    assert replay.nvml_available is (parts["discovery"]["nvml"] == "available")
    assert parts["discovery"]["snapshot_replays_identically"] is True


@pytest.mark.slow
@pytest.mark.mpi
def test_check_imports_only_what_the_lent_machine_has_or_carries(tiny_run) -> None:
    proc, out = tiny_run
    doc = json.loads((out / "gpu_check.json").read_text())
    imported = set(doc["runner_modules"])
    for entry in doc["parts"].values():
        imported |= set(entry["result"].get("modules", []))
    assert {"torch", "pydantic", "google_crc32c"} <= imported
    assert not imported & set(NOT_ON_DEVICE), imported & set(NOT_ON_DEVICE)
    device = {_norm(ln) for ln in (HERE / "device-packages.txt").read_text().splitlines()
              if ln and not ln.startswith("#")}
    carried = {_norm(p.split("==")[0]) for p in pins()}
    project = {_norm(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in md.requires("fabric-hpc")}
    dists = md.packages_distributions()
    missing = sorted({(m, _norm(d)) for m in imported for d in dists.get(m, [])
                      if _norm(d) in project and _norm(d) not in device | carried})
    assert missing == [], f"imported on the check's path but neither on the device nor carried: {missing}"


def test_import_path_pulls_no_package_the_device_lacks() -> None:
    code = ("import sys\n"
            "import benchmarks.gpu_check.__main__, benchmarks.gpu_check.part, benchmarks.gpu_check.device\n"
            "import benchmarks.gpu_check.inference, benchmarks.gpu_check.checkpoint\n"
            "import benchmarks.gpu_check.report, benchmarks.gpu_check.wheels\n"
            "import benchmarks.inference_gpu.__main__, fabric_hpc.topology, fabric_hpc.checkpoint\n"
            "print(sorted({m.split('.')[0] for m in sys.modules}))")
    got = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    mods = set(json.loads(got.stdout.replace("'", '"')))
    assert "pydantic" in mods and not mods & set(NOT_ON_DEVICE)


def test_overrunning_part_is_reported_and_the_rest_still_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _run("--tiny", "--out", str(out), "--only", "ceilings,discovery",
                "--budget", "ceilings=0.05", timeout=300)
    assert proc.returncode == 1  # a part overran
    doc = json.loads((out / "gpu_check.json").read_text())
    assert doc["parts"]["ceilings"]["status"] == "overran"
    assert doc["parts"]["discovery"]["status"] == "ok"
    assert "| ceilings | overran |" in (out / "gpu_check.md").read_text()
    assert validate(doc) == []


def test_full_plan_fits_eight_minutes(capsys: pytest.CaptureFixture[str]) -> None:
    assert gpu_check.main(["--dry-run"]) == 0
    text = capsys.readouterr().out
    for q in PARTS:
        assert q.name in text
    fixed = sum(q.budget_s for q in PARTS if not q.optional)
    assert fixed <= TOTAL_BUDGET_S <= 8 * 60  # the optional part only fills what is left
    assert "'requests': 1000" in text and "'baseline_batch': 128" in text and "'ckpt_gib': 8.0" in text


def test_usage_errors_are_one_line() -> None:
    proc = _run("--only", "nope", timeout=60)
    assert proc.returncode == 2 and "unknown part(s) nope" in proc.stderr
    proc = _run("--tiny", timeout=60)
    assert proc.returncode == 2 and "give --out DIR" in proc.stderr


def test_pinned_wheels_are_the_tested_versions() -> None:
    for pin in pins():
        name, version = pin.split("==")
        assert md.version(name) == version, pin


@pytest.mark.slow
@pytest.mark.mpi
def test_fold_files_a_gpu_run_and_refuses_a_rehearsal(tiny_run, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks._report as doc_writer
    from benchmarks.gpu_check import report

    _, out = tiny_run
    assert report.fold(out) == 2  # a --tiny run is never folded into the docs
    run = tmp_path / "run"
    shutil.copytree(out, run)
    doc = json.loads((run / "gpu_check.json").read_text())
    doc["mode"] = "full"
    (run / "gpu_check.json").write_text(json.dumps(doc))
    monkeypatch.setattr(doc_writer, "DOC", tmp_path / "benchmarks.md")
    monkeypatch.setattr(report, "FIXTURES", tmp_path / "fixtures")
    assert report.fold(run) == 0
    text = (tmp_path / "benchmarks.md").read_text()
    assert f"## {report.TITLE}" in text and "lent GPU machine" in text
    assert (tmp_path / "fixtures" / "nvml-lent-gpu.json").exists()
    assert (tmp_path / "fixtures" / "lent-gpu" / "discovery.yaml").exists()
    assert (tmp_path / "fixtures" / "lent-gpu" / "sys" / "devices" / "system" / "cpu" / "online").exists()


def test_full_size_parts_fail_fast_without_a_gpu(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the full parts would run")
    proc = _run("--out", str(tmp_path / "out"), "--only", "discovery,ceilings", timeout=300)
    doc = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert proc.returncode == 1
    assert doc["parts"]["discovery"]["status"] == "ok"  # NVML + sysfs need no GPU
    assert doc["parts"]["ceilings"]["status"] == "failed"
    assert "no CUDA device" in doc["parts"]["ceilings"]["error"]


def test_missing_carried_wheels_stop_the_check_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "whl").mkdir()
    proc = _run("--tiny", "--out", str(tmp_path / "out"), "--wheels", str(tmp_path / "whl"), timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("no wheels in ")
    assert "Traceback" not in proc.stderr
