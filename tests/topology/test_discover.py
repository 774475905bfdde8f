"""Discovery: a recorded DGX-H100-like sysfs tree + NVML recording, this machine's real sysfs, and
(marked gpu) the real pynvml path. NVML is replayed by RecordedNvml only because no GPU exists here."""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import pytest

from fabric_hpc.errors import ConfigError, NotFoundError
from fabric_hpc.topology import build, parse_spec
from fabric_hpc.topology.discover import discover, discover_host
from fabric_hpc.topology.discover_sysfs import cpus_of_mask, parse_cpulist, pci_sysfs_id, pcie_gbps
from fabric_hpc.topology.nvml_recording import RecordedNvml, load_recording, record_nvml, save_recording
from fabric_hpc.topology.spec_check import check_spec

FIX = Path(__file__).parent / "fixtures"
DGX_ROOT = FIX / "dgx-h100"
DGX_NVML = FIX / "nvml-dgx-h100.json"


@pytest.fixture(scope="module")
def dgx():
    return discover(root=DGX_ROOT, nvml_recording=DGX_NVML, hostname="dgx01")


def test_dgx_fragment_gpus(dgx):
    ht = dgx.spec.host_types["dgx01-type"]
    assert dgx.nvml_available
    assert (ht.gpus, ht.gpu_model, ht.gpu_memory_gb) == (8, "H100-80GB-HBM3", 79.6)
    assert ht.gpu_numa == [0, 0, 0, 0, 1, 1, 1, 1]
    assert (ht.nvlink_gbps, ht.nvswitches) == (900.0, 4)   # 18 NVLink4 links x 50 GB/s, 4 switch chips
    assert ht.pcie_gbps == 63.0                            # Gen5 x16 from sysfs current_link_*
    assert "h100" in ht.features and "nvlink" in ht.features


def test_dgx_fragment_cpus_memory_nics(dgx):
    ht = dgx.spec.host_types["dgx01-type"]
    assert (ht.sockets, ht.cores_per_socket, ht.threads_per_core) == (2, 56, 2)
    assert ht.memory_gb == pytest.approx(2 * 1056645632 / 2**20, abs=0.1)
    assert (ht.nics, ht.nic_gbps) == (8, 50.0)   # 8 NDR HCAs; the two 200 Gb/s storage ports left out
    assert "ib" in ht.features
    assert any("mlx5_8, mlx5_9" in n for n in dgx.notes)
    assert [h.names for h in dgx.spec.hosts] == ["dgx01"] and dgx.spec.network is None


def test_dgx_sidecar_keeps_uuids_bus_ids_and_peers(dgx):
    facts = json.loads(json.dumps(dgx.facts))   # JSON-serialisable
    gpus = facts["gpus"]
    assert [g["uuid"][-1] for g in gpus] == [str(i) for i in range(8)]
    assert gpus[4]["pci_bus_id"] == "00000000:9A:00.0" and gpus[4]["placed_by"] == "sysfs-pci"
    assert gpus[0]["cpu_affinity"] == "0-55,112-167"
    assert len(facts["nvswitches"]) == 4
    assert all(len(g["nvlinks"]) == 18 and all(lk["remote_type"] == "nvswitch" for lk in g["nvlinks"])
               for g in gpus)
    assert [h["socket"] for h in facts["hcas"][:8]] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert facts["nvml"] == {"available": True, "reason": None, "driver_version": "535.129.03"}


def test_dgx_fragment_loads_and_builds(dgx, tmp_path):
    yaml_path, side = dgx.write(tmp_path / "dgx01.yaml")
    assert side.name == "dgx01.facts.json" and json.loads(side.read_text())["host"] == "dgx01"
    spec, lines = parse_spec(yaml_path.read_text(), source=str(yaml_path))
    check_spec(spec, source=str(yaml_path), locate=lines)
    fab = build(spec)
    assert len(fab.gpus) == 8 and fab.gpu("dgx01/gpu6").numa == 1
    assert fab.distance("dgx01/gpu0", "dgx01/gpu7").bandwidth_gbps > fab.host_type("dgx01").pcie_gbps
    assert discover_host(root=DGX_ROOT, nvml_recording=DGX_NVML, hostname="dgx01") == dgx.spec


def test_recording_round_trip_through_the_fake(tmp_path):
    rec = load_recording(DGX_NVML)
    replayed = record_nvml(RecordedNvml(rec))
    rec.pop("recorded")
    assert replayed == rec
    path = save_recording(replayed, tmp_path / "r.json", note="test")
    assert load_recording(path)["recorded"]["note"] == "test"


def _two_gpu_direct() -> dict:
    rec = load_recording(DGX_NVML)
    devs = rec["devices"][:2]
    for i, d in enumerate(devs):
        other = devs[1 - i]["pci_bus_id"]
        d["nvlinks"] = [{"link": k, "state": 1, "version": 4, "remote_type": 0, "remote_pci_bus_id": other}
                        for k in range(12)] + [{"link": 12, "state": 0}]
        d["numa_node"] = 0
    rec["devices"] = devs
    return rec


def test_direct_nvlink_pairs_and_peer_ids():
    d = discover(root=DGX_ROOT, nvml=RecordedNvml(_two_gpu_direct()), hostname="pair")
    ht = d.spec.host_types["pair-type"]
    assert (ht.gpus, ht.nvlink_gbps, ht.nvswitches) == (2, 600.0, 0)   # 12 NVLink3 links x 50 GB/s
    assert d.facts["gpus"][0]["nvlinks"][0]["remote_gpu"] == 1
    assert d.facts["gpus"][0]["placed_by"] == "nvml"
    assert any("full mesh" in n for n in d.notes)
    assert build(d.spec).distance("pair/gpu0", "pair/gpu1").bandwidth_gbps == 600.0


def test_no_nvlink_and_refused_answers():
    rec = copy.deepcopy(load_recording(DGX_NVML))
    rec["devices"] = rec["devices"][:1]
    dev = rec["devices"][0]
    dev["nvlinks"] = {"nvml_error": 3, "text": "Not Supported"}
    dev["gpm_supported"] = {"nvml_error": 3, "text": "Not Supported"}
    d = discover(root=DGX_ROOT, nvml=RecordedNvml(rec), hostname="one")
    ht = d.spec.host_types["one-type"]
    assert (ht.gpus, ht.nvlink_gbps, ht.nvswitches) == (1, 0.0, 0)
    assert d.facts["gpus"][0]["gpm_supported"] is None and d.facts["gpus"][0]["nvlinks"] == []


def test_driver_not_loaded_is_said_plainly(caplog):
    rec = {"format": "fabric-hpc/nvml-recording", "version": 1,
           "init_error": {"nvml_error": 9, "text": "Driver Not Loaded"}}
    with caplog.at_level(logging.INFO, logger="fabric_hpc.events"):
        d = discover(root=DGX_ROOT, nvml=RecordedNvml(rec), hostname="nodrv")
    assert not d.nvml_available and d.spec.host_types["nodrv-type"].gpus == 0
    assert "NVIDIA kernel driver is not loaded" in d.notes[0]
    assert "sysfs shows 8 NVIDIA GPU PCI device(s)" in d.notes[0]
    assert d.spec.host_types["nodrv-type"].nics == 8      # sysfs facts still reported
    events = [r.event["event"] for r in caplog.records if hasattr(r, "event")]
    assert "topology.discover.nvml_unavailable" in events


def test_this_machine_without_nvml():
    """Real sysfs of this host, real pynvml: no GPU here, so NVML is absent and said so."""
    import pynvml

    try:
        pynvml.nvmlInit()
        has_nvml = True
    except pynvml.NVMLError:
        has_nvml = False
    if has_nvml:
        pynvml.nvmlShutdown()
        pytest.skip("this machine has NVML; the no-NVML path is covered by the recorded tests")
    d = discover()
    assert not d.nvml_available
    assert d.notes[0].startswith("NVML is not available on this host (")
    assert "# NOTE: NVML is not available" in d.yaml()
    ht = next(iter(d.spec.host_types.values()))
    online = parse_cpulist(Path("/sys/devices/system/cpu/online").read_text())
    assert ht.gpus == 0
    assert ht.sockets * ht.cores_per_socket * ht.threads_per_core == len(online) == os.cpu_count()
    assert d.facts["numa_nodes"] and ht.memory_gb > 0.5
    build(d.spec)


@pytest.mark.gpu
def test_real_nvml_on_a_gpu_host(tmp_path):
    import pynvml

    try:
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        pytest.skip(f"NVML unavailable here ({exc}); allowed to skip: no GPU")
    d = discover()
    ht = next(iter(d.spec.host_types.values()))
    assert d.nvml_available and ht.gpus == count
    assert all(g["uuid"].startswith("GPU-") for g in d.facts["gpus"])
    rec = record_nvml()
    assert len(rec["devices"]) == count
    save_recording(rec, tmp_path / "real.json")
    again = discover(nvml_recording=tmp_path / "real.json")
    assert again.spec.host_types == d.spec.host_types


def test_helpers_and_bad_inputs(tmp_path):
    assert parse_cpulist("0-2,5,7-8") == [0, 1, 2, 5, 7, 8]
    for bad in ("garbage", "3-1", "0-99999999999", "0-60000,0-60000"):  # damage; no huge list is built
        with pytest.raises(ConfigError, match=r"node0/cpulist: .* is not a Linux CPU list"):
            parse_cpulist(bad, "node0/cpulist")
    assert cpus_of_mask([0b101, 1]) == [0, 2, 64]
    assert pci_sysfs_id("00000000:9A:00.0") == "0000:9a:00.0"
    assert pcie_gbps("16.0 GT/s PCIe", 16) == 31.5 and pcie_gbps(None, 16) is None
    with pytest.raises(NotFoundError):
        load_recording(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text('{"format": "other"}')
    with pytest.raises(ConfigError, match="not an NVML recording"):
        load_recording(tmp_path / "x.json")
    with pytest.raises(ConfigError, match="not a plain host name"):
        discover(root=DGX_ROOT, use_nvml=False, hostname="bad[1")
    d = discover(root=DGX_ROOT, use_nvml=False, hostname="h")
    assert d.notes[0].startswith("NVML was not consulted (--no-nvml; Python: use_nvml=False): "
                                 "no GPUs reported (0 GPUs)")
    assert "not available" not in d.notes[0]  # it read "NVML is not available on this host (NVML was
    # not consulted (disabled by the caller))": NVML may well be there, the user asked not to use it


def test_a_root_without_sysfs_is_refused(tmp_path):
    """It was exit 0 with a made-up host (1 core, 1 GB) and a note."""
    from fabric_hpc.cli.main import main

    assert main(["topology", "discover", "--no-nvml", "--sysfs-root", str(tmp_path)]) == 3
