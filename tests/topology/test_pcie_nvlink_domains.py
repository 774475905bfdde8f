"""A PCIe-only host is in no NVLink domain, and every output says so alike (model, show, report)."""

from __future__ import annotations

import json

import numpy as np
import yaml

from fabric_hpc.cli.main import main
from fabric_hpc.topology import build
from fabric_hpc.topology.report import _job_stats, _nvlink, state_codes

MIXED = {
    "fabric": 1, "name": "mixed",
    "host_types": {
        "cpu": {"gpus": 0, "gpu_model": "none", "gpu_memory_gb": 0, "sockets": 2, "cores_per_socket": 32,
                "memory_gb": 512, "nvlink_gbps": 0, "nvswitches": 0, "pcie_gbps": 32, "nics": 1,
                "nic_gbps": 25},
        "h100": {"gpus": 8, "gpu_model": "H100-SXM5-80GB", "gpu_memory_gb": 80, "sockets": 2,
                 "cores_per_socket": 56, "memory_gb": 2048, "nvlink_gbps": 900, "nvswitches": 4,
                 "pcie_gbps": 64, "nics": 8, "nic_gbps": 50},
        "l4": {"gpus": 4, "gpu_model": "L4", "gpu_memory_gb": 24, "sockets": 1, "cores_per_socket": 16,
               "memory_gb": 256, "nvlink_gbps": 0, "nvswitches": 0, "pcie_gbps": 32, "nics": 1,
               "nic_gbps": 25},
    },
    "hosts": [{"names": "login[1-2]", "type": "cpu"}, {"names": "h[1-3]", "type": "h100"},
              {"names": "l[1-3]", "type": "l4"}],
    "network": {"levels": ["leaf", "spine"], "groups": [
        {"name": "leafA", "level": "leaf", "switches": 1, "hosts": "login[1-2],h[1-2]", "uplink_gbps": 400},
        {"name": "leafB", "level": "leaf", "switches": 1, "hosts": "h3,l[1-3]", "uplink_gbps": 400},
        {"name": "spine", "level": "spine", "switches": 2, "children": ["leafA", "leafB"]}]},
}


def test_model_puts_pcie_only_hosts_in_no_nvlink_domain():
    fab = build(MIXED)
    assert fab.nvlink_domain_of("h1") == "h1"
    assert fab.nvlink_domain_of("l1") is None and fab.nvlink_domain_of("login1") is None
    assert fab.gpu("l2/gpu3").nvlink_domain is None and fab.gpu("h2/gpu0").nvlink_domain == "h2"
    assert fab.domains("l1") == [("leaf", "leafB"), ("spine", "spine")]
    assert fab.domains("h3")[0] == ("nvlink", "h3")
    s = fab.summary()
    assert s["nvlink_domains"] == 3 and s["pcie_only_hosts"] == 3
    assert set(fab.rollup(np.ones(len(fab.gpus), bool))["nvlink"]) == {"h1", "h2", "h3"}


def test_report_and_job_stats_agree_with_the_model():
    fab = build(MIXED)
    doms, per_host = _nvlink(fab)
    assert [d["n"] for d in doms] == ["h1", "h2", "h3"]
    assert [per_host[fab.host_pos[h]] for h in ("l1", "l2", "l3", "login1")] == [-1] * 4
    codes, jobs = state_codes(fab, {"l1": "pcie", "l2": "pcie", "h1/gpu0": "nv", "h1/gpu1": "nv"})
    stats = _job_stats(fab, codes, jobs)
    assert stats["pcie"].nvlink_domains == 0 and stats["nv"].nvlink_domains == 1


def test_show_counts_nvlink_domains_and_pcie_only_hosts(tmp_path, capsys):
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(MIXED))
    assert main(["topology", "show", str(path), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["nvlink_domains"] == 3 and s["pcie_only_hosts"] == 3
    assert main(["topology", "show", str(path)]) == 0
    out = capsys.readouterr().out
    assert "3 NVLink domains (3 hosts with PCIe-only GPUs, in none)" in out
    assert main(["topology", "show", str(path), "--host", "l1"]) == 0
    assert "none (PCIe only)" in capsys.readouterr().out
