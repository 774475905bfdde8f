"""Report polish from the second admin probe, in a real headless Chromium: wide fabrics open on a
collapsed overview that uses the page width, 0-GPU hosts' details leave out empty parts, the jobs
table keeps a job's colour swatch beside its id, and the search example stays readable."""

from __future__ import annotations

import pytest

from fabric_hpc.topology import open_fabric
from fabric_hpc.topology.report import write_report
from tests.topology.test_report_browser import _open, driver  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("ref", ["leaf-spine:hosts=4096,hosts_per_leaf=1", "superpod:sus=128"])
def test_a_collapsed_root_uses_the_page_width(driver, tmp_path, ref):  # noqa: F811
    """The collapsed root's mini map wraps its leaves into a grid across the tree panel: the page
    opens at most a few screens tall (4,096 one-host leaves drew one leaf per line, ~49,000 px)."""
    write_report(open_fabric(ref), tmp_path / "r.html")
    assert _open(driver, tmp_path / "r.html") == []
    height = driver.execute_script("return document.documentElement.scrollHeight")
    panel = driver.execute_script("return document.getElementById('tree').clientWidth")
    box = driver.find_element("css selector", "#tree > .group").size["width"]
    mini = driver.find_element("css selector", "#tree > .group canvas.mini").size["width"]
    print(ref, "scrollHeight", height, "tree", panel, "box", box, "mini", mini)
    assert height <= 3 * 1000, height
    assert box >= panel - 2
    assert mini >= 0.7 * panel


MIXED = """\
fabric: 1
name: mixed
host_types:
  cpu: {gpus: 0, gpu_model: none, gpu_memory_gb: 0, sockets: 2, cores_per_socket: 32, memory_gb: 512,
        nvlink_gbps: 0, nvswitches: 0, pcie_gbps: 32, nics: 1, nic_gbps: 25}
  h100: {gpus: 8, gpu_model: H100-SXM5-80GB, gpu_memory_gb: 80, sockets: 2, cores_per_socket: 56,
         memory_gb: 2048, nvlink_gbps: 900, nvswitches: 4, pcie_gbps: 64, nics: 8, nic_gbps: 50}
  l4: {gpus: 4, gpu_model: L4, gpu_memory_gb: 24, sockets: 1, cores_per_socket: 16, memory_gb: 256,
       nvlink_gbps: 0, nvswitches: 0, pcie_gbps: 32, nics: 1, nic_gbps: 25}
hosts:
  - {names: 'login[1-2]', type: cpu}
  - {names: 'Node.A-1', type: h100}
  - {names: '12345', type: h100}
  - {names: 'LONGHOST', type: h100}
  - {names: 'UPPER-CASE', type: l4}
  - {names: 'x.y.z', type: l4}
  - {names: 'dash-', type: l4}
network:
  levels: [leaf, spine]
  groups:
    - {name: leafA, level: leaf, switches: 1, hosts: 'login[1-2],Node.A-1,12345', uplink_gbps: 400}
    - {name: leafB, level: leaf, switches: 1, uplink_gbps: 400,
       hosts: 'LONGHOST,UPPER-CASE,x.y.z,dash-'}
    - {name: spine, level: spine, switches: 2, children: [leafA, leafB]}
""".replace("LONGHOST", "a-very-long-hostname-for-the-gpu-cluster-in-building-seven-row-b-rack-12-slot-03")
LONG_JOB = "a-really-long-job-identifier-from-the-training-team-llama-70b-finetune-run-0042"


@pytest.fixture
def mixed_page(driver, tmp_path):  # noqa: F811
    spec = tmp_path / "mixed.yaml"
    spec.write_text(MIXED)
    occ = {"Node.A-1": "job-1", "12345/gpu0": LONG_JOB, "12345/gpu1": LONG_JOB, "x.y.z/gpu0": LONG_JOB,
           "UPPER-CASE/gpu3": "7", "dash-": "down", "Node.A-1/gpu7": "job 2 with spaces"}
    write_report(open_fabric(str(spec)), tmp_path / "r.html", occupancy=occ)
    assert _open(driver, tmp_path / "r.html") == []
    return driver


def test_a_zero_gpu_host_details_leave_out_empty_parts(mixed_page):
    mixed_page.find_element("css selector", '.host[data-host="login1"] .hn').click()
    details = mixed_page.find_element("id", "details").text
    lines = details.splitlines()
    assert "Host login1" in lines
    assert "(rails" not in details and "rails )" not in details
    assert "0 × none" not in details and "0 GB" not in details
    assert "GPU NUMA" not in details and "GPU states" not in details
    assert lines[lines.index("GPUs") + 1] == "none"
    assert lines[lines.index("NICs") + 1] == "1 × 25 GB/s"
    # a GPU host keeps every row
    mixed_page.find_element("css selector", '.host[data-host="Node.A-1"] .hn').click()
    details = mixed_page.find_element("id", "details").text
    assert "8 × H100-SXM5-80GB · 80 GB" in details and "(rails 0 1 2 3 4 5 6 7)" in details
    assert "GPU states" in details


def test_job_ids_stay_beside_their_swatch_and_the_search_example_fits(mixed_page):
    rows = mixed_page.find_elements("css selector", "#jobs tr.job-row")
    assert len(rows) == 4
    for row in rows:
        swatch = row.find_element("css selector", "td:first-child .sq")
        name = row.find_element("css selector", "td:first-child .nm")
        # one line: the id starts to the right of its swatch, at the same height
        assert name.location["x"] > swatch.location["x"] + 8, row.get_attribute("data-job")
        assert abs(name.location["y"] - swatch.location["y"]) < 8, row.get_attribute("data-job")
    scroll = mixed_page.find_element("css selector", "#jobs .scroll")
    assert mixed_page.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", scroll)
    box = mixed_page.find_element("id", "search")
    text = box.get_attribute("placeholder")
    assert "a-very-long-hostname" not in text and "/gpu" in text, text
    assert box.get_attribute("title") == text
    width = mixed_page.execute_script(
        "var b = arguments[0], c = document.createElement('canvas').getContext('2d');"
        "c.font = getComputedStyle(b).font; return c.measureText(b.placeholder).width;", box)
    assert width <= box.size["width"] - 16, (width, box.size["width"])
