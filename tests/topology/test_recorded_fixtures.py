"""Recorded hosts: ``snapshot_sysfs`` copies exactly what discovery reads (the replayed tree gives
the same facts as the live one), and every NVML recording committed under fixtures/ — the
synthetic DGX H100 and any recorded on a lent GPU machine by ``python -m benchmarks.gpu_check``
and filed with its ``--fold`` — replays through discovery and builds a fabric model."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabric_hpc.topology import build, discover, parse_spec
from fabric_hpc.topology.discover_sysfs import read_sysfs, snapshot_sysfs
from fabric_hpc.topology.nvml_recording import load_recording

FIX = Path(__file__).parent / "fixtures"
RECORDINGS = sorted(FIX.glob("nvml-*.json"))


def _facts(root: Path) -> dict:
    s = read_sysfs(root)
    pci = {d: s.pci(d) for d in sorted(p.name for p in (root / "sys/bus/pci/devices").iterdir())} \
        if (root / "sys/bus/pci/devices").is_dir() else {}
    return {"cpus": s.cpus, "numa": s.numa, "hcas": s.hcas, "net": s.net, "notes": s.notes,
            "nvidia": s.nvidia_pci_gpus(), "pci": pci}


@pytest.mark.parametrize("root", [Path("/"), FIX / "dgx-h100"], ids=["this-host", "dgx-h100"])
def test_sysfs_snapshot_reads_back_the_same_facts(root: Path, tmp_path: Path) -> None:
    snap = snapshot_sysfs(tmp_path / "snap", root)
    assert _facts(snap) == _facts(root)
    assert _facts(snap)["cpus"]  # not vacuous: the tree has CPUs


@pytest.mark.parametrize("path", RECORDINGS, ids=[p.stem for p in RECORDINGS])
def test_every_recorded_nvml_fixture_replays_into_a_fabric(path: Path) -> None:
    pytest.importorskip("pynvml")  # RecordedNvml raises pynvml's own NVMLError
    rec = load_recording(path)
    slug = path.stem.removeprefix("nvml-")
    root = FIX / slug if (FIX / slug / "sys").is_dir() else Path("/")
    found = discover(root=root, nvml_recording=path, hostname="replayed")
    devices = rec.get("devices", [])
    assert found.nvml_available is ("init_error" not in rec)
    assert [g["name"] for g in found.facts["gpus"]] == [d["name"] for d in devices]
    fabric = build(found.spec)
    assert len(fabric.gpus) == len(devices)
    recorded = FIX / slug / "discovery.yaml"
    if recorded.exists():  # filed by --fold: the replay gives the host type recorded there
        spec, _ = parse_spec(recorded.read_text(), source=str(recorded))
        (want,) = spec.host_types.values()
        (got,) = found.spec.host_types.values()
        assert (got.gpus, got.gpu_model, got.gpu_memory_gb) == (want.gpus, want.gpu_model,
                                                                 want.gpu_memory_gb)
