"""`fabric topology show --host` on an 80-column terminal and for a host without GPUs."""

from __future__ import annotations

import json

from fabric_hpc.cli.main import main

LONG = "a-very-long-hostname-for-the-gpu-cluster-in-building-seven-row-b-rack-12-slot-03"
SPEC = f"""\
fabric: 1
name: mixed
host_types:
  cpu: {{gpus: 0, gpu_model: none, gpu_memory_gb: 0, sockets: 2, cores_per_socket: 32, memory_gb: 512,
        nvlink_gbps: 0, nvswitches: 0, pcie_gbps: 32, nics: 1, nic_gbps: 25}}
  h100: {{gpus: 8, gpu_model: H100-SXM5-80GB, gpu_memory_gb: 80, sockets: 2, cores_per_socket: 56,
         memory_gb: 2048, nvlink_gbps: 900, nvswitches: 4, pcie_gbps: 64, nics: 8, nic_gbps: 50}}
hosts:
  - {{names: 'login1', type: cpu}}
  - {{names: '{LONG}', type: h100}}
network:
  levels: [leaf]
  groups:
    - {{name: leafA, level: leaf, switches: 1, hosts: 'login1,{LONG}'}}
"""


def _show(capsys, monkeypatch, *args):
    monkeypatch.setenv("COLUMNS", "80")
    assert main(["topology", "show", *args]) == 0
    return capsys.readouterr().out


def test_the_host_line_wraps_at_the_terminal_width(capsys, monkeypatch, tmp_path):
    out = _show(capsys, monkeypatch, "nvl72:racks=2", "--host", "r001-h01")
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "spine:spine" in out and "r001-h01 type=gb200" in out
    spec = tmp_path / "mixed.yaml"
    spec.write_text(SPEC)
    out = _show(capsys, monkeypatch, str(spec), "--host", LONG)
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "".join(out.split())[:len(LONG)] == LONG  # folded, not cut


def test_a_host_without_gpus_says_so(capsys, monkeypatch, tmp_path):
    spec = tmp_path / "mixed.yaml"
    spec.write_text(SPEC)
    out = _show(capsys, monkeypatch, str(spec), "--host", "login1")
    assert out.splitlines() == ["login1 type=cpu  domains: leaf:leafA", "no GPUs"]
    assert main(["topology", "show", str(spec), "--host", "login1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gpus"] == []


def test_the_summary_lists_no_model_for_hosts_without_gpus(capsys, monkeypatch, tmp_path):
    spec = tmp_path / "mixed.yaml"
    spec.write_text(SPEC)
    assert main(["topology", "show", str(spec), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gpu_models"] == {"H100-SXM5-80GB": 8}
    cpu_only = tmp_path / "cpu.yaml"
    cpu_only.write_text(SPEC.split("  h100:")[0] + "hosts:\n  - {names: 'login[1-2]', type: cpu}\n")
    out = _show(capsys, monkeypatch, str(cpu_only))
    assert "none" not in out.split("no network")[-1] and out.rstrip().endswith("no GPUs"), out
