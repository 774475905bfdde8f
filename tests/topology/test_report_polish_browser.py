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
