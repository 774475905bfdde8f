"""Report header and layout defects from the fourth admin probe, in a real headless Chromium: the
NVLink card counts multi-host domains under their real size, very long names stay inside the tree
panel, and a tiny non-zero share of down GPUs is not shown as 0.0%."""

from __future__ import annotations

import pytest

from fabric_hpc.topology import build, generators, open_fabric
from fabric_hpc.topology.report import write_report
from tests.topology.test_report_browser import _count, _open, driver  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser

MIXED = """\
fabric: 1
name: mixed
description: 1 NVL36 rack + 4 DGX + 2 PCIe boxes
host_types:
  gb200: {gpus: 4, gpu_model: GB200, gpu_memory_gb: 186.0, sockets: 2, cores_per_socket: 72,
          memory_gb: 960.0, nvlink_gbps: 0.0, nvswitches: 0, pcie_gbps: 64.0, nics: 4, nic_gbps: 50.0}
  dgx: {gpus: 8, gpu_model: H100-SXM5-80GB, gpu_memory_gb: 80, sockets: 2, cores_per_socket: 56,
        memory_gb: 2048, nvlink_gbps: 900, nvswitches: 4, pcie_gbps: 64, nics: 8, nic_gbps: 50}
  pcie: {gpus: 4, gpu_model: L40S, gpu_memory_gb: 48, sockets: 1, cores_per_socket: 32, memory_gb: 256,
         nvlink_gbps: 0, nvswitches: 0, pcie_gbps: 32, nics: 1, nic_gbps: 25}
hosts:
- {names: 'r001-h[01-09]', type: gb200, rack: r001}
- {names: 'dgx[1-4]', type: dgx}
- {names: 'pc[1-2]', type: pcie}
nvlink_domains:
- {name: r001, hosts: 'r001-h[01-09]', gbps: 1800.0, nvswitches: 9}
network:
  levels: [leaf, spine]
  groups:
  - {name: leafA, level: leaf, switches: 4, hosts: 'r001-h[01-09]', uplink_gbps: 1800.0}
  - {name: leafB, level: leaf, switches: 8, hosts: 'dgx[1-4]', uplink_gbps: 1800.0}
  - {name: leafC, level: leaf, switches: 1, hosts: 'pc[1-2]', uplink_gbps: 100.0}
  - {name: spine, level: spine, switches: 2, children: [leafA, leafB, leafC]}
"""


def _nvl_label(drv) -> str:
    return drv.execute_script("return document.getElementById('count-nvl').nextElementSibling.textContent")


def test_nvl_card_counts_multi_host_domains_by_their_real_size(driver, tmp_path):  # noqa: F811
    """One 9-host NVL36 rack beside 4 DGX hosts: 1 multi-host domain, not "NVL72 domains: 5"."""
    (tmp_path / "mixed.yaml").write_text(MIXED)
    write_report(open_fabric(str(tmp_path / "mixed.yaml")), tmp_path / "m.html")
    assert _open(driver, tmp_path / "m.html") == []
    label = _nvl_label(driver)
    print("mixed:", _count(driver, "nvl"), label)
    assert _count(driver, "nvl") == 1
    assert "NVL36" in label and "NVL72" not in label


def test_nvl_card_says_nvl72_for_nvl72_racks(driver, tmp_path):  # noqa: F811
    write_report(build(generators.nvl72(2)), tmp_path / "n.html")
    assert _open(driver, tmp_path / "n.html") == []
    label = _nvl_label(driver)
    assert _count(driver, "nvl") == 2
    assert "NVL72" in label, label


def test_a_few_down_gpus_of_many_are_not_shown_as_zero_percent(driver, tmp_path):  # noqa: F811
    fab = build(generators.superpod(sus=16))  # 4,096 GPUs: 1 down is 0.02 %
    write_report(fab, tmp_path / "s.html", occupancy={fab.hosts[0] + "/gpu0": "down",
                                                        fab.hosts[1] + "/gpu0": "job-1"})
    assert _open(driver, tmp_path / "s.html") == []
    text = driver.find_element("id", "overall").text
    print(text)
    assert "<0.1% down" in text and "<0.1% allocated" in text
    assert "0.0% down" not in text.replace("<0.1", "")


def _long_yaml() -> str:
    x, g, y = "x" * 400, "g" * 64, "level-" + "y" * 200
    return f"""\
fabric: 1
name: longnames
description: {"D" * 3000}
host_types:
  node: {{gpus: 8, gpu_model: H100-SXM5-80GB, gpu_memory_gb: 80, sockets: 2, cores_per_socket: 4,
          memory_gb: 16, nvlink_gbps: 900, nvswitches: 4, pcie_gbps: 64, nics: 2, nic_gbps: 50,
          features: [{"f" * 300}]}}
hosts:
- {{names: 'node-{x}[1-3]', type: node, rack: {"r" * 300}}}
network:
  levels: [{y}, spine]
  groups:
  - {{name: {g}, level: {y}, switches: 2, hosts: 'node-{x}[1-3]', uplink_gbps: 200}}
  - {{name: sp, level: spine, switches: 1, children: [{g}]}}
"""


def test_very_long_host_and_level_names_stay_inside_the_tree_panel(driver, tmp_path):  # noqa: F811
    """400-character host names, a 206-character level and a search message about such a host are
    cut with an ellipsis in the tree panel (whole name on hover and in Details); the page does not
    scroll sideways and nothing runs under the Details panel."""
    (tmp_path / "long.yaml").write_text(_long_yaml())
    fab = open_fabric(str(tmp_path / "long.yaml"))
    write_report(fab, tmp_path / "l.html")
    assert _open(driver, tmp_path / "l.html") == []
    driver.find_element("id", "expand-all").click()
    search = driver.find_element("id", "search")
    search.send_keys(fab.hosts[0] + "/gpu9\n")
    assert driver.find_element("id", "search-msg").text.startswith("no GPU")
    over = driver.execute_script("""
        var edge = document.querySelector('aside').getBoundingClientRect().left, out = [];
        document.querySelectorAll('#tree-panel .host, #tree-panel .lvl, #tree-panel .hn, #search-msg, .ghead')
          .forEach(function (e) { var r = e.getBoundingClientRect();
            if (r.right > edge + 0.5) out.push(e.className || e.id); });
        return [out, document.documentElement.scrollWidth, document.documentElement.clientWidth];""")
    print(over[1:], over[0][:10])
    assert over[0] == []
    assert over[1] <= over[2]
    hn = driver.find_element("css selector", ".host .hn")
    assert hn.get_attribute("title") == fab.hosts[0]
