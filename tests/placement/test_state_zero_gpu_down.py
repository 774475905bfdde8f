"""A state file marking a host without GPUs down: accepted (kept on write-back) with a note that
says it changes no placement; `fabric place` prints the note on stderr (--json stays one document)."""

from __future__ import annotations

import json

from fabric_hpc.cli.main import main
from fabric_hpc.placement import ClusterState
from fabric_hpc.topology import open_fabric

SPEC = """\
fabric: 1
name: mixed
host_types:
  cpu: {gpus: 0, gpu_model: none, gpu_memory_gb: 0, sockets: 2, cores_per_socket: 32, memory_gb: 512,
        nvlink_gbps: 0, nvswitches: 0, pcie_gbps: 32, nics: 1, nic_gbps: 25}
  l4: {gpus: 4, gpu_model: L4, gpu_memory_gb: 24, sockets: 1, cores_per_socket: 16, memory_gb: 256,
       nvlink_gbps: 0, nvswitches: 0, pcie_gbps: 32, nics: 1, nic_gbps: 25}
hosts:
  - {names: 'login[1-2]', type: cpu}
  - {names: 'g[1-2]', type: l4}
"""


def _fabric(tmp_path):
    spec = tmp_path / "mixed.yaml"
    spec.write_text(SPEC)
    return spec, open_fabric(str(spec))


def test_a_down_host_without_gpus_is_kept_with_a_note(tmp_path):
    _, fab = _fabric(tmp_path)
    doc = {"version": 1, "jobs": {}, "down": ["login[1-2]", "g1"]}
    state = ClusterState.from_dict(fab, doc, source="s.json")
    assert state.notes == ("s.json: down: login[1-2] have no GPUs, so marking them down changes no placement "
                           "(kept in the file as listed)",)
    assert state.to_dict()["down"] == ["g1,login[1-2]"]
    assert ClusterState.from_dict(fab, {"version": 1, "jobs": {}, "down": ["g1"]}).notes == ()


def test_fabric_place_prints_the_note_on_stderr(tmp_path, capsys):
    spec, _ = _fabric(tmp_path)
    state = tmp_path / "state.json"
    state.write_text('{"version": 1, "jobs": {}, "down": ["login1"]}')
    assert main(["place", "-t", str(spec), "-s", str(state), "-r", "gpus=4", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["gpus"]
    assert out.err.strip() == (f"note: {state}: down: login1 has no GPUs, so marking it down changes no "
                               "placement (kept in the file as listed)")


def test_the_gpu_models_hint_lists_no_model_of_hosts_without_gpus(tmp_path, capsys):
    spec, _ = _fabric(tmp_path)
    code = main(["place", "-t", str(spec), "-r", "gpus=2,model=H100"])
    err = capsys.readouterr().err
    assert code == 4, err
    assert "GPU models here: L4;" in err and "none" not in err.split("GPU models here:")[1].split(";")[0]
