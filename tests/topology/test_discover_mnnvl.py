"""Multi-node NVLink (GB200 NVL72): NVML fabric info in discovery and `fabric topology assemble`.

No GPU exists here, so GB200 trays are NVML recordings replayed by RecordedNvml (built from the DGX
recording: 4 GPUs, 18 NVLink5 links each to switches outside the tray, a fabric clique); the replay
fills pynvml's own ctypes structs through ``ctypes.byref``, the call the real pynvml path makes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pynvml
import pytest

from fabric_hpc.cli.main import main
from fabric_hpc.errors import ConfigError
from fabric_hpc.topology import parse_spec
from fabric_hpc.topology.assemble import assemble
from fabric_hpc.topology.discover import discover
from fabric_hpc.topology.nvml_recording import FABRIC_CALLS, RecordedNvml, _fabric, record_nvml
from fabric_hpc.topology.spec_check import check_spec

FIX = Path(__file__).parent / "fixtures"
DGX_ROOT = FIX / "dgx-h100"
CLUSTER = "2f6c1b9e-5d1a-4c3b-9e8f-0a1b2c3d4e5f"
HEALTHY = 2 | 2 << 2 | 2 << 4 | 2 << 6 | 1 << 8  # bandwidth not degraded, routes healthy, config correct


def _fabric_answer(clique: int, **kw: Any) -> dict[str, Any]:
    return {"cluster_uuid": CLUSTER, "clique_id": clique, "state": 3, "status": 0, "health_mask": HEALTHY,
            **kw}


def tray(clique: int | None, gpus: int = 4, **kw: Any) -> dict[str, Any]:
    """A GB200 compute tray's NVML recording (``clique`` None: a GPU without fabric info)."""
    rec = json.loads((FIX / "nvml-dgx-h100.json").read_text())
    devs = []
    for d in rec["devices"][:gpus]:
        d = copy.deepcopy(d)
        d["name"] = "NVIDIA GB200"
        d["nvlinks"] = [{"link": k, "state": 1, "version": 7, "remote_type": 2,
                         "remote_pci_bus_id": {"nvml_error": 3, "text": "Not Supported"}} for k in range(18)]
        if clique is not None:
            d["fabric"] = _fabric_answer(clique, **kw)
        devs.append(d)
    rec["devices"] = devs
    return rec


def _write(tmp: Path, host: str, rec: dict[str, Any]) -> Path:
    out = tmp / f"{host}.yaml"
    discover(root=DGX_ROOT, nvml=RecordedNvml(rec), hostname=host).write(out)
    return out


def test_discovery_records_the_domain_id():
    found = discover(root=DGX_ROOT, nvml=RecordedNvml(tray(32766)), hostname="gb-a01")
    assert found.facts["nvlink_domain"] == f"{CLUSTER}.32766"
    g0 = found.facts["gpus"][0]["fabric"]
    assert g0 == {"cluster_uuid": CLUSTER, "clique_id": 32766, "state": "completed", "status": 0,
                  "health_mask": HEALTHY, "domain": f"{CLUSTER}.32766"}
    assert any(f"multi-node NVLink domain {CLUSTER}.32766" in n for n in found.notes)
    assert found.spec.host_types["gb-a01-type"].nvlink_gbps == 1800.0


def test_recording_round_trip_and_v1_fallback():
    rec = tray(7)
    assert record_nvml(RecordedNvml(rec))["devices"] == rec["devices"]
    for d in rec["devices"]:  # a driver with only the v1 call (no healthMask): the V call is not found
        del d["fabric"]["health_mask"]
    again = record_nvml(RecordedNvml(rec))
    assert again["devices"][0]["fabric"] == {"cluster_uuid": CLUSTER, "clique_id": 7, "state": 3, "status": 0}


def test_the_real_pynvml_call_path_exists():
    # discovery calls these names of the real module; without a driver the call is an NVML error, not a crash
    assert all(hasattr(pynvml, fn) and hasattr(pynvml, struct) for fn, struct in FABRIC_CALLS)
    assert pynvml.c_nvmlGpuFabricInfoV_t().version == pynvml.nvmlGpuFabricInfo_v2
    answer = _fabric(pynvml, None)["fabric"]
    assert answer["nvml_error"] in (pynvml.NVML_ERROR_UNINITIALIZED, pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)


def test_gpu_without_fabric_is_a_plain_host():
    found = discover(root=DGX_ROOT, nvml=RecordedNvml(tray(None)), hostname="h1")
    assert found.facts["nvlink_domain"] is None
    assert all(g["fabric"] is None for g in found.facts["gpus"])
    assert not any("NVLink fabric" in n or "multi-node NVLink domain" in n for n in found.notes)


@pytest.mark.parametrize(("kw", "said"), [({"state": 2}, "registration is in progress, not completed"),
                                          ({"status": 999}, "registration failed (status: Unknown Error")])
def test_unfinished_registration_is_a_warning_naming_the_gpu_and_fix(kw, said):
    found = discover(root=DGX_ROOT, nvml=RecordedNvml(tray(5, **kw)), hostname="h1")
    notes = [n for n in found.notes if said in n]
    assert len(notes) == 4 and notes[0].startswith("GPU 0: ") and "nvidia-imex" in notes[0]
    assert found.facts["nvlink_domain"] is None


def test_degraded_bandwidth_is_noted():
    found = discover(root=DGX_ROOT, nvml=RecordedNvml(tray(5, health_mask=HEALTHY & ~3 | 1)), hostname="h1")
    assert any(n.startswith("GPU 0: NVLink fabric health mask") and "bandwidth is degraded" in n
               for n in found.notes)


def test_assemble_two_racks(tmp_path):
    paths = [_write(tmp_path, f"gb-a{i:02d}", tray(1)) for i in range(1, 19)]
    paths += [_write(tmp_path, f"gb-b{i:02d}", tray(2)) for i in range(1, 3)]
    spec, notes = assemble(paths, name="two-racks")
    check_spec(spec)
    assert [(d.name, d.hosts, d.gbps, d.nvswitches) for d in spec.nvlink_domains] == [
        (f"{CLUSTER}.1", "gb-a[01-18]", 1800.0, 18), (f"{CLUSTER}.2", "gb-b[01-02]", 1800.0, 18)]
    (tname, ht), = spec.host_types.items()
    assert (tname, ht.gpus, ht.nvswitches) == ("gb200-x4", 4, 0)
    assert [(e.names, e.type) for e in spec.hosts] == [("gb-a[01-18],gb-b[01-02]", "gb200-x4")]
    assert any("gb-a[01-18] (72 GPUs)" in n for n in notes)


def test_assemble_cli_writes_a_fabric(tmp_path, capsys):
    paths = [str(_write(tmp_path, f"n{i}", tray(9))) for i in (1, 2)]
    assert main(["topology", "assemble", *paths, "-o", str(tmp_path / "f.yaml")]) == 0
    assert f"note: NVLink domain {CLUSTER}.9: n[1-2] (8 GPUs)" in capsys.readouterr().err
    spec, _ = parse_spec((tmp_path / "f.yaml").read_text())
    assert spec.nvlink_domains[0].hosts == "n[1-2]"


def _refused(paths: list[Path], capsys: Any = None) -> str:
    with pytest.raises(ConfigError) as err:
        assemble(paths)
    if capsys is not None:  # the command: exit 3, the message on one line, no traceback
        capsys.readouterr()
        assert main(["topology", "assemble", *map(str, paths)]) == 3
        got = capsys.readouterr()
        assert f"error: {err.value.message}" in got.err and "Traceback" not in got.err and not got.out
    return err.value.message


def test_domain_larger_than_the_format_allows(tmp_path, capsys):
    first = _write(tmp_path, "n000", tray(3, gpus=8))
    paths = [first]
    for i in range(1, 73):  # 73 hosts x 8 GPUs: 584 GPUs in one clique
        paths.append(tmp_path / f"n{i:03d}.yaml")
        side = tmp_path / f"n{i:03d}.facts.json"
        for src, dst in ((first, paths[-1]), (tmp_path / "n000.facts.json", side)):
            dst.write_text(src.read_text().replace("n000", f"n{i:03d}"))
    assert "584 GPUs; one NVLink domain joins at most 576" in _refused(paths, capsys)


def test_host_in_two_cliques(tmp_path, capsys):
    rec = tray(4)
    rec["devices"][2]["fabric"]["clique_id"] = rec["devices"][3]["fabric"]["clique_id"] = 5
    msg = _refused([_write(tmp_path, "n1", rec)], capsys)
    assert msg.startswith("host 'n1': its GPUs are in 2 NVLink cliques (GPU 0, 1 in ")
    assert f"GPU 2, 3 in {CLUSTER}.5" in msg


def test_host_partly_in_a_clique(tmp_path):
    rec = tray(4)
    del rec["devices"][3]["fabric"]
    assert "GPU 3 in no NVLink domain" in _refused([_write(tmp_path, "n1", rec)])


def test_unregistered_gpu_is_refused(tmp_path):
    msg = _refused([_write(tmp_path, "n1", tray(4, state=1))])
    assert msg == ("host 'n1': GPU 0 is not in its NVLink fabric (registration not started), "
                   "nor are 3 more GPUs")


def test_inconsistent_gpu_counts(tmp_path, capsys):
    paths = [_write(tmp_path, "n1", tray(6)), _write(tmp_path, "n2", tray(6, gpus=3))]
    assert "hosts have different GPU counts (n2: 3 GPUs; n1: 4 GPUs)" in _refused(paths, capsys)
    side = tmp_path / "n1.facts.json"
    facts = json.loads(side.read_text())
    side.write_text(json.dumps(dict(facts, gpus=facts["gpus"][:2])))  # the sidecar of another discovery
    assert "host 'n1' has gpus: 4 but its sidecar lists 2 GPUs" in _refused([tmp_path / "n1.yaml"])


def test_missing_sidecar_and_host_twice(tmp_path):
    one = _write(tmp_path, "n1", tray(6))
    copy_ = tmp_path / "sub" / "n1.yaml"
    copy_.parent.mkdir()
    copy_.write_text(one.read_text())
    assert "its sidecar" in _refused([copy_]) and "does not exist" in _refused([copy_])
    (tmp_path / "sub" / "n1.facts.json").write_text((tmp_path / "n1.facts.json").read_text())
    assert _refused([one, copy_]).startswith("host 'n1' is in two fragments")


def test_directory_sidecar_given_and_damaged_domain(tmp_path):
    for host in ("n1", "n2"):
        _write(tmp_path, host, tray(6))
    spec, _ = assemble([tmp_path])  # a directory: its *.yaml fragments
    assert spec.nvlink_domains[0].hosts == "n[1-2]"
    assert _refused([tmp_path / "n1.facts.json"]).endswith("is JSON: give the host's fragment (YAML); its "
                                                           "sidecar <name>.facts.json is read from beside it")
    (tmp_path / "nothing.d").mkdir()
    assert "has no *.yaml discovery fragment" in _refused([tmp_path / "n1.yaml", tmp_path / "nothing.d"])
    side = tmp_path / "n2.facts.json"
    facts = json.loads(side.read_text())
    facts["gpus"][1]["fabric"]["domain"] = "../x y"
    side.write_text(json.dumps(facts))
    assert _refused([tmp_path / "n2.yaml"]) == "host 'n2': GPU 1's NVLink domain '../x y' is no " \
                                                "<clusterUuid>.<cliqueId>"


def test_the_format_refuses_a_domain_past_576_gpus():
    ht = {"gpus": 8, "gpu_model": "B200", "gpu_memory_gb": 180, "sockets": 2, "cores_per_socket": 8,
          "memory_gb": 512, "nvlink_gbps": 1800, "nvswitches": 0, "pcie_gbps": 64, "nics": 0, "nic_gbps": 0}
    text = json.dumps({"fabric": 1, "name": "big", "host_types": {"t": ht}, "hosts": [{"names": "n[1-73]",
                       "type": "t"}], "nvlink_domains": [{"name": "d", "hosts": "n[1-73]", "gbps": 1800,
                                                          "nvswitches": 144}]})
    spec, _ = parse_spec(text)
    with pytest.raises(ConfigError) as err:
        check_spec(spec, source="big.yaml")
    assert "NVLink domain 'd' has 584 GPUs; one NVLink domain joins at most 576 (NVLink 5)" in \
        err.value.message
    spec, _ = parse_spec(text.replace("n[1-73]", "n[1-72]"))
    assert check_spec(spec)["n72"] == "t"


def test_a_host_whose_driver_has_no_fabric_call_assembles_as_a_plain_host(tmp_path):
    """NVML error 13 (Function Not Found: a driver before R535, an older nvidia-ml-py): discovery notes it as
    harmless, and assemble refused the host as an unregistered GPU (the reviewer's finding)."""
    rec = json.loads((FIX / "nvml-dgx-h100.json").read_text())
    for d in rec["devices"]:
        d["fabric"] = {"nvml_error": 13, "text": "Function Not Found"}
    spec, _ = assemble([_write(tmp_path, "h1", rec)], name="old-driver")
    check_spec(spec)
    assert [e.names for e in spec.hosts] == ["h1"] and not spec.nvlink_domains
